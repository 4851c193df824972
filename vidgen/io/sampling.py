"""Which frames to take from a clip: uniform, fixed stride, or a target frame rate.

All helpers return frame numbers (0-based, presentation order) and raise
:class:`~vidgen.errors.VideoError` when the clip is too short for the request,
so callers can skip and count the clip instead of crashing.
"""

from __future__ import annotations

import math

from vidgen.errors import InputError, VideoError


def _check(total: int, count: int) -> None:
    if count <= 0:
        raise InputError(f"frame count must be positive, got {count}")
    if total <= 0:
        raise VideoError("the clip has no frames")


def uniform_indices(total: int, count: int, *, start: int = 0, end: int | None = None) -> list[int]:
    """``count`` frames spread evenly over ``[start, end)``, each at the middle of its segment.

    The clip is cut into ``count`` equal segments and the middle frame of each
    is taken (the choice VBench and most video-CLIP evaluations make). With
    ``count`` larger than the clip, frames repeat.
    """
    end = total if end is None else min(end, total)
    _check(end - start, count)
    span = end - start
    return [start + min(span - 1, int((k + 0.5) * span / count)) for k in range(count)]


def stride_indices(total: int, count: int, stride: int = 1, *, start: int = 0) -> list[int]:
    """``count`` frames ``start, start + stride, ...``.

    Raises:
        VideoError: the clip is shorter than ``start + (count - 1) * stride + 1`` frames.
    """
    _check(total, count)
    if stride <= 0:
        raise InputError(f"frame stride must be positive, got {stride}")
    last = start + (count - 1) * stride
    if last >= total:
        raise VideoError(f"clip has {total} frames; {count} frames at stride {stride} from {start} need {last + 1}")
    return list(range(start, last + 1, stride))


def fps_indices(total: int, src_fps: float, target_fps: float, count: int | None = None, *, start: int = 0) -> list[int]:
    """Frames that resample a ``src_fps`` clip to ``target_fps`` (nearest earlier frame).

    Args:
        total: frames in the clip.
        src_fps: the clip's frame rate.
        target_fps: the wanted frame rate.
        count: how many frames to return; all that fit when ``None``.
        start: first source frame.

    Raises:
        VideoError: fewer than ``count`` frames fit.
    """
    if src_fps <= 0 or target_fps <= 0:
        raise InputError(f"frame rates must be positive, got source {src_fps} and target {target_fps}")
    step = src_fps / target_fps
    available = int(math.floor((total - 1 - start) / step + 1e-9)) + 1 if total > start else 0
    if count is None:
        count = available
    _check(total, count)
    if count > available:
        raise VideoError(
            f"clip has {total} frames at {src_fps:g} fps; {count} frames at {target_fps:g} fps from frame {start} do not fit"
        )
    return [start + int(math.floor(k * step + 1e-9)) for k in range(count)]


def demo_indices(total: int, count: int = 8) -> list[int]:
    """The ViCLIP public demo's choice: ``frames[::total // count][:count]``.

    Raises:
        VideoError: the clip has fewer than ``count`` frames.
    """
    _check(total, count)
    if total < count:
        raise VideoError(f"clip has {total} frames; {count} are needed")
    step = total // count
    return list(range(0, total, step))[:count]
