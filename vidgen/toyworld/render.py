"""Rendering toy-world scenes: anti-aliased shapes by supersampling, and in-memory samples and stories."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from vidgen.toyworld.captions import Caption, make_caption
from vidgen.toyworld.world import (
    BACKGROUND_RGB,
    FADED_CONTRAST,
    MOTION_VECTORS,
    Background,
    Quality,
    Scene,
    Shape,
    ToyAttrs,
    STREAM_SAMPLE,
    STREAM_STORY,
    sample_scene,
    sample_story,
)
from vidgen.errors import InputError


def frame_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(width, height)`` from an int (square) or a ``(width, height)`` pair.

    Raises:
        InputError: not an int or pair, or a side outside 16-2048 pixels.
    """
    if isinstance(size, (int, np.integer)):
        width = height = int(size)
    else:
        try:
            width, height = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"frame size must be an int or (width, height), got {size!r}") from None
    if not (16 <= width <= 2048 and 16 <= height <= 2048):
        raise InputError(f"frame size must be 16-2048 pixels per side, got {width}x{height}")
    return width, height


def _coverage(shape: Shape, cx: np.ndarray, cy: np.ndarray, half: float, ox: np.ndarray, oy: np.ndarray,
              patch: int, ss: int) -> np.ndarray:
    """Fraction of each pixel of a ``patch``-sized window covered by the shape, per frame ``[T, P, P]``.

    Each pixel is sampled at ``ss x ss`` sub-pixel centres and the hits averaged
    (supersampling with a box filter).
    """
    offsets = (np.arange(patch * ss) + 0.5) / ss
    xs = (ox[:, None] + offsets[None, :] - cx[:, None])[:, None, :]  # [T, 1, P*ss]
    ys = (oy[:, None] + offsets[None, :] - cy[:, None])[:, :, None]  # [T, P*ss, 1]
    if shape is Shape.CIRCLE:
        inside = xs * xs + ys * ys <= half * half
    elif shape is Shape.SQUARE:
        inside = (np.abs(xs) <= half) & (np.abs(ys) <= half)
    else:  # apex at the top centre, base along the bottom: half-width grows from 0 to `half`
        inside = (ys >= -half) & (ys <= half) & (np.abs(xs) <= (ys + half) / 2)
    t = inside.shape[0]
    return inside.reshape(t, patch, ss, patch, ss).mean(axis=(2, 4), dtype=np.float32)


def render_clip(scene: Scene, num_frames: int, size: int | Sequence[int] = 64, *, supersample: int = 4) -> np.ndarray:
    """Render ``scene`` as ``num_frames`` anti-aliased frames.

    Args:
        scene: what to draw (see :func:`sample_scene`).
        num_frames: frames in the clip.
        size: frame side (square) or ``(width, height)``.
        supersample: sub-pixel samples per pixel side for anti-aliasing.

    Returns:
        ``uint8`` array ``[T, H, W, 3]``; the same scene always gives the same pixels.

    Raises:
        InputError: ``num_frames`` < 1, a bad ``size`` or ``supersample`` < 1.
    """
    if num_frames < 1:
        raise InputError(f"num_frames must be at least 1, got {num_frames}")
    if supersample < 1:
        raise InputError(f"supersample must be at least 1, got {supersample}")
    width, height = frame_size(size)
    bg = np.asarray(BACKGROUND_RGB[scene.attrs.background], np.float32)
    rgb = np.asarray(scene.rgb, np.float32)
    if scene.quality is Quality.FADED:
        rgb = bg + FADED_CONTRAST * (rgb - bg)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[:] = bg.astype(np.uint8)

    half = scene.size * min(width, height) / 2
    dx, dy = MOTION_VECTORS[scene.attrs.motion]
    step = np.arange(num_frames) / num_frames
    cx = (scene.x0 + dx * scene.travel * step) * width
    cy = (scene.y0 + dy * scene.travel * step) * height
    patch = int(math.ceil(2 * half)) + 2
    ox = np.floor(cx - half).astype(np.int64)
    oy = np.floor(cy - half).astype(np.int64)
    cover = _coverage(scene.attrs.shape, cx, cy, half, ox, oy, patch, supersample)
    tiles = np.rint(bg + (rgb - bg) * cover[..., None]).astype(np.uint8)  # [T, P, P, 3]
    for t in range(num_frames):
        x0, y0 = int(ox[t]), int(oy[t])
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + patch, width), min(y0 + patch, height)
        if xa < xb and ya < yb:
            frames[t, ya:yb, xa:xb] = tiles[t, ya - y0 : yb - y0, xa - x0 : xb - x0]
    if scene.occluder is not None:
        _draw_occluder(frames, scene.occluder, scene.attrs.background)
    return frames


