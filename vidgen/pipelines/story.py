"""Interleaved video-text generation: a script of captions in, a sequence of continuing clips out.

Each clip after the first is conditioned on the last ``overlap`` latent frames
of the clip before it, with no retraining: at every denoising step the first
``overlap`` frames of the new clip are replaced by the previous clip's frames
noised to the current level (RePaint, Lugmayr et al. 2022), so the denoiser's
temporal layers continue them. With ``shared_noise`` those frames also start
from the very noise that produced them (as FreeNoise, Qiu et al. 2024, reuses
noise across windows), which keeps appearance steadier. Replacement alone
lets the new frames commit to a layout before the pinned ones, still noisy,
have told them much; ``resample=r`` adds RePaint's remedy: after each step the
latents are diffused back to the step's noise level and denoised again ``r``
times, so the new frames are harmonised with the pinned ones (``r`` more
denoiser calls per step). ``pin="clean"`` instead shows the denoiser the
previous clip's frames un-noised at every step: the conditioning a model
trained with context frames (``train.context_prob``) has learnt to continue,
which no plain model has seen. ``mode="independent"`` samples every clip on its
own: the baseline continuity is measured against.

The stitched video keeps the first clip whole and, of every later clip, only
the frames after the overlap.

:meth:`StoryPipeline.continuous` makes the story as one continuous video instead: the captions
become prompt-travel keyframes (:mod:`vidgen.pipelines.long_video`), each starting where the clip
before it ends, and the video is denoised in context windows; its clips are the frames each
caption holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from vidgen.errors import InputError
from vidgen.io.text import json_value, read_text
from vidgen.pipelines.settings import MODES, PINS, check_guidance_interval



@dataclass
class StorySegment:
    """One line of a story script."""

    caption: str
    num_frames: Optional[int] = None
    negative_prompt: Optional[str] = None
    guidance: Optional[float] = None


@dataclass
class StoryClip:
    """One generated clip and where it sits in the stitched video."""

    segment: StorySegment
    frames: np.ndarray  # float [F, H, W, 3] in [0, 1], the whole clip (overlap included)
    start_frame: int  # first frame this clip contributes to the stitched video
    num_new_frames: int  # frames it contributes (F minus the overlap, except for the first clip)

    @property
    def new_frames(self) -> np.ndarray:
        """The frames this clip adds to the stitched video."""
        return self.frames[len(self.frames) - self.num_new_frames :]


@dataclass
class StoryOutput:
    clips: list[StoryClip]
    video: np.ndarray  # float [N, H, W, 3] in [0, 1], the stitched story
    fps: float
    overlap: int
    mode: str
    meta: dict[str, Any] = field(default_factory=dict)


def read_script(path: str | Path) -> list[StorySegment]:
    """Segments from a ``.txt`` (one caption per line; ``#`` comments) or ``.jsonl`` script.

    A jsonl row holds ``caption`` (or ``text``/``prompt``) and optionally
    ``frames``, ``negative_prompt``, ``guidance``.

    Raises:
        InputError: a missing file, an empty line between captions, a row without a caption,
            or a script with no caption at all.
        TextEncodingError: the script is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"story script not found: {str(path)!r}")
    lines = read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines are just the end of the file
    segments = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if text.startswith("#"):
            continue
        if not text:
            raise InputError(f"{str(path)!r} line {lineno} is empty: every line is one clip's caption")
        if path.suffix.lower() == ".jsonl":
            row = json_value(text, f"{str(path)!r} line {lineno}", InputError, want_object=True)
            caption = row.get("caption", row.get("text", row.get("prompt")))
            if not isinstance(caption, str) or not caption.strip():
                raise InputError(f"{str(path)!r} line {lineno}: no caption (give 'caption', 'text' or 'prompt')")
            segments.append(StorySegment(caption.strip(), row.get("frames"), row.get("negative_prompt"), row.get("guidance")))
        else:
            segments.append(StorySegment(text))
    if not segments:
        raise InputError(f"story script {str(path)!r} has no captions")
    return segments


def clip_lengths(segments: Sequence[StorySegment], num_frames: int) -> list[int]:
    """Each segment's frames: its own ``frames``, else ``num_frames``."""
    return [seg.num_frames or num_frames for seg in segments]


