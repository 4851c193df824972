"""Videos longer than the denoiser's trained length: context windows, noise rescheduling, prompt travel, FreeInit.

Motion modules learn a fixed clip length (16 frames for AnimateDiff, 8 for the shipped model); asked
for many more frames in one pass they blur or fall apart. Here a long video is denoised as
overlapping *context windows* of a length the model handles (a model folder names it in its
``sample_defaults.yaml``; else the motion modules' position limit): at every step the denoiser sees each window
on its own and the predictions are fused per frame, weighted so that a window counts less towards
its edges (AnimateDiff's context scheduling, and FreeNoise's window fusion, Qiu et al. 2024). The
initial noise of the frames after the first window is a shuffled re-use of the frames
``length`` before them (FreeNoise's noise rescheduling), so every window starts from the same
noise statistics and the windows agree on the layout.

*Prompt travel* gives keyframes (``{0: "a red circle moves right", 16: "... moves up"}``): each
frame belongs to the keyframe at or before it. A ``UNetMotionModel`` takes each frame's text states
(its spatial layers run per frame) and its temporal layers, with the window fusion, carry the
change smoothly across the keyframe; a ``UNet3DConditionModel`` takes one state per window, the
keyframes' mixed by how many of its frames each one holds. Either way, one continuous video.

*FreeInit* (Wu et al. 2023) samples again from noise whose low spatio-temporal frequencies come
from the previous result diffused back to the first timestep and whose high frequencies are fresh,
which steadies appearance and motion over the clip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from vidgen.errors import InputError
from vidgen.io.text import json_value, read_text

KEYFRAME = re.compile(r"^\s*(\d+)\s*:\s*(.*)$", re.DOTALL)
TRAVEL_FILES = (".jsonl", ".yaml", ".yml")


# ----------------------------------------------------------------------------------------- windows


def default_overlap(length: int) -> int:
    """Frames neighbouring windows share when none is asked: a quarter of the window (at least one)."""
    return max(1, length // 4) if length > 1 else 0


def check_context(num_frames: int, length: int, overlap: int, limit: int | None) -> None:
    """Raise :class:`InputError` for a window the model cannot take or an overlap that leaves no stride."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise InputError(f"context_length must be a positive integer, got {length!r}")
    if limit is not None and length > limit:
        raise InputError(f"context_length={length} exceeds this model's limit of {limit} frames (motion_max_seq_length)")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise InputError(f"context_overlap must be a non-negative integer, got {overlap!r}")
    if overlap >= length and num_frames > length:
        raise InputError(f"context_overlap={overlap} must be smaller than the context window of {length} frames")


def resolve_context(num_frames: int, length: int | None, overlap: int | None, limit: int | None) -> tuple[int, int]:
    """The ``(length, overlap)`` of the windows for ``num_frames`` frames: ``length`` or the model's ``limit``
    (every frame at once without one), ``overlap`` or :func:`default_overlap`; checked by :func:`check_context`."""
    length = length if length is not None else (limit or num_frames)
    overlap = overlap if overlap is not None else default_overlap(length)
    check_context(num_frames, length, overlap, limit)
    return length, overlap


def context_windows(num_frames: int, length: int, overlap: int) -> list[range]:
    """Windows of ``length`` frames, each starting ``length - overlap`` after the last, the last one ending
    at ``num_frames``; one window of every frame when the video fits in one."""
    if num_frames <= length:
        return [range(num_frames)]
    stride = length - overlap
    starts = list(range(0, num_frames - length, stride)) + [num_frames - length]
    return [range(s, s + length) for s in starts]


def window_fusion_weights(windows: Sequence[range], num_frames: int) -> list[torch.Tensor]:
    """Per window, the weight of its prediction for each of its frames; over the windows holding a frame
    the weights sum to one. Within a window they rise from the edges to the middle (1, 2, ... , 2, 1),
    so a frame is decided mostly by the windows that see it with context on both sides."""
    raw = []
    for window in windows:
        n = len(window)
        raw.append(torch.tensor([float(min(i + 1, n - i)) for i in range(n)], dtype=torch.float64))
    total = torch.zeros(num_frames, dtype=torch.float64)
    for window, w in zip(windows, raw):
        total[window.start : window.stop] += w
    return [(w / total[window.start : window.stop]).float() for window, w in zip(windows, raw)]


