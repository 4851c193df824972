"""A deterministic judge that reads a toy-world video back: colour, shape, motion, background.

No learned scorer is involved, so its verdicts mean the same on ground truth
and on generated videos:

- background: the median colour of the frame border, nearest of white/black/gray;
- object: each pixel's opacity ``alpha`` is its projection onto the line from
  the background colour to the object colour (anti-aliased edges, blur and
  codec smear keep their fractional weight instead of being thresholded away);
  isolated specks and far-off blobs are dropped, so the moments see one object;
- colour: the hue of the object's core pixels, nearest of the six world hues
  (mixing with an achromatic background never changes hue);
- shape: how much of its bounding box the mask fills (circle pi/4, square 1,
  triangle 1/2) and the vertical skewness of its mass (the apex-up triangle's
  mass sits low: skewness -2*sqrt(2)/5 ~ -0.566; circle and square 0);
- motion: a Theil-Sen fit of the centroid track, still when the fitted
  displacement over the clip is under a fraction of the frame.
"""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from vidgen.toyworld import (
    ATTRIBUTES,
    BACKGROUND_RGB,
    COLOR_HUES,
    LARGE_ABOVE,
    SMALL_BELOW,
    Motion,
    Shape,
    SizeClass,
    ToyAttrs,
    parse_caption,
)
from vidgen.errors import InputError

# Frames are box-downscaled to at most this side first: upscaled videos hold no more detail.
MAX_SIDE = 128
# An object pixel differs from the background by at least this much (RGB distance).
# Object colours sit >= ~200 away from every background; codec noise stays < ~20.
MIN_CONTRAST = 60.0
# Pixels whose opacity is below this are background noise, not object.
ALPHA_FLOOR = 0.1
# Pixels this close (relative) to the frame's strongest contrast form the object's core (its colour).
CORE_FRACTION = 0.7
# An object must cover this share of the frame to count as present.
MIN_AREA_FRACTION = 0.004
# Still when the fitted centre displacement over the clip is under this fraction of the frame;
# moving toy-world objects travel >= 0.25 (2.5x the threshold).
STILL_THRESHOLD = 0.1
# Saturation below which the object is achromatic and has no world colour.
MIN_SATURATION = 0.2
# Shape features from geometry: the fill ratio of the bounding box (circle pi/4, square 1,
# triangle 1/2) and the vertical skewness of the mass (apex-up triangle -2*sqrt(2)/5 ~ -0.566,
# circle and square 0). Blur pulls the triangle towards the circle in fill ratio (0.5 -> ~0.8 at
# a blur of a quarter of its side) but only shrinks its skewness (to ~-0.3), so skewness decides
# triangles first and the fill ratio then splits circle from square at the midpoint of theirs.
SHAPE_FILL: Mapping[Shape, float] = {Shape.CIRCLE: math.pi / 4, Shape.SQUARE: 1.0, Shape.TRIANGLE: 0.5}
TRIANGLE_SKEW = -2 * math.sqrt(2) / 5
SKEW_SPLIT = -0.2
FILL_SPLIT = (SHAPE_FILL[Shape.CIRCLE] + SHAPE_FILL[Shape.SQUARE]) / 2
# A side between the small and large ranges splits "small" from "large" prompts.
SIZE_SPLIT = (SMALL_BELOW + LARGE_ABOVE) / 2


@dataclass(frozen=True)
class JudgeResult:
    """What the judge read from a clip.

    Attributes:
        color, shape, motion, background: canonical names, ``None`` when undecidable
            (no object found, an achromatic object, fewer than two frames with an object).
        size: object side (from its area and the judged shape's fill ratio) as a fraction of the
            shorter frame side.
        track: ``[T, 2]`` object centroid ``(x, y)`` per frame in input pixels, NaN where absent.
        area: ``[T]`` object area per frame in input pixels (sum of opacity), 0 where absent.
        confidence: per attribute, a margin in [0, 1] (0 = on a decision boundary).
        diagnostics: the measured quantities behind each verdict.
    """

    color: str | None
    shape: str | None
    motion: str | None
    background: str | None
    size: float | None
    track: np.ndarray
    area: np.ndarray
    confidence: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, object] = field(default_factory=dict)

    def attributes(self) -> dict[str, str | None]:
        """``{"color", "shape", "motion", "background"}`` -> verdict."""
        return {name: getattr(self, name) for name in ATTRIBUTES}


