"""How a video becomes model input: which frames, how they are resized, how they are normalised.

Scores from video CLIPs move with these choices, so each preset spells them
out and :meth:`VideoPreprocess.describe` puts them in every report.

``demo`` (default) is the public ViCLIP demo's path: frames
``frames[::len // 8][:8]``, each resized straight to 224x224 with OpenCV's
bilinear filter (no crop), ImageNet mean/std. The resize here reproduces
``cv2.resize(..., INTER_LINEAR)`` bit for bit (OpenCV's 11-bit fixed-point
arithmetic), so no OpenCV is needed and scores equal the demo's given the same
frames. libswscale's bilinear is *not* used: it low-pass filters when
shrinking and differs from the demo by about 5/255 per pixel on 720p input.

``vbench`` is VBench's ViCLIP path (``overall_consistency``, ``temporal_style``):
the middle frame of 8 equal segments (short videos padded with the last frame),
shorter side resized to 224 (bicubic, not antialiased, rounded back to uint8 as
torchvision's ``Resize`` does with uint8 tensors), centre crop, ``/255`` and
CLIP mean/std in float32 (torchvision's ``Normalize``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidgen.errors import InputError, VideoError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

FRAME_RULES = {
    "demo": "frames[::n // {count}][:{count}] (the public ViCLIP demo)",
    "middle": "middle frame of {count} equal segments (VBench)",
}
RESIZE_RULES = {
    "stretch-linear": "straight resize to {size}x{size}, bilinear as cv2.resize INTER_LINEAR, no crop",
    "short-bicubic-crop": "shorter side to {size} (bicubic, {antialias}), centre crop {size}x{size}",
}


def segment_middle_indices(total: int, count: int) -> list[int]:
    """VBench's "middle" sampling: cut ``[0, total)`` at ``int(linspace(0, total, count + 1))``, take each piece's middle.

    A clip shorter than ``count`` frames yields all its frames, then repeats the last.

    Raises:
        VideoError: the clip has no frames.
    """
    if count < 1:
        raise InputError(f"frame count must be positive, got {count}")
    if total < 1:
        raise VideoError("the clip has no frames")
    pieces = min(count, total)
    cuts = np.linspace(0, total, pieces + 1).astype(int)
    picked = [int((start + end - 1) // 2) for start, end in zip(cuts[:-1], cuts[1:])]
    return picked + [picked[-1]] * (count - pieces)


def _linear_taps(src: int, dst: int, clamp_ends: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit weights of OpenCV's bilinear resize along one axis.

    OpenCV computes the source position ``(d + 0.5) * src / dst - 0.5`` in
    float32 and rounds both weights to multiples of 1/2048. Along x it clamps
    the position at the borders; along y it keeps the weights and clamps only
    the row index, so we follow each.
    """
    pos = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    frac = (pos - first.astype(np.float32)).astype(np.float32)
    if clamp_ends:
        low, high = first < 0, first >= src - 1
        frac[low | high] = 0
        first[low] = 0
        first[high] = src - 1
    w1 = np.rint(frac * np.float32(2048)).astype(np.int32)
    w0 = np.rint((np.float32(1) - frac) * np.float32(2048)).astype(np.int32)
    return np.clip(first, 0, src - 1), np.clip(first + 1, 0, src - 1), w0, w1


def resize_linear_cv2(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(frame, size, interpolation=INTER_LINEAR)`` for uint8 frames, bit-exact, in numpy.

    numpy rather than torch: these small integer passes run in the decoding
    thread beside the model, where a second intra-op thread pool would only
    contend for the cores.

    Args:
        frames: ``uint8 [T, H, W, C]``.
        size: ``(width, height)`` as OpenCV takes it.

    Returns:
        ``uint8 [T, height, width, C]``.
    """
    width, height = size
    h, w = frames.shape[1], frames.shape[2]
    x0, x1, a0, a1 = _linear_taps(w, width, clamp_ends=True)
    y0, y1, b0, b1 = _linear_taps(h, height, clamp_ends=False)
    rows = np.unique(np.concatenate([y0, y1]))
    src = frames[:, rows]  # only the rows the output reads
    # int32 suffices: 255 * 2048 horizontally, (that >> 4) * 2048 vertically.
    horizontal = src[:, :, x0].astype(np.int32) * a0[None, None, :, None] + src[:, :, x1].astype(np.int32) * a1[None, None, :, None]
    lookup = np.empty(h, dtype=np.int64)
    lookup[rows] = np.arange(rows.size)
    r0, r1 = horizontal[:, lookup[y0]], horizontal[:, lookup[y1]]
    # OpenCV's SIMD vertical pass: drop 4 bits, 16-bit high multiplies, then round off the last 2 bits.
    out = ((((r0 >> 4) * b0[None, :, None, None]) >> 16) + (((r1 >> 4) * b1[None, :, None, None]) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_short_center_crop(frames: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Shorter side to ``size`` (bicubic), then the centre ``size x size`` crop (torchvision's Resize + CenterCrop on uint8).

    Args:
        frames: ``uint8 [T, H, W, C]``.
        antialias: low-pass filter when shrinking (PIL and torchvision's default); VBench turns it off.

    Returns:
        ``uint8 [T, size, size, C]``.
    """
    _, h, w, _ = frames.shape
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if h <= w else (new_long, size)
    x = frames.permute(0, 3, 1, 2).float()
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=antialias)
    x = x.clamp_(0, 255).round_()
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    if top < 0 or left < 0:
        raise VideoError(f"frame of {w}x{h} cannot be centre-cropped to {size}x{size}")
    return x[:, :, top : top + size, left : left + size].to(torch.uint8).permute(0, 2, 3, 1)


