"""Video decoding with PyAV, seeking so that only the frames asked for are decoded.

Frame ``i`` of a video is the ``i``-th frame in presentation order; its index is
computed from its timestamp (``(pts - start) * time_base * fps``), so a seek
lands on the right frame whatever the keyframe layout. For a sparse request (8
frames out of a 10 s clip) the reader seeks to the keyframe before each far-off
frame instead of decoding everything in between.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vidgen.errors import VideoError

# A gap (in frames) beyond which a seek is cheaper than decoding forward. Most
# encoders put keyframes every 1-10 s; a seek costs one keyframe decode plus the
# frames after it, so seeking pays off once the gap exceeds a fraction of a GOP.
SEEK_GAP_FRAMES = 48
# While the next wanted frame is further ahead than this, non-reference frames are not
# decoded at all (nothing depends on them). The margin exceeds any B-frame reordering
# delay, so decoding is back to normal well before the wanted frame comes out.
SKIP_NONREF_MARGIN = 16


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from a video's header."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height


def _open(path: str | os.PathLike):
    import av

    path = str(path)
    if not os.path.exists(path):
        raise VideoError(f"video file not found: {path!r}")
    if os.path.isdir(path):
        raise VideoError(f"expected a video file, got a folder: {path!r}")
    if os.path.getsize(path) == 0:
        raise VideoError(f"video file is empty (0 bytes): {path!r}")
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"cannot open video {path!r}: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"no video stream in {path!r}")
    return container


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoError("video stream has no frame rate")
    return float(rate)


def _stream_num_frames(container, stream, fps: float) -> int:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * fps))
    if container.duration is not None:
        return int(round(container.duration / 1_000_000 * fps))
    return 0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's frame count, rate, size and duration without decoding it.

    Raises:
        VideoError: the file is missing, empty, not a video or has no video stream.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        n = _stream_num_frames(container, stream, fps)
        if n <= 0:
            # Containers without an index (some WebM/MKV): count by demuxing packets.
            n = sum(1 for p in container.demux(stream) if p.size)
        return VideoInfo(
            path=str(path),
            num_frames=n,
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=n / fps if fps else 0.0,
            codec=stream.codec_context.name,
        )
    finally:
        container.close()


def _to_array(frame, size: tuple[int, int] | None, interpolation: str) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    width, height = size
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation=interpolation)


class _Decoder:
    """Decodes frames of one stream in order, tracking each frame's index."""

    def __init__(self, container, stream):
        self.container = container
        self.stream = stream
        self.fps = _stream_fps(stream)
        self.time_base = stream.time_base or Fraction(1, 1)
        self.start = stream.start_time or 0
        self._iter: Iterator | None = None
        self.last_index = -1

    def index_of(self, frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            return self.last_index + 1
        return int(round(float((pts - self.start) * self.time_base) * self.fps))

    def seek(self, index: int) -> None:
        """Position before ``index``: the decoder resumes at the keyframe at or before it."""
        # Aim half a frame early so rounding never puts us past the target.
        seconds = max(0.0, (index - 0.5) / self.fps)
        target = self.start + int(seconds / self.time_base)
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        self._iter = None
        self.last_index = -1

    def frames(self) -> Iterator:
        if self._iter is None:
            self._iter = self.container.decode(self.stream)
        for frame in self._iter:
            index = self.index_of(frame)
            self.last_index = index
            yield index, frame


def read_frames(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    *,
    size: tuple[int, int] | None = None,
    interpolation: str = "BILINEAR",
    seek_gap: int = SEEK_GAP_FRAMES,
) -> np.ndarray:
    """Decode the frames at ``indices`` (all frames when ``None``).

    Args:
        path: a video file.
        indices: frame numbers in presentation order, in any order and with
            repeats; the result follows this order.
        size: optional ``(width, height)`` to resize to while converting to RGB
            (done by libswscale, much cheaper than a resize afterwards).
        interpolation: libswscale interpolation name when ``size`` is given
            (``BILINEAR``, ``BICUBIC``, ``AREA``, ``POINT``...).
        seek_gap: seek instead of decoding forward when the next wanted frame
            is more than this many frames ahead.

    Returns:
        ``uint8`` array ``[N, H, W, 3]`` (RGB).

    Raises:
        VideoError: the file cannot be opened or decoded, or an index lies
            outside the video.
    """
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoder = _Decoder(container, stream)
        # Frame threading keeps up to thread_count packets in flight, each decoded with the
        # skip setting it was sent under: widen the margin by that many frames.
        skip_margin = SKIP_NONREF_MARGIN + (stream.codec_context.thread_count or os.cpu_count() or 1)
        if indices is None:
            out = [_to_array(frame, size, interpolation) for _, frame in decoder.frames()]
            if not out:
                raise VideoError(f"no decodable frames in {str(path)!r}")
            return np.stack(out)

        indices = [int(i) for i in indices]
        if not indices:
            raise VideoError("no frame indices requested")
        if min(indices) < 0:
            raise VideoError(f"negative frame index {min(indices)} requested from {str(path)!r}")
        found: dict[int, np.ndarray] = {}
        frames = None
        held = previous = None  # the last two (index, frame) pairs decoded
        for target in sorted(set(indices)):
            if frames is None or target - decoder.last_index > seek_gap:
                from_start = target <= seek_gap
                if frames is not None or not from_start:
                    decoder.seek(0 if from_start else target)
                frames, held, previous = decoder.frames(), None, None
            while True:
                while held is None or held[0] < target:
                    far = held is not None and target - held[0] > skip_margin
                    stream.codec_context.skip_frame = "NONREF" if far else "DEFAULT"
                    nxt = next(frames, None)
                    if nxt is None:
                        raise VideoError(
                            f"video {str(path)!r} has {max(decoder.last_index + 1, 0)} frames; "
                            f"frame {target} was requested"
                        )
                    previous, held = held, nxt
                if held[0] == target:
                    chosen = held[1]
                elif previous is not None:
                    chosen = previous[1]  # variable frame rate: the frame still on screen at `target`
                elif from_start:
                    chosen = held[1]  # the stream starts after `target`: its first frame is the closest
                else:
                    # A seek landed past the target (a bad index): decode from the start instead.
                    decoder.seek(0)
                    frames, held, previous, from_start = decoder.frames(), None, None, True
                    continue
                break
            found[target] = _to_array(chosen, size, interpolation)
        return np.stack([found[i] for i in indices])
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot decode video {str(path)!r}: {_reason(exc)}") from None
    finally:
        container.close()


def iter_frames(
    path: str | os.PathLike,
    start: int = 0,
    end: int | None = None,
    *,
    size: tuple[int, int] | None = None,
    interpolation: str = "BILINEAR",
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb_uint8_frame)`` for frames ``start <= index < end``, seeking to ``start``.

    Raises:
        VideoError: the file cannot be opened or decoded.
    """
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoder = _Decoder(container, stream)
        if start > 0:
            decoder.seek(start)
        for index, frame in decoder.frames():
            if index < start:
                continue
            if end is not None and index >= end:
                break
            yield index, _to_array(frame, size, interpolation)
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot decode video {str(path)!r}: {_reason(exc)}") from None
    finally:
        container.close()


def frame_indices_for_times(times: Sequence[float], fps: float) -> list[int]:
    """Frame numbers shown at each time (seconds): ``floor(t * fps + 1e-6)``."""
    return [int(math.floor(t * fps + 1e-6)) for t in times]


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a common video file extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".gif", ".mpg", ".mpeg", ".ts"})
