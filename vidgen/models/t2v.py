"""The text-to-video model's parts, built from diffusers and transformers classes.

A vidgen model is the Stable Diffusion recipe stretched over time: a VAE
(``diffusers.AutoencoderKL``) applied per frame, a CLIP text encoder
(``transformers.CLIPTextModel``), and a spatio-temporal denoiser:

* ``motion``: ``diffusers.UNetMotionModel``, a Stable Diffusion U-Net with
  temporal attention ("motion modules") after each spatial block: the shape of
  InternVid's text-to-video baseline (arXiv 2307.06942, Sec. 5.3) and AnimateDiff.
* ``unet3d``: ``diffusers.UNet3DConditionModel``, ModelScope's layout with
  temporal convolutions and temporal attention.

This module only builds those parts from named presets or configs; it holds no
model code of its own.
"""

from __future__ import annotations

import copy
from typing import Any

DENOISER_KINDS = ("motion", "unet3d")

# Presets: "tiny" is for tests (a few hundred thousand parameters); "sd15" has
# Stable Diffusion 1.5's U-Net shape, for benchmarks and fine-tuning.
_UNET_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "motion": {
        "tiny": dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
            up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"),
            cross_attention_dim=32,
            num_attention_heads=4,
            motion_num_attention_heads=4,
            motion_max_seq_length=32,
            norm_num_groups=32,
            sample_size=16,
        ),
        "sd15": dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",),
            up_block_types=("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3,
            cross_attention_dim=768,
            num_attention_heads=8,
            motion_num_attention_heads=8,
            motion_max_seq_length=32,
            sample_size=64,
        ),
    },
    "unet3d": {
        "tiny": dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
            sample_size=16,
        ),
        "sd15": dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            cross_attention_dim=1024,
            attention_head_dim=64,
            sample_size=32,
        ),
    },
}

_VAE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=32,
    ),
    "sd15": dict(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
        scaling_factor=0.18215,
    ),
}

_TEXT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77),
    "sd15": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77),
}


def _preset(table: dict[str, dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    from vidgen.errors import InputError

    if name not in table:
        raise InputError(f"unknown {what} preset {name!r}; choose one of {', '.join(sorted(table))}")
    return copy.deepcopy(table[name])


def build_unet(kind: str = "motion", preset: str | None = "tiny", **config: Any):
    """A freshly initialised denoiser.

    Args:
        kind: ``"motion"`` (``UNetMotionModel``) or ``"unet3d"`` (``UNet3DConditionModel``).
        preset: a named starting config (``"tiny"``, ``"sd15"``) or ``None``.
        **config: constructor arguments that override the preset.

    Raises:
        InputError: an unknown kind or preset.
    """
    from vidgen.errors import InputError

    if kind not in DENOISER_KINDS:
        raise InputError(f"unknown denoiser kind {kind!r}; choose one of {', '.join(DENOISER_KINDS)}")
    params = _preset(_UNET_PRESETS[kind], preset, f"{kind} U-Net") if preset else {}
    params.update(config)
    if kind == "motion":
        from diffusers import UNetMotionModel

        return UNetMotionModel(**params)
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(**params)


def build_vae(preset: str | None = "tiny", **config: Any):
    """A freshly initialised ``AutoencoderKL`` (per-frame image VAE)."""
    from diffusers import AutoencoderKL

    params = _preset(_VAE_PRESETS, preset, "VAE") if preset else {}
    params.update(config)
    return AutoencoderKL(**params)


def build_text_encoder(preset: str | None = "tiny", **config: Any):
    """A freshly initialised ``CLIPTextModel`` over CLIP's 49408-token vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidgen.models.tokenizer import EOT_ID, SOT_ID, VOCAB_SIZE

    params = _preset(_TEXT_PRESETS, preset, "text encoder") if preset else {}
    params = {"vocab_size": VOCAB_SIZE, "bos_token_id": SOT_ID, "eos_token_id": EOT_ID, "pad_token_id": EOT_ID, **params}
    params.update(config)
    return CLIPTextModel(CLIPTextConfig(**params))


def build_scheduler(prediction_type: str = "epsilon", **config: Any):
    """Stable Diffusion's training noise schedule as a ``DDIMScheduler`` (scaled-linear betas)."""
    from diffusers import DDIMScheduler

    params = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="linspace",
        prediction_type=prediction_type,
    )
    params.update(config)
    return DDIMScheduler(**params)


def is_motion_unet(unet) -> bool:
    """Whether ``unet`` is a ``UNetMotionModel`` (text states must be repeated per frame)."""
    from diffusers import UNetMotionModel

    return isinstance(unet, UNetMotionModel)


def max_frames(unet) -> int | None:
    """The most frames the denoiser's temporal position embeddings allow (``None``: no limit)."""
    if is_motion_unet(unet):
        return int(unet.config.motion_max_seq_length)
    return None


def build_components(kind: str = "motion", preset: str = "tiny", seed: int | None = 0, **unet_config: Any) -> dict[str, Any]:
    """All five pipeline components, freshly initialised from one preset.

    Args:
        kind: the denoiser kind.
        preset: ``"tiny"`` or ``"sd15"``.
        seed: seeds the random initialisation (``None`` leaves the RNG alone).
        **unet_config: overrides for the denoiser's config.

    Returns:
        ``{"vae", "text_encoder", "tokenizer", "unet", "scheduler"}``.
    """
    import torch

    from vidgen.models.tokenizer import hf_clip_tokenizer

    if seed is not None:
        torch.manual_seed(seed)
    text_encoder = build_text_encoder(preset)
    unet_config.setdefault("cross_attention_dim", text_encoder.config.hidden_size)
    return {
        "vae": build_vae(preset),
        "text_encoder": text_encoder,
        "tokenizer": hf_clip_tokenizer(text_encoder.config.max_position_embeddings),
        "unet": build_unet(kind, preset, **unet_config),
        "scheduler": build_scheduler(),
    }