def normalize_frames(frames: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float],
                     precision: str = "float64") -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` -> ``float32 [T, 3, H, W]`` as ``(x / 255 - mean) / std``.

    ``precision="float64"``: each of the 256 levels per channel is computed once
    in float64 and rounded to float32, which gives exactly what the demo's
    per-pixel float64 numpy code gives, through a table look-up.
    ``"float32"``: every step in float32, as ``x.float().div(255)`` and
    torchvision's ``Normalize`` compute it (VBench).
    """
    x = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if precision == "float32":
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(255.0)
        m = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
        s = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
        return t.sub(m).div(s).contiguous()
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = ((levels[None, :] - np.asarray(mean, np.float64)[:, None]) / np.asarray(std, np.float64)[:, None]).astype(np.float32)
    out = np.stack([table[c][x[..., c]] for c in range(3)], axis=1)  # [T, 3, H, W]
    return torch.from_numpy(np.ascontiguousarray(out))


@dataclass(frozen=True)
class VideoPreprocess:
    """One way of turning a video file into a ``[T, 3, S, S]`` model input.

    Args:
        name: preset name shown in reports.
        frames: ``"demo"`` (stride ``n // T`` from frame 0) or ``"middle"`` (segment middles).
        resize: ``"stretch-linear"`` or ``"short-bicubic-crop"``.
        mean, std: per-channel normalisation of ``[0, 1]`` RGB.
        num_frames: frames per video (the model's ``T``).
        size: output side (the model's image size).
    """

    name: str
    frames: str
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_frames: int = 8
    size: int = 224
    antialias: bool = True  # short-bicubic-crop only
    precision: str = "float64"  # normalisation arithmetic: float64 (the demo's numpy) | float32 (torchvision's)

    def __post_init__(self) -> None:
        if self.frames not in FRAME_RULES:
            raise InputError(f"unknown frame rule {self.frames!r}; choose one of {', '.join(FRAME_RULES)}")
        if self.resize not in RESIZE_RULES:
            raise InputError(f"unknown resize rule {self.resize!r}; choose one of {', '.join(RESIZE_RULES)}")
        if self.precision not in ("float64", "float32"):
            raise InputError(f"precision must be float64 or float32, got {self.precision!r}")
        if self.num_frames < 1 or self.size < 1:
            raise InputError(f"num_frames and size must be positive, got {self.num_frames} and {self.size}")

    def frame_indices(self, total: int) -> list[int]:
        """The frames to decode from a ``total``-frame video.

        Raises:
            VideoError: the video is too short (``demo`` needs ``num_frames`` frames).
        """
        if self.frames == "demo":
            from vidgen.io.sampling import demo_indices

            return demo_indices(total, self.num_frames)
        return segment_middle_indices(total, self.num_frames)

    def transform(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """RGB ``uint8 [T, H, W, 3]`` frames -> normalised ``float32 [T, 3, size, size]``."""
        x = frames.numpy() if isinstance(frames, torch.Tensor) else np.ascontiguousarray(frames)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise InputError(f"frames must be uint8 [T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
        if self.resize == "stretch-linear":
            x = resize_linear_cv2(x, (self.size, self.size))
        else:
            x = resize_short_center_crop(torch.from_numpy(x), self.size, self.antialias).numpy()
        return normalize_frames(x, self.mean, self.std, self.precision)

    def load(self, path: str | os.PathLike) -> tuple[torch.Tensor, list[int]]:
        """Decode only the needed frames of ``path`` (seeking) and transform them.

        Returns:
            ``(tensor [T, 3, size, size], frame indices)``.

        Raises:
            VideoError: unreadable, corrupt or too short.
        """
        [(indices, frames)] = decode_frames(path, self.frame_indices).picks
        return self.transform(frames), indices

    def describe(self) -> dict[str, Any]:
        """What a report says about this preprocessing."""
        return {
            "name": self.name,
            "frames": FRAME_RULES[self.frames].format(count=self.num_frames),
            "resize": RESIZE_RULES[self.resize].format(size=self.size,
                                                       antialias="antialiased" if self.antialias else "no antialiasing"),
            "normalisation": ("ImageNet" if self.mean == IMAGENET_MEAN else "CLIP" if self.mean == CLIP_MEAN else "custom")
            + f" mean {list(self.mean)} std {list(self.std)}, in {self.precision}",
            "num_frames": self.num_frames,
            "size": self.size,
        }


PRESETS: dict[str, VideoPreprocess] = {
    "demo": VideoPreprocess("demo", frames="demo", resize="stretch-linear", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "vbench": VideoPreprocess("vbench", frames="middle", resize="short-bicubic-crop", mean=CLIP_MEAN, std=CLIP_STD,
                              antialias=False, precision="float32"),
}


def get_preprocess(name: str, num_frames: int = 8, size: int = 224) -> VideoPreprocess:
    """A preset (``demo`` or ``vbench``) sized for a model.

    Raises:
        InputError: an unknown preset.
    """
    if name not in PRESETS:
        raise InputError(f"unknown preprocessing {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], num_frames=num_frames, size=size)


def seek_gap(path: str | os.PathLike) -> int:
    """The frame gap beyond which seeking beats decoding forward, for this file's keyframe spacing.

    A seek restarts decoding at the keyframe before the target. When the next
    wanted frame lies within the same group of pictures, that keyframe is at or
    before the current position, so the seek re-decodes frames already passed.
    Seeking therefore pays only for gaps longer than the longest keyframe
    interval, which the packet headers give without decoding anything.
    Falls back to :data:`vidgen.io.video.SEEK_GAP_FRAMES` if the headers cannot be read.
    """
    import av

    from vidgen.io.video import SEEK_GAP_FRAMES

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate or stream.time_base is None:
                return SEEK_GAP_FRAMES
            scale = float(stream.time_base * rate)
            start = stream.start_time or 0
            keyframes, last = [], 0
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                index = round((packet.pts - start) * scale)
                last = max(last, index)
                if packet.is_keyframe:
                    keyframes.append(index)
    except (av.error.FFmpegError, OSError, IndexError):
        return SEEK_GAP_FRAMES
    bounds = sorted(set(keyframes)) + [last + 1]
    longest = max((b - a for a, b in zip(bounds, bounds[1:])), default=0)
    return max(SEEK_GAP_FRAMES, longest)


@dataclass
class DecodedFrames:
    """What :func:`decode_frames` read: per rule, ``(indices, uint8 frames [len(indices), H, W, 3])``, and
    how many frames the container announced against how many the rules were applied to."""

    picks: list[tuple[list[int], np.ndarray]]
    announced: int
    decodable: int

    @property
    def truncated(self) -> bool:
        """Whether fewer frames decode than the header announces (a cut-off download, a crashed write)."""
        return self.decodable < self.announced

    @property
    def note(self) -> str | None:
        """One line for reports when the frames were chosen among fewer than announced, else ``None``."""
        if not self.truncated:
            return None
        return f"{truncation(self.decodable, self.announced)}; frames chosen among the {self.decodable} that decode"


def truncation(decodable: int, announced: int) -> str:
    """``truncated: N of M frames decodable``, how reports name a video that ends early."""
    return f"truncated: {decodable} of {announced} frames decodable"


def decode_frames(path: str | os.PathLike, *rules: Callable[[int], list[int]]) -> DecodedFrames:
    """Decode, in one seeking pass, the frames that each rule ``rule(total) -> indices`` picks.

    Only the wanted frames are converted to RGB; the decoder seeks across
    groups of pictures and reads forward within one (see :func:`seek_gap`).

    Containers sometimes announce more frames than they hold (a truncated
    file). If decoding the announced indices fails, the frames are counted by
    decoding them all and the rules are applied to the true count (what a
    reader that decodes every frame, like the demo's OpenCV loop, sees); the
    result then says so (:attr:`DecodedFrames.note`), and a warning is logged.

    Returns:
        The picks per rule, with the announced and decodable frame counts.

    Raises:
        VideoError: unreadable, corrupt, or too short for a rule (for a truncated
            video the reason starts with "truncated: N of M frames decodable").
    """
    from vidgen.io.video import iter_frames, probe, read_frames

    gap = seek_gap(path)

    def attempt(total: int) -> list[tuple[list[int], np.ndarray]]:
        chosen = [rule(total) for rule in rules]
        wanted = sorted(set().union(*chosen))
        frames = dict(zip(wanted, read_frames(path, wanted, seek_gap=gap)))
        return [(c, np.stack([frames[i] for i in c])) for c in chosen]

    announced = probe(path).num_frames
    try:
        return DecodedFrames(attempt(announced), announced, announced)
    except VideoError as first:
        try:
            decoded = sum(1 for _ in iter_frames(path))
        except VideoError:
            raise first from None
        if decoded == announced or decoded == 0:
            raise
    try:
        result = DecodedFrames(attempt(decoded), announced, decoded)
    except VideoError as exc:
        raise VideoError(f"{truncation(decoded, announced)}; {exc}") from None
    logger.warning("%s: %s", path, result.note)
    return result