def keyframe_starts(lengths: Sequence[int]) -> list[int]:
    """Where each clip starts in a continuous story of clips ``lengths`` long, back to back."""
    return [0, *itertools.accumulate(lengths)][: len(lengths)]


def resamples_with(scheduler) -> bool:
    """Whether RePaint resampling works with ``scheduler``: DDIM only (its steps keep no state between calls)."""
    return type(scheduler).__name__ == "DDIMScheduler"


def default_resample(pipe, model_defaults: Mapping[str, Any]) -> int:
    """RePaint rounds per step when none were asked for: the model folder's ``resample`` default
    (``model_defaults``, its read ``sample_defaults.yaml``) when ``pipe`` samples with a scheduler
    resampling works with, else 0, so that choosing another scheduler turns the model's default off
    instead of failing."""
    return int(model_defaults.get("resample", 0)) if resamples_with(pipe.scheduler) else 0


class StoryPipeline:
    """Generates a story with any :class:`~vidgen.pipelines.TextToVideoPipeline`.

    Args:
        pipe: the text-to-video pipeline (any model folder works; nothing is retrained).
    """

    def __init__(self, pipe):
        self.pipe = pipe

    def _check(self, segments: Sequence[StorySegment], num_frames: int, overlap: int, mode: str, resample: int = 0,
               pin: str = "noised") -> None:
        if pin not in PINS:
            raise InputError(f"pin must be one of {', '.join(PINS)}, got {pin!r}")
        if pin == "clean" and mode == "continuity" and overlap and self.pipe is not None:
            if float(self.pipe.scheduler.init_noise_sigma) != 1.0:
                name = type(self.pipe.scheduler).__name__
                raise InputError(f"pin clean needs a scheduler whose latents are not rescaled (ddim, dpm++, unipc, pndm...), "
                                 f"not {name}; use pin noised with it")
        if not isinstance(resample, int) or resample < 0:
            raise InputError(f"resample must be a non-negative integer, got {resample!r}")
        if resample and mode == "continuity" and overlap and self.pipe is not None and not resamples_with(self.pipe.scheduler):
            name = type(self.pipe.scheduler).__name__
            raise InputError(f"resample needs the ddim scheduler (its steps keep no state between calls), not {name}")
        if not segments:
            raise InputError("a story needs at least one caption")
        for i, seg in enumerate(segments):
            if not isinstance(seg.caption, str) or not seg.caption.strip():
                raise InputError(f"story clip {i + 1} has an empty caption")
            frames = seg.num_frames or num_frames
            if not isinstance(frames, int) or frames < 1:
                raise InputError(f"story clip {i + 1}: frames must be a positive integer, got {frames!r}")
            if i > 0 and overlap >= frames:
                raise InputError(f"story clip {i + 1}: overlap {overlap} must be smaller than its {frames} frames")
            if i + 1 < len(segments) and overlap > frames:
                raise InputError(f"story clip {i + 1}: overlap {overlap} exceeds its {frames} frames, so clip {i + 2} cannot continue it")
        if overlap < 0:
            raise InputError(f"overlap must be >= 0, got {overlap}")
        if mode not in MODES:
            raise InputError(f"story mode must be one of {', '.join(MODES)}, got {mode!r}")

    @torch.no_grad()
    def __call__(
        self,
        segments: Sequence[StorySegment | str],
        *,
        num_frames: int = 16,
        overlap: int = 2,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        seed: int = 0,
        mode: str = "continuity",
        shared_noise: bool = True,
        resample: int = 0,
        pin: str = "noised",
        fps: float = 8.0,
        guidance_interval: tuple[float, float] | None = None,
        cache: str | None = None,
        **long_video: Any,
    ) -> StoryOutput:
        """Generate one clip per segment, each continuing the last.

        Args:
            segments: captions (or :class:`StorySegment` with per-clip frames, negative prompt, guidance).
            num_frames: frames per clip unless a segment says otherwise.
            overlap: latent frames shared with the previous clip (0 = no conditioning).
            height, width: frame size (default: the model's).
            num_inference_steps, guidance_scale, negative_prompt: as for the pipeline.
            seed: clip ``i`` draws its noise from ``seed + i``.
            mode: ``continuity`` or ``independent`` (the baseline).
            shared_noise: reuse the previous clip's noise for the overlapping frames.
            resample: RePaint resampling rounds per denoising step for clips that
                continue another (0 = plain replacement); needs the ddim scheduler.
            pin: ``noised`` (the previous frames noised to each step's level,
                RePaint) or ``clean`` (as they are, for models trained with context frames).
            fps: frame rate recorded for the stitched video.
            guidance_interval: timesteps ``(lo, hi)`` where guidance runs (see the pipeline); ``None``: all.
            cache: feature caching across steps (see the pipeline), started afresh for every clip.
            **long_video: ``context_length``, ``context_overlap``, ``free_noise``, ``free_init_iters`` for
                each clip (see the pipeline).

        Returns:
            :class:`StoryOutput`.

        Raises:
            InputError: an empty caption, an overlap that does not fit, or a bad argument.
        """
        segs = [s if isinstance(s, StorySegment) else StorySegment(str(s)) for s in segments]
        self._check(segs, num_frames, overlap, mode, resample, pin)
        guidance_interval = check_guidance_interval(guidance_interval)
        pipe = self.pipe
        default_h, default_w = pipe.default_size
        height, width = height or default_h, width or default_w
        k = overlap if mode == "continuity" else 0
        clips: list[StoryClip] = []
        prev_latents = prev_noise = None
        cursor = 0
        for i, seg in enumerate(segs):
            frames_i = seg.num_frames or num_frames
            shape = (1, pipe.unet.config.in_channels, frames_i, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed + i))
            # Stochastic schedulers (ddpm, euler-a) draw fresh noise at every step: seed that too.
            kwargs: dict[str, Any] = {"generator": torch.Generator(pipe._execution_device).manual_seed(seed + i)}
            guidance = seg.guidance if seg.guidance is not None else guidance_scale
            if i > 0 and k > 0:
                if shared_noise:
                    noise[:, :, :k] = prev_noise[:, :, -k:]
                known, known_noise = prev_latents[:, :, -k:], noise[:, :, :k].clone()
                kwargs.update(self._conditioning(noise, known, known_noise, num_inference_steps, resample, guidance, seed + i, pin,
                                                 guidance_interval))
            out = pipe(
                seg.caption, negative_prompt=seg.negative_prompt or negative_prompt, num_frames=frames_i,
                height=height, width=width, num_inference_steps=num_inference_steps,
                guidance_scale=guidance, latents=kwargs.pop("latents", noise), output_type="latent",
                guidance_interval=guidance_interval, cache=cache, **long_video, **kwargs,
            )
            latents = out.frames
            pixels = (pipe.decode_latents(latents) / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 3, 0).cpu().numpy()
            new = frames_i if i == 0 else frames_i - overlap
            clips.append(StoryClip(seg, pixels, cursor, new))
            cursor += new
            prev_latents, prev_noise = latents, noise
        video = np.concatenate([c.new_frames for c in clips])
        meta = {"overlap": overlap, "mode": mode, "shared_noise": shared_noise, "resample": resample, "pin": pin, "seed": seed,
                "steps": num_inference_steps, "guidance": guidance_scale, "height": height, "width": width}
        if guidance_interval is not None:
            meta["guidance_interval"] = list(guidance_interval)
        if cache not in (None, "none"):
            meta["cache"] = cache
        meta.update({k: v for k, v in long_video.items() if v is not None})
        return StoryOutput(clips, video, fps, overlap, mode, meta)

    def check_continuous(self, segments: Sequence[StorySegment], num_frames: int) -> None:
        """What :meth:`continuous` checks before any work: captions and frames, and no per-clip negative prompt
        or guidance (one video has one of each)."""
        self._check(segments, num_frames, 0, "independent")
        for i, seg in enumerate(segments, 1):
            if seg.negative_prompt is not None or seg.guidance is not None:
                raise InputError(f"story clip {i}: a continuous story has one negative prompt and one guidance for the "
                                 "whole video; drop the clip's own 'negative_prompt'/'guidance' or leave out --continuous")

    @torch.no_grad()
    def continuous(
        self,
        segments: Sequence[StorySegment | str],
        *,
        num_frames: int = 16,
        negative_prompt: str | None = None,
        guidance_scale: float = 7.5,
        seed: int = 0,
        fps: float = 8.0,
        **sampling: Any,
    ) -> StoryOutput:
        """The story as one continuous video: caption ``i`` is a prompt-travel keyframe at the frame where
        clip ``i`` starts (clips of ``num_frames``, or a segment's own ``frames``, back to back).

        Args:
            segments: captions (or :class:`StorySegment` with per-clip frames).
            num_frames: frames per clip unless a segment says otherwise.
            negative_prompt, guidance_scale: for the whole video.
            seed: the video's noise.
            fps: frame rate recorded for the video.
            **sampling: the pipeline's other arguments (size, steps, guidance interval, cache, context windows...).

        Returns:
            :class:`StoryOutput` whose clips are the frames each caption holds (``mode="continuous"``).

        Raises:
            InputError: an empty caption, a segment with its own negative prompt or guidance (one video
                has one of each), or a bad argument.
        """
        segs = [s if isinstance(s, StorySegment) else StorySegment(str(s)) for s in segments]
        self.check_continuous(segs, num_frames)
        lengths = clip_lengths(segs, num_frames)
        starts = keyframe_starts(lengths)
        travel = {start: seg.caption.strip() for start, seg in zip(starts, segs)}
        out = self.pipe(travel, negative_prompt=negative_prompt, num_frames=sum(lengths), guidance_scale=guidance_scale,
                        generator=torch.Generator().manual_seed(seed), output_type="np",
                        **sampling)
        video = out.frames[0]
        clips = [StoryClip(seg, video[start : start + n], start, n) for seg, start, n in zip(segs, starts, lengths)]
        names = {"num_inference_steps": "steps"}  # as the clip-by-clip story records it
        meta = {"mode": "continuous", "seed": seed, "guidance": guidance_scale, "keyframes": starts,
                **{names.get(k, k): (list(v) if isinstance(v, tuple) else v) for k, v in sampling.items()
                   if v is not None and v != "none"}}
        return StoryOutput(clips, video, fps, 0, "continuous", meta)

    def _conditioning(self, noise: torch.Tensor, known: torch.Tensor, known_noise: torch.Tensor, steps: int,
                      resample: int = 0, guidance_scale: float = 1.0, seed: int = 0, pin: str = "noised",
                      guidance_interval: tuple[float, float] | None = None) -> dict:
        """Initial latents and the per-step callback that pin the first frames to ``known`` (RePaint).

        ``pin="noised"`` puts ``known`` noised to each step's level there, ``"clean"`` puts it as it is.

        With ``resample`` rounds, each step is followed by: diffuse the latents from the
        new level back to the step's level with fresh noise, pin, denoise again, pin.
        """
        from vidgen.pipelines.text_to_video import guidance_at

        pipe = self.pipe
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        k = known.shape[2]
        # The previous clip's latents live on the pipeline's device; the noise was drawn on the CPU.
        known_noise = known_noise.to(device=known.device, dtype=known.dtype)

        def shown(level) -> torch.Tensor:
            """The known frames as the denoiser sees them at noise level ``level``."""
            return known if pin == "clean" else scheduler.add_noise(known, known_noise, level.reshape(1))

        def pinned(latents: torch.Tensor, level) -> torch.Tensor:
            latents[:, :, :k] = shown(level)
            return latents

        start = noise.clone()
        # The pipeline multiplies the initial latents by init_noise_sigma; pre-divide the pinned part.
        start[:, :, :k] = (shown(timesteps[0]) / scheduler.init_noise_sigma).to(start)
        alphas = scheduler.alphas_cumprod
        fresh = torch.Generator().manual_seed(seed + 7919)  # the resampling noise, reproducible per clip

        def on_step_end(_pipe, i: int, t, tensors: dict) -> dict:
            latents = tensors["latents"]
            if i + 1 == len(timesteps):
                latents[:, :, :k] = known
                return {"latents": latents}
            s = timesteps[i + 1]
            latents = pinned(latents, s)
            # alpha-bar ratio of one DDIM step: x_t = sqrt(r) x_s + sqrt(1 - r) z, r = abar_t / abar_s.
            ratio = float(alphas[int(t)] / alphas[int(s)])
            for _ in range(resample):
                z = torch.randn(latents.shape, generator=fresh).to(latents)
                back = pinned(ratio**0.5 * latents + (1 - ratio) ** 0.5 * z, t)
                pred = pipe.predict_windows(back, t, guidance_at(t, guidance_scale, guidance_interval))
                latents = pinned(scheduler.step(pred, t, back).prev_sample, s)
            return {"latents": latents}

        return {"latents": start, "callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ("latents",)}