def _as_frames(frames) -> np.ndarray:
    from vidgen.io.writer import to_uint8_frames

    arr = to_uint8_frames(frames)
    if min(arr.shape[1:3]) < 8:
        raise InputError(f"frames of {arr.shape[2]}x{arr.shape[1]} are too small to judge (need 8 pixels per side)")
    return arr


def _downscale(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """Box-average by the integer factor that brings the longer side to <= MAX_SIDE."""
    t, h, w, _ = frames.shape
    k = max(1, math.ceil(max(h, w) / MAX_SIDE))
    if k == 1:
        return frames.astype(np.float32), 1
    h2, w2 = h // k, w // k
    # Summing the k*k strided sub-grids is several times faster than a 6-D reshape and mean.
    out = np.zeros((t, h2, w2, 3), np.float32)
    for dy in range(k):
        for dx in range(k):
            out += frames[:, dy : h2 * k : k, dx : w2 * k : k]
    return out / (k * k), k


def _border_background(x: np.ndarray) -> np.ndarray:
    """Per-frame median colour of a border ring ``[T, 3]``: the object never covers most of it."""
    t, h, w, _ = x.shape
    b = max(1, round(0.04 * min(h, w)))
    ring = np.concatenate(
        [x[:, :b].reshape(t, -1, 3), x[:, -b:].reshape(t, -1, 3),
         x[:, b:-b, :b].reshape(t, -1, 3), x[:, b:-b, -b:].reshape(t, -1, 3)], axis=1)
    return np.median(np.ascontiguousarray(ring.transpose(0, 2, 1)), axis=-1)  # contiguous: ~3x faster


def _nearest(distances: Mapping[str, float]) -> tuple[str, float]:
    """The closest name and a margin in [0, 1]: (second - best) / (second + best)."""
    ranked = sorted(distances.items(), key=lambda kv: kv[1])
    (best, d1), (_, d2) = ranked[0], ranked[1]
    return best, float((d2 - d1) / (d2 + d1)) if d2 + d1 > 0 else 0.0


def _weighted_median(mass: np.ndarray) -> int:
    """Index where the cumulative mass first reaches half the total."""
    cumulative = np.cumsum(mass)
    return int(np.searchsorted(cumulative, cumulative[-1] / 2))


def _keep_object(a: np.ndarray) -> np.ndarray:
    """Zero stray specks and far-off blobs so that only the main object carries opacity.

    The shape features are moments, and the third moment weighs far-off mass by
    the cube of its distance, so a few noisy pixels across the frame could
    outweigh the object. A pixel keeps its opacity when its 3x3 neighbourhood
    averages at least ALPHA_FLOOR (an isolated noisy pixel's does not; an edge
    pixel's does, through its neighbours inside the object) and when it lies
    within 1.5 object sides (+2 pixels for blur) of the opacity-weighted median
    position, which a minority of stray mass cannot move far.
    """
    h, w = a.shape
    padded = np.pad(a, 1)
    local = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    a = np.where(local >= ALPHA_FLOOR, a, 0.0)
    total = float(a.sum())
    if total <= 0.0:
        return a
    my, mx = _weighted_median(a.sum(axis=1)), _weighted_median(a.sum(axis=0))
    reach = int(math.ceil(1.5 * math.sqrt(total) + 2))
    window = np.zeros_like(a)
    window[max(0, my - reach) : my + reach + 1, max(0, mx - reach) : mx + reach + 1] = 1.0
    return a * window


def _theil_sen_slope(t: np.ndarray, v: np.ndarray) -> float:
    """Median of pairwise slopes (Theil 1950, Sen 1968): ignores up to ~29% outlying points."""
    i, j = np.triu_indices(len(t), k=1)
    return float(np.median((v[j] - v[i]) / (t[j] - t[i])))


def _classify_shape(fill: float, skew: float) -> tuple[str, float]:
    """Shape and margin in [0, 1] from the fill ratio and vertical skewness (see the constants above)."""
    # Margins: the way from the split to the prototype that was chosen, clipped to [0, 1].
    if skew < SKEW_SPLIT:
        return Shape.TRIANGLE.value, min(1.0, (SKEW_SPLIT - skew) / (SKEW_SPLIT - TRIANGLE_SKEW))
    skew_margin = min(1.0, (skew - SKEW_SPLIT) / -SKEW_SPLIT)
    fill_margin = min(1.0, abs(fill - FILL_SPLIT) / (SHAPE_FILL[Shape.SQUARE] - FILL_SPLIT))
    return (Shape.SQUARE if fill >= FILL_SPLIT else Shape.CIRCLE).value, min(skew_margin, fill_margin)


def _object_opacity(x: np.ndarray, bg_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame opacity ``[T, h, w]``, object colour ``[T, 3]`` (NaN where absent) and presence ``[T]``."""
    t, h, w, _ = x.shape
    diff = x - bg_frames[:, None, None, :]
    dist = np.linalg.norm(diff, axis=-1)
    peak = dist.reshape(t, -1).max(axis=1)
    present = peak >= MIN_CONTRAST
    obj = np.full((t, 3), np.nan, np.float32)
    alpha = np.zeros((t, h, w), np.float32)
    for i in np.flatnonzero(present):
        # The object's colour: the mean of its core, where contrast is near the frame's peak.
        obj[i] = x[i][dist[i] >= CORE_FRACTION * peak[i]].mean(axis=0)
        # Opacity: projection of (pixel - background) onto (object - background).
        u = obj[i] - bg_frames[i]
        a = np.clip(diff[i] @ u / float(u @ u), 0.0, 1.0)
        a[a < ALPHA_FLOOR] = 0.0
        alpha[i] = _keep_object(a)
    present &= alpha.sum(axis=(1, 2)) >= MIN_AREA_FRACTION * h * w
    return alpha, obj, present


def _moments(a: np.ndarray) -> tuple[float, float, float, float]:
    """Centroid ``(x, y)``, bounding-box fill ratio and vertical skewness of one frame's opacity."""
    h, w = a.shape
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    mass = float(a.sum())
    row_mass, col_mass = a.sum(axis=1), a.sum(axis=0)
    cx, cy = float(col_mass @ xs) / mass, float(row_mass @ ys) / mass
    # Soft bounding box: each column/row counts by its most opaque pixel.
    width, height = float(a.max(axis=0).sum()), float(a.max(axis=1).sum())
    var = float(row_mass @ (ys - cy) ** 2) / mass
    skew = float(row_mass @ (ys - cy) ** 3) / mass / var**1.5 if var > 0 else 0.0
    return cx, cy, mass / (width * height), skew


def _read_color(rgb: np.ndarray) -> tuple[str | None, float, dict[str, object]]:
    """Nearest world hue of an object colour, a margin, and the measured hue/saturation/value."""
    hue, sat, val = colorsys.rgb_to_hsv(*(float(v) / 255.0 for v in np.clip(rgb, 0, 255)))
    hue *= 360.0
    diagnostics = {"object_rgb": [round(float(v), 1) for v in rgb], "hue": round(hue, 1),
                   "saturation": round(sat, 3), "value": round(val, 3)}
    if sat < MIN_SATURATION:
        return None, 0.0, diagnostics
    gaps = {c.value: abs((hue - h0 + 180.0) % 360.0 - 180.0) for c, h0 in COLOR_HUES.items()}
    color = min(gaps, key=gaps.get)
    # Neighbouring hues are 60 degrees apart: 30 degrees off is a coin toss.
    return color, max(0.0, 1.0 - gaps[color] / 30.0), diagnostics


def _read_motion(track: np.ndarray, present: np.ndarray, size: tuple[int, int], still_threshold: float
                 ) -> tuple[str, float, tuple[float, float]]:
    """Direction (or still), a margin, and the fitted displacement over the clip in frame fractions."""
    w, h = size
    valid = np.flatnonzero(present)
    steps = valid.astype(np.float64)
    vx, vy = _theil_sen_slope(steps, track[valid, 0]), _theil_sen_slope(steps, track[valid, 1])
    dx, dy = vx * (len(track) - 1) / w, vy * (len(track) - 1) / h
    reach = max(abs(dx), abs(dy))
    if reach < still_threshold:
        return Motion.STILL.value, 1.0 - reach / still_threshold, (dx, dy)
    if abs(dx) >= abs(dy):
        motion = Motion.RIGHT if dx > 0 else Motion.LEFT
    else:
        motion = Motion.DOWN if dy > 0 else Motion.UP
    # Both the distance past the threshold and the dominance of one axis.
    axis_margin = (reach - min(abs(dx), abs(dy))) / reach
    return motion.value, min(axis_margin, reach / still_threshold - 1.0, 1.0), (dx, dy)


def judge_frames(frames, *, still_threshold: float = STILL_THRESHOLD) -> JudgeResult:
    """Judge one clip.

    Args:
        frames: ``[T, H, W, 3]`` uint8 (or float in [0, 1], numpy or torch) frames.
        still_threshold: fitted displacement over the clip, as a fraction of
            the frame along each axis, below which the object counts as still.

    Returns:
        A :class:`JudgeResult`.

    Raises:
        InputError: frames that are not ``[T, H, W, 3]`` or smaller than 8 pixels.
    """
    x, k = _downscale(_as_frames(frames))
    t, h, w, _ = x.shape
    bg_frames = _border_background(x)
    bg = np.median(bg_frames, axis=0)
    background, bg_margin = _nearest({b.value: float(np.linalg.norm(bg - np.asarray(rgb))) for b, rgb in BACKGROUND_RGB.items()})
    alpha, obj, present = _object_opacity(x, bg_frames)
    area = alpha.sum(axis=(1, 2)) * present

    track = np.full((t, 2), np.nan, np.float64)
    features = []
    for i in np.flatnonzero(present):
        cx, cy, fill, skew = _moments(alpha[i])
        track[i] = cx, cy
        features.append((fill, skew))

    confidence: dict[str, float] = {"background": bg_margin}
    diagnostics: dict[str, object] = {
        "background_rgb": [round(float(v), 1) for v in bg],
        "frames_with_object": int(present.sum()),
        "downscale": k,
    }
    color = shape = motion = size = None
    if present.any():
        color, confidence["color"], color_diagnostics = _read_color(np.median(obj[present], axis=0))
        fill, skew = (float(v) for v in np.median(np.array(features), axis=0))
        shape, confidence["shape"] = _classify_shape(fill, skew)
        # Side from the area (which blur and anti-aliasing preserve) and the shape's fill ratio.
        size = math.sqrt(float(np.median(area[present])) / SHAPE_FILL[Shape(shape)]) / min(h, w)
        diagnostics.update(color_diagnostics, fill_ratio=round(fill, 3), skewness=round(skew, 3), size=round(size, 3))
    if present.sum() >= 2:
        motion, confidence["motion"], (dx, dy) = _read_motion(track, present, (w, h), still_threshold)
        diagnostics["displacement"] = (round(dx, 4), round(dy, 4))

    return JudgeResult(
        color=color,
        shape=shape,
        motion=motion,
        background=background,
        size=size,
        track=(track + 0.5) * k - 0.5,  # back to input pixel coordinates (pixel centres)
        area=area * k * k,
        confidence={name: round(float(v), 4) for name, v in confidence.items()},
        diagnostics=diagnostics,
    )


def judge_video(
    path: str | os.PathLike,
    *,
    indices: Sequence[int] | None = None,
    still_threshold: float = STILL_THRESHOLD,
) -> JudgeResult:
    """Decode a video (all frames, or ``indices``) with :func:`vidgen.io.read_frames` and judge it.

    Raises:
        VideoError: the file is missing, unreadable or too short for ``indices``.
        InputError: frames smaller than 8 pixels.
    """
    from vidgen.io.video import read_frames

    return judge_frames(read_frames(path, indices), still_threshold=still_threshold)


@dataclass(frozen=True)
class Faithfulness:
    """Agreement of a judged clip with a prompt.

    Attributes:
        matches: for each attribute the prompt states, whether the judge agrees.
        score: the fraction of stated attributes that match (NaN when the prompt states none).
    """

    matches: dict[str, bool]
    score: float


def faithfulness(result: JudgeResult, prompt: str | ToyAttrs | Mapping[str, object | None]) -> Faithfulness:
    """Per-attribute agreement between a judged clip and what the prompt asked for.

    Attributes the prompt does not state (``None``) are ignored. Colour, shape,
    motion and background must equal the judge's verdict; a stated size
    (``small``/``large``) holds when the judged side is on its side of the
    middle between the two size ranges.

    Args:
        result: the judge's reading of the generated clip.
        prompt: the prompt text (parsed with :func:`parse_caption`), a
            :class:`ToyAttrs`, or a mapping like the parser's output.

    Returns:
        A :class:`Faithfulness`.

    Raises:
        InputError: a mapping with keys outside the judged attributes and ``size``.
    """
    if isinstance(prompt, str):
        wanted: Mapping[str, object | None] = parse_caption(prompt)
    elif isinstance(prompt, ToyAttrs):
        wanted = prompt.as_dict()
    else:
        wanted = prompt
        unknown = sorted(set(wanted) - set(ATTRIBUTES) - {"size"})
        if unknown:
            raise InputError(f"unknown toy-world attribute {unknown[0]!r} in prompt attributes")
    matches: dict[str, bool] = {}
    for name in ATTRIBUTES:
        value = wanted.get(name)
        if value is not None:
            target = value.value if hasattr(value, "value") else str(value)
            matches[name] = getattr(result, name) == target
    size = wanted.get("size")
    if size is not None:
        size = size.value if hasattr(size, "value") else str(size)
        if size != SizeClass.MEDIUM.value:
            judged = result.size
            matches["size"] = judged is not None and ((judged < SIZE_SPLIT) == (size == SizeClass.SMALL.value))
    score = sum(matches.values()) / len(matches) if matches else float("nan")
    return Faithfulness(matches, score)


def boundary_jump(frames_a, frames_b) -> float:
    """Distance in pixels between the object's centroid in the last frame of clip A and the first of clip B.

    The measure of continuity between consecutive clips of a story: ground-truth
    toy-world stories jump by one frame's motion.

    Args:
        frames_a, frames_b: ``[T, H, W, 3]`` clips of the same frame size.

    Returns:
        The distance, or NaN when the object is missing from either frame.

    Raises:
        InputError: clips of different frame sizes, or bad frames.
    """
    a, b = _as_frames(frames_a), _as_frames(frames_b)
    if a.shape[1:] != b.shape[1:]:
        raise InputError(f"clips differ in frame size: {a.shape[2]}x{a.shape[1]} and {b.shape[2]}x{b.shape[1]}")
    end = judge_frames(a).track[-1]
    start = judge_frames(b).track[0]
    return float(np.hypot(*(start - end)))


@dataclass(frozen=True)
class JudgeAccuracy:
    """How often the judge reads ground-truth clips right.

    Attributes:
        num_clips: clips judged.
        accuracy: per attribute, and ``all`` (every attribute right), the fraction correct.
        failures: ``(clip index, attribute, truth, verdict)`` for every miss.
    """

    num_clips: int
    accuracy: dict[str, float]
    failures: list[tuple[int, str, str, str | None]]


def judge_accuracy(
    num_clips: int,
    size: int | Sequence[int] = 32,
    *,
    num_frames: int = 16,
    seed: int = 0,
    mp4: bool = False,
    upscale: int = 1,
    upscale_mode: str = "nearest",
) -> JudgeAccuracy:
    """Judge clean ground-truth toy-world clips (all attribute combinations) and count agreement.

    Args:
        num_clips: clips to render and judge (samples ``0..num_clips-1`` of seed ``seed``).
        size: frame side or ``(width, height)``.
        num_frames: frames per clip.
        seed: sample stream seed.
        mp4: write the clips back to back into one H.264 MP4 with
            :func:`vidgen.io.write_video` (as in a toy source video) and judge
            the frames :func:`vidgen.io.read_frames` decodes.
        upscale, upscale_mode: enlarge before encoding, as ``vidgen sample --upscale`` does.

    Returns:
        A :class:`JudgeAccuracy`.

    Raises:
        InputError: ``num_clips`` < 1 or a bad size.
    """
    import tempfile

    from vidgen.toyworld import make_sample
    from vidgen.io.video import read_frames
    from vidgen.io.writer import upscale as enlarge
    from vidgen.io.writer import write_video

    if num_clips < 1:
        raise InputError(f"num_clips must be at least 1, got {num_clips}")
    samples = [make_sample(i, seed=seed, num_frames=num_frames, size=size, split="all") for i in range(num_clips)]
    clips = [enlarge(s.frames, upscale, upscale_mode) for s in samples]
    if mp4:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "clips.mp4")
            write_video(path, np.concatenate(clips), fps=8)
            decoded = read_frames(path)
        clips = [decoded[i * num_frames : (i + 1) * num_frames] for i in range(num_clips)]
    failures = []
    wrong_clips = set()
    for index, (sample, frames) in enumerate(zip(samples, clips)):
        verdict = judge_frames(frames).attributes()
        for name, truth in sample.attrs.as_dict().items():
            if verdict[name] != truth:
                failures.append((index, name, truth, verdict[name]))
                wrong_clips.add(index)
    accuracy = {name: 1.0 - sum(f[1] == name for f in failures) / num_clips for name in ATTRIBUTES}
    accuracy["all"] = 1.0 - len(wrong_clips) / num_clips
    return JudgeAccuracy(num_clips, accuracy, failures)
