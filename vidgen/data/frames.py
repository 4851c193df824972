"""From a clip file to a training tensor: which frames, what size, what crop.

:class:`FramePolicy` says how many frames, at what stride or frame rate,
where in the clip the window sits, and how frames are resized and cropped.
:func:`load_clip` applies it, decoding only the frames it needs (seeking
decoder, resize done by libswscale while converting to RGB) and returns
``float32 [T, C, H, W]`` in [-1, 1], the range the VAE expects. Every random
choice comes from the ``numpy.random.Generator`` passed in, so datasets can
make them deterministic per (seed, epoch, index).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from vidgen.errors import InputError, VideoError
from vidgen.io.sampling import fps_indices
from vidgen.io.video import probe, read_frames

WINDOWS = ("start", "center", "random")
RESIZES = ("crop", "stretch")
CROPS = ("center", "random")


class ClipTooShortError(VideoError):
    """A clip with fewer frames than the policy asks for (skipped and counted as ``too_short``)."""


@dataclass(frozen=True)
class FramePolicy:
    """How a clip becomes ``[T, C, H, W]``.

    Attributes:
        num_frames: frames per item (T).
        stride: take every ``stride``-th source frame (default 1 when ``fps`` is unset).
        fps: resample to this frame rate instead of a fixed stride.
        height, width: output size.
        resize: ``"crop"`` scales the short side to cover ``height x width``
            and crops (aspect kept); ``"stretch"`` resizes straight to the size.
        crop: ``"center"`` or ``"random"`` crop position (``"crop"`` resize only).
        window: where the frames sit in a longer clip: ``"start"``,
            ``"center"`` or ``"random"``.
    """

    num_frames: int = 16
    stride: int | None = None
    fps: float | None = None
    height: int = 256
    width: int = 256
    resize: str = "crop"
    crop: str = "center"
    window: str = "random"

    def __post_init__(self) -> None:
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise InputError(f"num_frames must be a positive integer, got {self.num_frames!r}")
        if self.stride is not None and self.fps is not None:
            raise InputError("give a frame stride or a target fps, not both")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise InputError(f"frame stride must be a positive integer, got {self.stride!r}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"target fps must be positive, got {self.fps!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        for name, allowed in (("resize", RESIZES), ("crop", CROPS), ("window", WINDOWS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @property
    def deterministic(self) -> bool:
        """Whether the policy makes no random choice (fixed window and crop)."""
        return self.window != "random" and (self.resize == "stretch" or self.crop != "random")

    def frame_indices(self, total: int, src_fps: float, rng: np.random.Generator | None = None) -> list[int]:
        """The source frames to take from a clip of ``total`` frames at ``src_fps``.

        Raises:
            ClipTooShortError: the clip cannot give ``num_frames`` frames.
        """
        try:
            if self.fps is not None:
                grid = fps_indices(total, src_fps, self.fps)
            else:
                grid = list(range(0, total, self.stride or 1))
        except VideoError as exc:
            raise ClipTooShortError(str(exc)) from None
        if len(grid) < self.num_frames:
            rate = f"{self.fps:g} fps" if self.fps is not None else f"stride {self.stride or 1}"
            raise ClipTooShortError(f"clip has {total} frames: {len(grid)} at {rate}, {self.num_frames} needed")
        spare = len(grid) - self.num_frames
        if self.window == "start":
            offset = 0
        elif self.window == "center":
            offset = spare // 2
        else:
            offset = int(_rng(rng).integers(0, spare + 1))
        return grid[offset : offset + self.num_frames]

    def resize_plan(self, width: int, height: int, rng: np.random.Generator | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((decode_width, decode_height), (left, top))``: the size to decode at and the crop's corner."""
        if self.resize == "stretch":
            return (self.width, self.height), (0, 0)
        scale = max(self.width / width, self.height / height)
        dw, dh = max(self.width, int(round(width * scale))), max(self.height, int(round(height * scale)))
        if self.crop == "center":
            return (dw, dh), ((dw - self.width) // 2, (dh - self.height) // 2)
        gen = _rng(rng)
        return (dw, dh), (int(gen.integers(0, dw - self.width + 1)), int(gen.integers(0, dh - self.height + 1)))


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        raise InputError("this frame policy makes random choices: pass a numpy Generator")
    return rng


def item_rng(seed: int, epoch: int, index: int, *extra: int) -> np.random.Generator:
    """The generator for one item's random choices, derived from (seed, epoch, index): no global RNG involved."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), *extra])


def key_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """:func:`item_rng` for a sample known by its key (streamed shards), not its position."""
    return item_rng(seed, epoch, zlib.crc32(key.encode("utf-8")))


def to_tensor(frames: np.ndarray):
    """``uint8 [T, H, W, 3]`` -> ``torch.float32 [T, 3, H, W]`` in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def load_clip(path: str | os.PathLike, policy: FramePolicy, rng: np.random.Generator | None = None):
    """Decode a clip into ``float32 [T, C, H, W]`` in [-1, 1] following ``policy``.

    Args:
        path: the clip file.
        policy: frames, size and crop.
        rng: the source of random choices (window position, crop offset);
            needed unless the policy is deterministic.

    Raises:
        ClipTooShortError: too few frames for the policy.
        VideoError: the file is missing, empty, not a video, or does not decode.
    """
    info = probe(path)
    indices = policy.frame_indices(info.num_frames, info.fps, rng)
    (dw, dh), (left, top) = policy.resize_plan(info.width, info.height, rng)
    frames = read_frames(path, indices, size=(dw, dh))
    return to_tensor(frames[:, top : top + policy.height, left : left + policy.width])


_RAM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@contextlib.contextmanager
def bytes_as_file(data: bytes, suffix: str = ".mp4") -> Iterator[str]:
    """A temporary file holding ``data`` (in RAM where ``/dev/shm`` exists), removed afterwards.

    The decoder seeks in files; shard members arrive as bytes.
    """
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="vidgen-clip-", dir=_RAM_DIR)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
