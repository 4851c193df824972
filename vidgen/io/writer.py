"""Writing videos: H.264/yuv420p MP4 that browsers and phones play, and looping GIFs.

Files are written under a temporary name beside the target and renamed when
complete, so an interrupted write never leaves a truncated video behind.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from vidgen.errors import InputError, OutputError
from vidgen.io.files import WRITE_ERRNOS, atomic_output, write_failure

VideoFormat = Literal["mp4", "gif"]
UPSCALE_MODES = ("nearest", "bicubic")


def to_uint8_frames(frames) -> np.ndarray:
    """Convert ``[T, H, W, 3]`` frames (uint8, or float in [0, 1]; numpy or torch) to uint8.

    Raises:
        InputError: the array is not ``[T, H, W, 3]`` or ``[T, H, W]``.
    """
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu()
        frames = frames.numpy() if str(frames.dtype) == "torch.uint8" else frames.float().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4) or frames.shape[0] == 0:
        raise InputError(f"frames must have shape [T, H, W, 3], got {tuple(frames.shape)}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    frames = frames[..., :3]
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames)


def upscale(frames: np.ndarray, factor: int, mode: str = "nearest") -> np.ndarray:
    """Enlarge ``[T, H, W, 3]`` uint8 frames by an integer ``factor`` (for viewing small models' output).

    ``nearest`` keeps hard pixel edges (honest about the model's resolution);
    ``bicubic`` is smoother.
    """
    if factor == 1:
        return frames
    if factor < 1:
        raise InputError(f"upscale factor must be a positive integer, got {factor}")
    if mode not in UPSCALE_MODES:
        raise InputError(f"unknown upscale mode {mode!r}; choose one of {', '.join(UPSCALE_MODES)}")
    if mode == "nearest":
        return np.ascontiguousarray(frames.repeat(factor, axis=1).repeat(factor, axis=2))
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat the last row/column when odd (no resampling)."""
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _write_mp4(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    """Encode with ffmpeg (the command imageio-ffmpeg's ``write_frames`` builds for these settings), checking its
    exit status: a full disk shows only there, after ffmpeg has left a truncated file behind.

    Raises:
        OSError: ffmpeg failed (with the errno of a full or read-only disk when that is the cause).
    """
    import subprocess
    from fractions import Fraction

    import imageio_ffmpeg

    frames = _pad_even(frames)
    _, h, w, _ = frames.shape
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}",
           "-pix_fmt", "rgb24", "-r", str(Fraction(fps).limit_denominator()), "-i", "-", "-an",
           "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-v", "error",
           "-crf", str(crf), "-preset", "medium", "-movflags", "+faststart", str(path)]
    with tempfile.TemporaryFile() as log:
        # Its own session: a Ctrl-C reaches this process, which stops ffmpeg, instead of ffmpeg alone.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            try:
                for frame in frames:
                    proc.stdin.write(frame)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg stopped early: its exit status and log say why
            status = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if status == 0:
            return
        code = 256 - status  # ffmpeg exits with its negative error code, an errno for I/O failures
        if code in WRITE_ERRNOS:
            raise OSError(code, os.strerror(code))
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").strip().splitlines()
        # "[out#0/mp4 @ 0x55e6...] Error ...": the part after the muxer's address is the message.
        detail = re.sub(r"^\[[^]]*\]\s*", "", lines[-1]) if lines else f"exit status {status}"
        raise OSError(errno.EIO, f"ffmpeg: {detail}")


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    duration_ms = max(20, int(round(1000.0 / fps)))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)


def video_format(path: str | os.PathLike, format: VideoFormat | None = None) -> str:
    """``format``, or the one ``path``'s suffix names.

    Raises:
        InputError: neither is ``mp4`` or ``gif``.
    """
    fmt = (format or Path(path).suffix.lstrip(".")).lower()
    if fmt not in ("mp4", "gif"):
        raise InputError(f"unknown video format {fmt!r} for {str(path)!r}; use .mp4 or .gif")
    return fmt


def encode_video(
    path: str | os.PathLike,
    frames,
    fps: float = 8.0,
    *,
    format: VideoFormat | None = None,
    upscale_factor: int = 1,
    upscale_mode: str = "nearest",
    crf: int = 18,
    name: str | os.PathLike | None = None,
) -> None:
    """Write frames straight to ``path`` (a temporary of :func:`~vidgen.io.files.atomic_outputs`); arguments as
    :func:`write_video`, ``name`` the final path that errors mention.

    Raises:
        InputError: bad frames, fps or format.
        OutputError: the encoder failed for another reason than the disk.
        OSError: the disk is full or read-only (left for the caller's atomic write to report).
    """
    fmt = video_format(name or path, format)
    if not fps or fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    arr = upscale(to_uint8_frames(frames), upscale_factor, upscale_mode)
    try:
        if fmt == "mp4":
            _write_mp4(Path(path), arr, fps, crf)
        else:
            _write_gif(Path(path), arr, fps)
    except (OSError, RuntimeError) as exc:
        if write_failure(exc) is not None:
            raise
        raise OutputError(f"failed to write {str(name or path)!r}: {exc}") from None


def write_video(
    path: str | os.PathLike,
    frames,
    fps: float = 8.0,
    *,
    format: VideoFormat | None = None,
    overwrite: bool = False,
    upscale_factor: int = 1,
    upscale_mode: str = "nearest",
    crf: int = 18,
) -> Path:
    """Write frames to an MP4 (H.264, yuv420p, even size) or a looping GIF.

    Args:
        path: destination; its suffix picks the format unless ``format`` is given.
        frames: ``[T, H, W, 3]`` uint8 or float in [0, 1] (numpy or torch).
        fps: frames per second.
        format: ``"mp4"`` or ``"gif"``.
        overwrite: replace an existing file.
        upscale_factor: integer enlargement before writing (1 = none).
        upscale_mode: ``"nearest"`` or ``"bicubic"``.
        crf: x264 constant rate factor (lower is better quality; 18 is visually lossless).

    Returns:
        The written path.

    Raises:
        InputError: bad frames, fps or format.
        OutputError: the file exists without ``overwrite``, or cannot be written (a full or read-only disk
            included: nothing is left under ``path``).
    """
    path = Path(path)
    fmt = video_format(path, format)
    with atomic_output(path, overwrite=overwrite) as tmp:
        encode_video(tmp, frames, fps, format=fmt, upscale_factor=upscale_factor, upscale_mode=upscale_mode, crf=crf,
                     name=path)
    return path