def _draw_occluder(frames: np.ndarray, box: tuple[float, float, float, float], background: Background) -> None:
    _, height, width, _ = frames.shape
    # A gray panel visibly different from the background.
    shade = {Background.WHITE: 170, Background.BLACK: 85, Background.GRAY: 200}[background]
    x0, x1 = (int(np.clip(round(v * width), 0, width)) for v in (box[0], box[2]))
    y0, y1 = (int(np.clip(round(v * height), 0, height)) for v in (box[1], box[3]))
    frames[:, y0:y1, x0:x1] = shade


# --------------------------------------------------------------------------- in-memory samples


@dataclass(frozen=True)
class ToySample:
    """One rendered clip with its caption."""

    scene: Scene
    frames: np.ndarray  # uint8 [T, H, W, 3]
    caption: Caption

    @property
    def attrs(self) -> ToyAttrs:
        """The clip's judged attributes."""
        return self.scene.attrs


def make_sample(
    index: int,
    *,
    seed: int = 0,
    num_frames: int = 16,
    size: int | Sequence[int] = 64,
    split: str = "train",
    degraded_fraction: float = 0.0,
) -> ToySample:
    """Sample ``index`` of an endless deterministic stream (random access, e.g. for a map-style dataset).

    Args:
        index: position in the stream (any non-negative int).
        seed: stream seed.
        num_frames: frames per clip.
        size: frame side or ``(width, height)``.
        split: ``train``, ``held_out`` or ``all``.
        degraded_fraction: probability of an occluded or faded clip.

    Returns:
        The :class:`ToySample`; the same arguments always give the same pixels and caption.

    Raises:
        InputError: a negative index or a bad argument.
    """
    if index < 0:
        raise InputError(f"sample index must be non-negative, got {index}")
    rng = np.random.default_rng([seed, STREAM_SAMPLE, index])
    scene = sample_scene(rng, split=split, degraded_fraction=degraded_fraction)
    return ToySample(scene, render_clip(scene, num_frames, size), make_caption(scene, rng))


def iter_samples(count: int, *, seed: int = 0, start: int = 0, **kwargs) -> Iterator[ToySample]:
    """Samples ``start .. start + count - 1`` of :func:`make_sample`'s stream (same keyword arguments)."""
    for index in range(start, start + count):
        yield make_sample(index, seed=seed, **kwargs)


def make_story(
    index: int,
    *,
    seed: int = 0,
    num_clips: int = 3,
    num_frames: int = 16,
    size: int | Sequence[int] = 64,
    split: str = "train",
) -> list[ToySample]:
    """Story ``index``: consecutive clips of one object whose motion changes while its path continues.

    Returns:
        ``num_clips`` samples; the object's jump between the last frame of one
        and the first of the next is one frame's worth of motion.

    Raises:
        InputError: a negative index or a bad argument.
    """
    if index < 0:
        raise InputError(f"story index must be non-negative, got {index}")
    rng = np.random.default_rng([seed, STREAM_STORY, index])
    scenes = sample_story(rng, num_clips, split=split)
    return [ToySample(s, render_clip(s, num_frames, size), make_caption(s, rng)) for s in scenes]