def reschedule_noise(noise: torch.Tensor, length: int, overlap: int, generator=None) -> torch.Tensor:
    """FreeNoise's noise rescheduling of ``[B, C, F, h, w]`` noise: the first ``length`` frames keep theirs;
    each later run of ``length - overlap`` frames takes the noise of the frames ``length`` before it, in a
    shuffled order (drawn from ``generator``: one per video, or one for all)."""
    frames = noise.shape[2]
    if frames <= length:
        return noise
    out = noise.clone()
    stride = max(1, length - overlap)
    for b in range(out.shape[0]):
        gen = generator[b] if isinstance(generator, (list, tuple)) else generator
        for start in range(length, frames, stride):
            stop = min(start + stride, frames)
            source = torch.arange(start - length, start - length + (stop - start))
            device = gen.device if isinstance(gen, torch.Generator) else "cpu"
            order = torch.randperm(len(source), generator=gen, device=device).cpu()
            out[b, :, start:stop] = out[b, :, source[order]]
    return out


# ------------------------------------------------------------------------------------ prompt travel


@dataclass(frozen=True)
class Keyframe:
    """From ``frame`` on (until the next keyframe) the video follows ``prompt``."""

    frame: int
    prompt: str


def parse_keyframes(items: Mapping[Any, str] | Sequence[str] | str) -> list[Keyframe]:
    """Keyframes from ``{frame: prompt}``, from ``"FRAME: prompt"`` strings, or from one path to a ``.jsonl``
    (rows ``{"frame": N, "prompt": "..."}``) or ``.yaml`` (a mapping ``FRAME: prompt`` or a list of such rows)
    file. They are returned in the order given: :func:`check_keyframes` checks the order.

    Raises:
        InputError: an item that is not ``FRAME: prompt``, a missing or malformed file.
    """
    if isinstance(items, str):
        items = [items]
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        items = list(items)
        if len(items) == 1 and not KEYFRAME.match(items[0]) and Path(items[0]).suffix.lower() in TRAVEL_FILES:
            return read_keyframes(items[0])
        pairs = []
        for item in items:
            match = KEYFRAME.match(item) if isinstance(item, str) else None
            if match is None:
                raise InputError(f"prompt travel keyframe {item!r} is not 'FRAME: prompt' (e.g. '0: a red circle moves right')")
            pairs.append((match.group(1), match.group(2)))
    keyframes = []
    for frame, prompt in pairs:
        keyframes.append(Keyframe(_frame_number(frame), _keyframe_prompt(prompt, frame)))
    return keyframes


def _frame_number(value: Any) -> int:
    if isinstance(value, bool):
        raise InputError(f"prompt travel frame must be a whole number >= 0, got {value!r}")
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if not isinstance(value, int) or value < 0:
        raise InputError(f"prompt travel frame must be a whole number >= 0, got {value!r}")
    return value


def _keyframe_prompt(prompt: Any, frame: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"prompt travel keyframe {frame}: the prompt is empty")
    return " ".join(prompt.split())


