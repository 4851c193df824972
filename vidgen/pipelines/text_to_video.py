"""The text-to-video sampler: classifier-free-guided latent diffusion over frames.

``TextToVideoPipeline`` is a ``diffusers.DiffusionPipeline``, so a model folder
(``model_index.json`` plus ``vae/``, ``text_encoder/``, ``tokenizer/``,
``unet/``, ``scheduler/``) opens with ``from_pretrained`` and ``save_pretrained``
writes one. The denoising loop is written out in ``__call__``.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from vidgen.errors import InputError
from vidgen.pipelines.caching import FeatureCache, parse_cache_spec
from vidgen.pipelines.long_video import (check_keyframes, context_windows, frame_states, free_init_noise, keyframe_mix,
                                         low_pass_filter, mix_states, parse_keyframes, reschedule_noise, resolve_context,
                                         window_fusion_weights)
from vidgen.pipelines.settings import check_guidance_interval
from vidgen.models.t2v import is_motion_unet, max_frames

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("np", "pt", "pil", "latent")
ATTENTION_BACKENDS = ("auto", "sdpa", "xformers", "math")
# the diffusers pipeline whose components a vidgen model folder has, by denoiser class
DIFFUSERS_PIPELINES = {"UNetMotionModel": "AnimateDiffPipeline", "UNet3DConditionModel": "TextToVideoSDPipeline"}


@dataclass
class TextToVideoOutput(BaseOutput):
    """What :class:`TextToVideoPipeline` returns.

    Attributes:
        frames: ``output_type="np"``: float32 ``[B, F, H, W, 3]`` in [0, 1];
            ``"pt"``: float32 tensor ``[B, F, 3, H, W]`` in [0, 1]; ``"pil"``: a list
            (per video) of lists of ``PIL.Image``; ``"latent"``: the final latents
            ``[B, C, F, h, w]``.
    """

    frames: Any


def _as_list(value: str | Sequence[str] | None, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InputError(f"{name} must be a string or a list of strings, got {type(value).__name__}")


class TextToVideoPipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """Text-to-video generation with a ``UNetMotionModel`` or ``UNet3DConditionModel`` denoiser.

    Args:
        vae: ``AutoencoderKL`` applied to each frame.
        text_encoder: ``CLIPTextModel``; its last hidden states condition the denoiser.
        tokenizer: ``CLIPTokenizer`` matching the text encoder.
        unet: ``UNetMotionModel`` or ``UNet3DConditionModel`` over latents ``[B, C, F, h, w]``.
        scheduler: any diffusers noise scheduler (see :mod:`vidgen.pipelines.schedulers`).

    LoRA files load with ``load_lora_weights`` as on diffusers' Stable Diffusion and AnimateDiff pipelines.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "noise_pred"]

    _windows = None  # the context windows of the call in progress (predict_windows)

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_size(self) -> tuple[int, int]:
        """``(height, width)`` the denoiser was configured for."""
        size = self.unet.config.sample_size or 32
        h, w = (size, size) if isinstance(size, int) else size
        return h * self.vae_scale_factor, w * self.vae_scale_factor

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """``DiffusionPipeline.save_pretrained``, with a ``model_index.json`` that plain diffusers resolves.

        The index names ``AnimateDiffPipeline`` (a ``UNetMotionModel`` denoiser) or ``TextToVideoSDPipeline``
        (``UNet3DConditionModel``), whose components are these five, so
        ``diffusers.DiffusionPipeline.from_pretrained(FOLDER)`` opens the folder without vidgen installed;
        ``TextToVideoPipeline.from_pretrained`` opens it as before.
        """
        import json
        from pathlib import Path

        from vidgen.io.files import atomic_write_text

        super().save_pretrained(save_directory, *args, **kwargs)
        unet = getattr(self.unet, "_orig_mod", self.unet)  # torch.compile's wrapper, if any
        index_path = Path(save_directory) / "model_index.json"
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index["_class_name"] = DIFFUSERS_PIPELINES.get(type(unet).__name__, index["_class_name"])
        atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ setup

    def set_attention_backend(self, name: str = "auto") -> str:
        """Choose the attention kernel for the denoiser and VAE.

        Args:
            name: ``"sdpa"`` (PyTorch scaled-dot-product attention; the default),
                ``"xformers"`` (memory-efficient kernels; CUDA only, optional
                extra), ``"math"`` (plain matmul/softmax, for reference), or
                ``"auto"`` (xformers when installed and on CUDA, else SDPA).

        Returns:
            The backend actually set.

        Raises:
            InputError: an unknown name, or xformers asked for where it cannot run.
        """
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        if name not in ATTENTION_BACKENDS:
            raise InputError(f"unknown attention backend {name!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
        on_cuda = self.unet.device.type == "cuda"
        if name == "auto":
            name = "xformers" if on_cuda and _xformers_available() else "sdpa"
        if name == "xformers":
            if not on_cuda:
                raise InputError("attention backend 'xformers' needs a CUDA device (use --device cuda, or sdpa)")
            if not _xformers_available():
                from vidgen.extras import require

                require("xformers", "attention backend 'xformers'", "gpu")
            self.unet.enable_xformers_memory_efficient_attention()
            self.vae.enable_xformers_memory_efficient_attention()
        else:
            processor = AttnProcessor2_0 if name == "sdpa" else AttnProcessor
            self.unet.set_attn_processor(processor())
            self.vae.set_attn_processor(processor())
        return name

    # ----------------------------------------------------------------- inputs

    def check_inputs(
        self,
        prompt: list[str] | None,
        negative_prompt: list[str] | None,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        num_videos_per_prompt: int,
        output_type: str,
        decode_chunk_size: int,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
    ) -> None:
        """Validate every argument before any work is done; raise :class:`InputError` naming the bad one."""
        if prompt is None and prompt_embeds is None:
            raise InputError("prompt is required (or pass prompt_embeds)")
        if prompt is not None and prompt_embeds is not None:
            raise InputError("pass either prompt or prompt_embeds, not both")
        if prompt is not None:
            if not prompt:
                raise InputError("prompt list is empty")
            for i, p in enumerate(prompt):
                if not p.strip():
                    raise InputError(f"prompt {i} is empty")
        if negative_prompt is not None and prompt is not None and len(negative_prompt) not in (1, len(prompt)):
            raise InputError(f"negative_prompt has {len(negative_prompt)} entries but prompt has {len(prompt)}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise InputError("pass either negative_prompt or negative_prompt_embeds, not both")
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if embeds is not None and (not isinstance(embeds, torch.Tensor) or embeds.ndim != 3):
                raise InputError(f"{name} must be a [batch, tokens, dim] tensor, got {getattr(embeds, 'shape', type(embeds).__name__)}")
        if prompt is not None and negative_prompt_embeds is not None and negative_prompt_embeds.shape[0] not in (1, len(prompt)):
            raise InputError(f"negative_prompt_embeds has batch {negative_prompt_embeds.shape[0]} but prompt has {len(prompt)} entries")
        if prompt_embeds is not None and negative_prompt_embeds is not None and prompt_embeds.shape != negative_prompt_embeds.shape:
            raise InputError(
                f"prompt_embeds {tuple(prompt_embeds.shape)} and negative_prompt_embeds "
                f"{tuple(negative_prompt_embeds.shape)} must have the same shape"
            )
        if not isinstance(num_frames, int) or num_frames < 1:
            raise InputError(f"num_frames must be a positive integer, got {num_frames!r}")
        factor = self.vae_scale_factor
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
            if value % factor:
                raise InputError(f"{name}={value} is not divisible by the VAE factor {factor}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if not isinstance(guidance_scale, (int, float)) or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise InputError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise InputError(f"num_videos_per_prompt must be a positive integer, got {num_videos_per_prompt!r}")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if not isinstance(decode_chunk_size, int) or decode_chunk_size < 1:
            raise InputError(f"decode_chunk_size must be a positive integer, got {decode_chunk_size!r}")

    # ------------------------------------------------------------- components

    @property
    def prompt_warnings(self):
        """Warns once per prompt about words the model does not know (when its folder lists them) and words the
        text encoder's context cuts off (:mod:`vidgen.pipelines.prompts`); :func:`load_pipeline` sets the model's."""
        if getattr(self, "_prompt_warnings", None) is None:
            from vidgen.pipelines.prompts import PromptWarnings

            self._prompt_warnings = PromptWarnings()
        return self._prompt_warnings

    @prompt_warnings.setter
    def prompt_warnings(self, value) -> None:
        self._prompt_warnings = value

    def encode_prompt(self, prompts: list[str], device: torch.device, warn_truncation: bool = True,
                      negative: bool = False) -> torch.Tensor:
        """Text encoder hidden states ``[N, L, D]`` for ``prompts`` (padded to the tokenizer's max length).

        Training and the latent cache call this too (without warnings), so the denoiser always sees text
        encoded one way. Negative prompts are only checked for length: they name what to avoid, in any words.
        """
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        if warn_truncation:
            self.prompt_warnings.check(prompts, self.tokenizer, known_words=not negative)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(device)
        embeds = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        return embeds.to(dtype=self.text_encoder.dtype, device=device)

    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int = 16) -> torch.Tensor:
        """VAE-decode ``[B, C, F, h, w]`` latents in slices of frames; returns ``[B, 3, F, H, W]`` in [-1, 1]."""
        # Latents carry the denoiser's dtype; the VAE may be kept in another (fp32 VAE, bf16 U-Net).
        latents = latents.to(dtype=self.vae.dtype) / self.vae.config.scaling_factor
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        frames = torch.cat([self.vae.decode(flat[i : i + decode_chunk_size]).sample for i in range(0, flat.shape[0], decode_chunk_size)])
        return frames.reshape(b, f, *frames.shape[1:]).permute(0, 2, 1, 3, 4).float()

    def _step_kwargs(self, generator, eta: float) -> dict[str, Any]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    def predict(
        self,
        latents: torch.Tensor,
        t,
        prompt_embeds: torch.Tensor,
        guidance_scale: float,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The guided denoiser output for ``latents`` at timestep ``t``.

        Args:
            latents: ``[B, C, F, h, w]``, before the scheduler's input scaling.
            prompt_embeds: ``[2B, L, D]`` (negative states first, then the prompts)
                when ``__call__`` guides, else ``[B, L, D]``; with ``[2B, L, D]`` and
                ``guidance_scale <= 1`` only the prompts' half is used. ``UNetMotionModel``
                denoisers also take states per frame, ``[2B, F, L, D]`` (prompt travel).
            guidance_scale: classifier-free guidance weight.
        """
        do_cfg = guidance_scale > 1.0
        if not do_cfg and prompt_embeds.shape[0] == 2 * latents.shape[0]:
            prompt_embeds = prompt_embeds.chunk(2)[1]  # no guidance at this step: the conditional branch alone
        model_input = torch.cat([latents] * 2) if do_cfg else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        # UNetMotionModel runs its spatial layers per frame and expects the text
        # states already repeated per frame; UNet3DConditionModel repeats them itself.
        if prompt_embeds.ndim == 4:  # states per frame, [B, F, L, D]
            states = prompt_embeds.flatten(0, 1)
        else:
            states = prompt_embeds.repeat_interleave(latents.shape[2], dim=0) if is_motion_unet(self.unet) else prompt_embeds
        pred = self.unet(model_input, t, encoder_hidden_states=states, cross_attention_kwargs=cross_attention_kwargs).sample
        if do_cfg:
            uncond_pred, cond_pred = pred.chunk(2)
            pred = uncond_pred + guidance_scale * (cond_pred - uncond_pred)
        return pred

    # ------------------------------------------------------------------- call

    def context_settings(self, num_frames: int, context_length: int | None = None,
                         context_overlap: int | None = None) -> tuple[int, int]:
        """The ``(length, overlap)`` of the context windows for ``num_frames`` frames: ``context_length`` or
        the denoiser's frame limit, ``motion_max_seq_length`` (every frame in one window when it has none;
        the length a model was trained on is not recorded in it: model folders name it in their
        ``sample_defaults.yaml``), and ``context_overlap`` or a quarter of the window.

        Raises:
            InputError: a window longer than the model takes, or an overlap not smaller than the window.
        """
        return resolve_context(num_frames, context_length, context_overlap, max_frames(self.unet))

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | Mapping[int, str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        decode_chunk_size: int = 16,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guidance_interval: tuple[float, float] | None = None,
        cache: str | None = None,
        context_length: int | None = None,
        context_overlap: int | None = None,
        free_noise: bool = True,
        free_init_iters: int = 0,
    ) -> TextToVideoOutput | tuple:
        """Generate videos from text.

        Args:
            prompt: one prompt or a list (one video per prompt per ``num_videos_per_prompt``); or, for
                prompt travel, ``{frame: prompt}`` keyframes of one video, the first at frame 0
                (:mod:`vidgen.pipelines.long_video`).
            negative_prompt: what to steer away from; one string or one per prompt.
                ``None`` uses the empty prompt as the unconditional branch.
            num_frames: frames per video; more than the context window are denoised in overlapping windows.
            height, width: output size in pixels (multiples of the VAE factor);
                default: the denoiser's ``sample_size`` times the VAE factor.
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight w (Ho & Salimans 2022);
                guidance runs when w > 1, batched with the conditional pass.
            num_videos_per_prompt: videos per prompt.
            eta: DDIM eta (schedulers that take it).
            generator: a ``torch.Generator`` or one per video, for reproducibility.
            latents: initial noise ``[B, C, F, h, w]`` (before ``init_noise_sigma`` scaling), taken as given
                (no noise rescheduling).
            prompt_embeds, negative_prompt_embeds: precomputed text states ``[B, L, D]``.
            output_type: ``"np"``, ``"pt"``, ``"pil"`` or ``"latent"``.
            return_dict: return :class:`TextToVideoOutput` rather than a tuple.
            callback_on_step_end: ``fn(pipe, step, timestep, tensors) -> dict``;
                returned tensors (e.g. ``"latents"``) replace the loop's, which
                lets callers condition or inpaint during sampling.
            callback_on_step_end_tensor_inputs: names passed to the callback.
            decode_chunk_size: frames per VAE decode call (lower saves memory).
            cross_attention_kwargs: passed to the attention processors.
            guidance_interval: ``(lo, hi)`` in the scheduler's timesteps (0-1000 for the usual 1000
                training steps): guidance runs only at evaluations with ``lo <= t <= hi``; the others
                take the conditional prediction alone (one denoiser pass instead of two). Guidance in a
                limited interval (Kynkaanniemi et al. 2024); ``None``: every step. The decision is per
                denoiser evaluation, so a second-order solver (heun, kdpm2) whose step straddles ``lo``
                guides one of its two evaluations only.
            cache: reuse the denoiser's deep features across steps (:mod:`vidgen.pipelines.caching`):
                ``"deep:K"`` recomputes them every K denoiser calls, ``"adaptive:T"`` when the first
                block's output moved by more than T; ``None``/``"none"``: every call in full. What it did
                is in ``self.cache_stats`` afterwards (the last FreeInit round's). In context windows each
                window keeps its own cache, so its memory grows with the number of windows.
            context_length: frames the denoiser sees at once; a longer video runs overlapping windows of
                this length whose predictions are fused per frame. ``None``: the denoiser's frame limit
                (``motion_max_seq_length``), or every frame at once for denoisers without one.
            context_overlap: frames neighbouring windows share (``None``: a quarter of the window).
            free_noise: reschedule the initial noise of frames past the first window (FreeNoise) when
                the pipeline draws it; no effect on a video that fits one window.
            free_init_iters: FreeInit rounds: sample again this many times from noise whose low
                frequencies come from the last result (0: off).

        Returns:
            :class:`TextToVideoOutput` (or ``(frames,)`` when ``return_dict`` is false).

        Raises:
            InputError: any argument that the model cannot take.
        """
        keyframes = parse_keyframes(prompt) if isinstance(prompt, Mapping) else None
        if keyframes is not None and (prompt_embeds is not None or
                                      (negative_prompt_embeds is not None and negative_prompt_embeds.shape[0] != 1)):
            raise InputError("prompt travel keyframes take their text from the prompts: do not pass prompt_embeds, and "
                             "at most one row of negative_prompt_embeds")
        prompts = [k.prompt for k in keyframes] if keyframes is not None else _as_list(prompt, "prompt")
        negatives = _as_list(negative_prompt, "negative_prompt")
        default_h, default_w = self.default_size
        height = default_h if height is None else height
        width = default_w if width is None else width
        self.check_inputs(
            prompts, negatives, num_frames, height, width, num_inference_steps, guidance_scale,
            num_videos_per_prompt, output_type, decode_chunk_size, prompt_embeds, negative_prompt_embeds,
        )
        if keyframes is not None:
            check_keyframes(keyframes, num_frames)
            if negatives is not None and len(negatives) != 1:
                raise InputError(f"prompt travel takes one negative_prompt, got {len(negatives)}")
        if not isinstance(free_init_iters, int) or isinstance(free_init_iters, bool) or free_init_iters < 0:
            raise InputError(f"free_init_iters must be a non-negative integer, got {free_init_iters!r}")
        length, overlap = self.context_settings(num_frames, context_length, context_overlap)
        guidance_interval = check_guidance_interval(guidance_interval)
        cache_spec = parse_cache_spec(cache)
        if cache_spec.kind != "none" and getattr(self.unet, "_compiled_call_impl", None) is not None:
            raise InputError("feature caching does not combine with a compiled denoiser (--compile); use one of them")
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise InputError(f"callback tensor {name!r} is not one of {', '.join(self._callback_tensor_inputs)}")
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 1. Text conditioning: [uncond..., cond...] so one denoiser call serves both branches.
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompts, device)
        prompt_embeds = prompt_embeds.to(device=device, dtype=self.text_encoder.dtype)
        num_prompts = 1 if keyframes is not None else prompt_embeds.shape[0]
        batch = num_prompts * num_videos_per_prompt
        if do_cfg:
            if negative_prompt_embeds is None:
                negative_prompt_embeds = self.encode_prompt(negatives or [""], device, negative=True)
            negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=prompt_embeds.dtype)
            if negative_prompt_embeds.shape[0] == 1:
                negative_prompt_embeds = negative_prompt_embeds.expand(num_prompts, -1, -1)
        if isinstance(generator, list) and len(generator) != batch:
            raise InputError(f"got {len(generator)} generators for {batch} videos")

        def conditioning(states: torch.Tensor) -> torch.Tensor:
            if do_cfg:
                negative = negative_prompt_embeds
                if states.ndim == 4:  # per frame
                    negative = negative[:, None].expand(-1, states.shape[1], -1, -1)
                states = torch.cat([negative, states])
            return states.repeat_interleave(num_videos_per_prompt, dim=0)

        # 2. Context windows, each with its text states. With prompt travel a motion denoiser gets each frame
        # its keyframe's states (its spatial layers run per frame); a 3D U-Net takes one state per window,
        # the keyframes' mixed by how many of its frames each holds.
        windows = context_windows(num_frames, length, overlap)
        fusion = [w.to(device).view(1, 1, -1, 1, 1) for w in window_fusion_weights(windows, num_frames)]
        if keyframes is None:
            window_states = [conditioning(prompt_embeds)] * len(windows)
        elif is_motion_unet(self.unet):
            window_states = [conditioning(frame_states(prompt_embeds, keyframes, w)) for w in windows]
        else:
            window_states = [conditioning(mix_states(prompt_embeds, keyframe_mix(keyframes, w))) for w in windows]

        # 3. Noise and timesteps.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch, self.unet.config.in_channels, num_frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        dtype = prompt_embeds.dtype
        reschedule = free_noise and latents is None  # noise the caller gives is taken as given

        def draw() -> torch.Tensor:
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            return reschedule_noise(noise, length, overlap, generator) if reschedule else noise

        if latents is None:
            noise = draw()
        else:
            if tuple(latents.shape) != tuple(shape):
                raise InputError(f"latents must have shape {tuple(shape)}, got {tuple(latents.shape)}")
            noise = latents.to(device=device, dtype=dtype)
        step_kwargs = self._step_kwargs(generator, eta)

        # 4. Denoising, then FreeInit's rounds. Each round starts from the first round's noise diffusing the last
        # result to the first timestep (the schedule's start, where the paper says t = T: the same level
        # whenever the schedule starts at T), low frequencies kept, high ones fresh.
        initial = noise
        if free_init_iters:
            alpha_bar = float(self.scheduler.alphas_cumprod[int(self.scheduler.timesteps[0])])
            mask = low_pass_filter(shape[2:])
        for round_ in range(free_init_iters + 1):
            if round_:
                self.scheduler.set_timesteps(num_inference_steps, device=device)
                noise = free_init_noise(latents, initial, draw(), alpha_bar, mask)
            self._windows = _Windows(windows, fusion, window_states, FeatureCache(self.unet, cache_spec), cross_attention_kwargs)
            try:
                latents = self._denoise(noise * self.scheduler.init_noise_sigma, guidance_scale, guidance_interval, step_kwargs,
                                        callback_on_step_end, callback_on_step_end_tensor_inputs)
            finally:
                self.cache_stats = self._windows.cache.stats  # the last round's
                self._windows = None

        # 5. Decode.
        if output_type == "latent":
            video: Any = latents
        else:
            pixels = (self.decode_latents(latents, decode_chunk_size) / 2 + 0.5).clamp(0, 1)  # [B, 3, F, H, W]
            pixels = pixels.permute(0, 2, 1, 3, 4)  # [B, F, 3, H, W]
            if output_type == "pt":
                video = pixels
            else:
                video = pixels.permute(0, 1, 3, 4, 2).cpu().numpy()
                if output_type == "pil":
                    from PIL import Image

                    video = [[Image.fromarray((f * 255).round().astype(np.uint8)) for f in clip] for clip in video]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return TextToVideoOutput(frames=video)

    def predict_windows(self, latents: torch.Tensor, t, guidance_scale: float) -> torch.Tensor:
        """The guided prediction for the whole video ``latents`` at ``t`` while a call runs: each context window
        predicted on its own (with its own text states and feature cache) and fused per frame. Callbacks that
        denoise again (a story's resampling) call this, so they see the video as the loop does."""
        ctx = self._windows
        if ctx is None:
            raise RuntimeError("predict_windows runs inside a pipeline call (from a callback)")
        if len(ctx.windows) == 1:
            return self.predict(latents, t, ctx.states[0], guidance_scale, ctx.cross_attention_kwargs)
        pred = torch.zeros_like(latents)
        for w, (window, weight) in enumerate(zip(ctx.windows, ctx.fusion)):
            ctx.cache.use(w)
            frames = slice(window.start, window.stop)
            part = self.predict(latents[:, :, frames], t, ctx.states[w], guidance_scale, ctx.cross_attention_kwargs)
            pred[:, :, frames] += part * weight.to(part.dtype)
        return pred

    def _denoise(self, latents: torch.Tensor, guidance_scale: float, guidance_interval, step_kwargs: dict[str, Any],
                 callback_on_step_end, callback_tensor_inputs) -> torch.Tensor:
        """The denoising loop over the scheduler's timesteps (the call's windows in ``self._windows``)."""
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress, self._windows.cache:
            for i, t in enumerate(timesteps):
                noise_pred = self.predict_windows(latents, t, guidance_at(t, guidance_scale, guidance_interval))
                latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "prompt_embeds": self._windows.states[0], "noise_pred": noise_pred}
                    update = callback_on_step_end(self, i, t, {k: tensors[k] for k in callback_tensor_inputs}) or {}
                    latents = update.get("latents", latents)
                progress.update()
        return latents


@dataclass
class _Windows:
    """A call's context windows: frames, fusion weights, text states and feature cache (one slot per window)."""

    windows: list[range]
    fusion: list[torch.Tensor]
    states: list[torch.Tensor]
    cache: FeatureCache
    cross_attention_kwargs: dict[str, Any] | None


def guidance_at(t, guidance_scale: float, interval: tuple[float, float] | None) -> float:
    """The guidance weight at timestep ``t``: ``guidance_scale`` inside ``interval`` (or everywhere without
    one), 1 (the conditional prediction alone) outside it."""
    if interval is None:
        return guidance_scale
    return guidance_scale if interval[0] <= float(t) <= interval[1] else 1.0


def _xformers_available() -> bool:
    try:
        import xformers  # noqa: F401
    except ImportError:
        return False
    return True