def read_keyframes(path: str | Path) -> list[Keyframe]:
    """Keyframes from a ``.jsonl`` (``{"frame": N, "prompt": "..."}`` per line) or ``.yaml`` file.

    Raises:
        InputError: a missing file, bad JSON/YAML, or rows without a frame and a prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompt travel file not found: {str(path)!r}")
    text = read_text(path)
    rows: list[Any]
    if path.suffix.lower() == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            rows.append(json_value(line, f"{str(path)!r} line {lineno}", InputError))
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{str(path)!r}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if isinstance(data, Mapping):
            return parse_keyframes(data)
        rows = data if isinstance(data, list) else [data]
    pairs = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, Mapping) or "frame" not in row or not isinstance(row.get("prompt", row.get("caption")), str):
            raise InputError(f"{str(path)!r} keyframe {i}: expected a row with 'frame' and 'prompt'")
        pairs.append((row["frame"], row.get("prompt", row.get("caption"))))
    if not pairs:
        raise InputError(f"prompt travel file {str(path)!r} has no keyframes")
    return [Keyframe(_frame_number(f), _keyframe_prompt(p, f)) for f, p in pairs]


def check_keyframes(keyframes: Sequence[Keyframe], num_frames: int) -> None:
    """Keyframes must start at frame 0, rise strictly and lie inside the video.

    Raises:
        InputError: naming the first keyframe that does not.
    """
    if not keyframes:
        raise InputError("prompt travel needs at least one keyframe")
    if keyframes[0].frame != 0:
        raise InputError(f"prompt travel must start at frame 0 (the first keyframe is at frame {keyframes[0].frame})")
    for before, after in zip(keyframes, keyframes[1:]):
        if after.frame <= before.frame:
            raise InputError(f"prompt travel keyframes out of order: frame {after.frame} comes after frame {before.frame}")
    if keyframes[-1].frame >= num_frames:
        raise InputError(f"prompt travel keyframe at frame {keyframes[-1].frame} is past the video's {num_frames} frames "
                         f"(frames 0-{num_frames - 1})")


def keyframe_mix(keyframes: Sequence[Keyframe], window: range) -> list[tuple[int, float]]:
    """``(keyframe index, share)`` of the frames of ``window`` each keyframe holds (shares sum to one)."""
    counts: dict[int, int] = {}
    for frame in window:
        index = keyframe_of(keyframes, frame)
        counts[index] = counts.get(index, 0) + 1
    return [(i, n / len(window)) for i, n in sorted(counts.items())]


def mix_states(states: torch.Tensor, mix: Sequence[tuple[int, float]]) -> torch.Tensor:
    """The text states ``[1, L, D]`` of a window: the keyframes' states ``states[K, L, D]`` mixed by share
    (a window inside one keyframe takes its states as they are)."""
    if len(mix) == 1:
        return states[mix[0][0] : mix[0][0] + 1]
    return sum(share * states[i : i + 1] for i, share in mix)


def keyframe_of(keyframes: Sequence[Keyframe], frame: int) -> int:
    """The index of the keyframe ``frame`` belongs to: the last one at or before it."""
    return max(i for i, k in enumerate(keyframes) if k.frame <= frame)


def frame_states(states: torch.Tensor, keyframes: Sequence[Keyframe], window: range) -> torch.Tensor:
    """The text states per frame ``[1, F, L, D]`` of ``window``: each frame its keyframe's (``states[K, L, D]``)."""
    index = torch.tensor([keyframe_of(keyframes, f) for f in window], device=states.device)
    return states[index][None]


# ------------------------------------------------------------------------------------------ FreeInit


def low_pass_filter(shape: Sequence[int], spatial: float = 0.25, temporal: float = 0.25, order: int = 4) -> torch.Tensor:
    """A Butterworth low-pass mask ``[F, h, w]`` over (centred) spatio-temporal frequencies, FreeInit's
    default: normalised cut-off ``spatial`` along height/width and ``temporal`` along frames."""
    f, h, w = shape

    def axis(n: int, stop: float) -> torch.Tensor:
        freq = torch.fft.fftshift(torch.fft.fftfreq(n)) * 2  # in [-1, 1)
        return (freq / stop) ** 2 if stop > 0 else torch.full((n,), float("inf"))

    d = axis(f, temporal)[:, None, None] + axis(h, spatial)[None, :, None] + axis(w, spatial)[None, None, :]
    return 1.0 / (1.0 + d**order)


def free_init_noise(result: torch.Tensor, noise: torch.Tensor, fresh: torch.Tensor, alpha_bar: float,
                    mask: torch.Tensor) -> torch.Tensor:
    """The next FreeInit starting noise: ``result`` (clean latents ``[B, C, F, h, w]``) diffused back with its
    own starting ``noise`` to the level ``alpha_bar``, keeping its low frequencies (``mask``) and taking the
    high ones from ``fresh`` noise."""
    diffused = alpha_bar**0.5 * result.float() + (1 - alpha_bar) ** 0.5 * noise.float()
    dims = (-3, -2, -1)
    spectrum = lambda x: torch.fft.fftshift(torch.fft.fftn(x, dim=dims), dim=dims)  # noqa: E731
    mask = mask.to(diffused.device)
    mixed = spectrum(diffused) * mask + spectrum(fresh.float()) * (1 - mask)
    out = torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real
    return out.to(noise.dtype)
