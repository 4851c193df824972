"""Setting up the models for training: which denoiser, which weights train.

The VAE and text encoder are always frozen. The denoiser is either built fresh
from a config, taken from a model folder, inflated from a Stable Diffusion
2-D U-Net into a ``UNetMotionModel`` (spatial weights reused, temporal layers new),
which is how InternVid's text-to-video baseline starts (arXiv 2307.06942, Sec. 5.3),
or assembled from a Stable Diffusion base and an existing AnimateDiff motion adapter,
whose motion modules then continue training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidgen.errors import ConfigError, ModelLoadError, first_line
from vidgen.models.t2v import build_unet
from vidgen.pipelines.weights import component_variant
from vidgen.training.config import ModelConfig

# Parameter-name markers of the temporal layers in each denoiser family.
_TEMPORAL_MARKERS = {
    "UNetMotionModel": ("motion_modules",),
    "UNet3DConditionModel": ("temp_convs", "temp_attentions", "transformer_in"),
}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@dataclass
class TrainingModels:
    """The parts a training run holds."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any  # DDPMScheduler with the training prediction type
    sampling_scheduler: Any  # the base folder's scheduler, for validation and export


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ModelLoadError(f"{what} folder not found: {str(path)!r}")
    return path


def _from_pretrained(cls, path: Path, what: str, **kwargs):
    from vidgen.runtime import quiet_libraries

    try:
        with quiet_libraries():
            return cls.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        reason = first_line(exc)
        raise ModelLoadError(f"cannot load {what} from {str(path)!r}: {reason}") from None


def _unet_class_name(path: Path) -> str:
    import json

    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"U-Net folder {str(path)!r} has no config.json")
    try:
        return json.loads(config.read_text())["_class_name"]
    except (ValueError, KeyError):
        raise ModelLoadError(f"U-Net config {str(config)!r} is malformed (no _class_name)") from None


def inflate_unet2d(unet2d) -> Any:
    """A ``UNetMotionModel`` holding a 2-D U-Net's weights plus new temporal layers.

    The temporal layers' output projections start at zero, so each one is an
    identity (residual) at first and the inflated model reproduces the image
    model frame by frame until training moves them.
    """
    from diffusers import UNetMotionModel

    unet = UNetMotionModel.from_unet2d(unet2d)
    for name, module in unet.named_modules():
        if name.endswith("proj_out") and "motion_modules" in name:
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    return unet


def load_denoiser(cfg: ModelConfig, cross_attention_dim: int, unet2d=None):
    """The denoiser named by ``cfg`` (fresh, from the base folder, inflated, or base + motion adapter).

    Args:
        unet2d: the base's 2-D U-Net when it is already loaded (a single-file base).

    Raises:
        ModelLoadError: a missing or unreadable U-Net folder.
        ConfigError: a U-Net class that does not fit the chosen source.
    """
    from diffusers import UNet2DConditionModel, UNet3DConditionModel, UNetMotionModel

    if cfg.denoiser == "fresh":
        overrides = dict(cfg.unet)
        overrides.setdefault("cross_attention_dim", cross_attention_dim)
        try:
            return build_unet(cfg.kind, cfg.preset, **overrides)
        except TypeError as exc:
            raise ConfigError(f"model.unet has an argument the {cfg.kind} U-Net does not take: {exc}") from None
    if unet2d is None:
        path = _need_dir(Path(cfg.unet_path) if cfg.unet_path else Path(cfg.base) / "unet", "U-Net")
        class_name = _unet_class_name(path)
    else:
        path, class_name = Path(cfg.base), type(unet2d).__name__
    if cfg.denoiser in ("inflate", "adapter"):
        if class_name != "UNet2DConditionModel":
            raise ConfigError(f"model.denoiser={cfg.denoiser} needs a 2-D UNet2DConditionModel, but {str(path)!r} holds {class_name}")
        if unet2d is None:
            unet2d = _from_pretrained(UNet2DConditionModel, path, "2-D U-Net", use_safetensors=True,
                                      **component_variant(path, cfg.variant))
        if cfg.denoiser == "inflate":
            return inflate_unet2d(unet2d)
        from vidgen.pipelines.weights import motion_unet, open_motion_adapter

        adapter = open_motion_adapter(cfg.motion_adapter, variant=cfg.variant)
        return motion_unet(unet2d, adapter, source=f"model.motion_adapter {cfg.motion_adapter!r}")
    classes = {"UNetMotionModel": UNetMotionModel, "UNet3DConditionModel": UNet3DConditionModel}
    if class_name not in classes:
        raise ConfigError(
            f"model.denoiser=base needs a UNetMotionModel or UNet3DConditionModel, but {str(path)!r} holds {class_name}"
            + (" (use model.denoiser=inflate for a 2-D U-Net)" if class_name == "UNet2DConditionModel" else "")
        )
    return _from_pretrained(classes[class_name], path, "U-Net", use_safetensors=True, **component_variant(path, cfg.variant))


def load_training_models(cfg: ModelConfig) -> TrainingModels:
    """Load the frozen VAE and text encoder, the tokenizer, the schedulers and the denoiser.

    Raises:
        ModelLoadError: the base folder or one of its parts is missing or unreadable.
        ConfigError: an inconsistent model section.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from vidgen.pipelines.schedulers import shifted_betas
    from vidgen.runtime import silence_library_progress

    silence_library_progress()
    unet2d = None
    if Path(cfg.base).is_file():  # a single-file Stable Diffusion checkpoint
        if cfg.denoiser not in ("inflate", "adapter"):
            raise ConfigError(f"model.base {cfg.base!r} is a single file, which model.denoiser=inflate|adapter take; "
                              f"denoiser={cfg.denoiser} needs a folder")
        from vidgen.pipelines.weights import open_base

        if cfg.variant is not None:
            raise ConfigError(f"model.variant names files of a base folder; {cfg.base!r} is a single file")
        parts = open_base(cfg.base, config=cfg.base_config)
        vae, text_encoder, tokenizer, unet2d = parts["vae"], parts["text_encoder"], parts["tokenizer"], parts["unet"]
        scheduler_config = parts["scheduler"].config
    else:
        base = _need_dir(Path(cfg.base), "model.base")
        for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
            _need_dir(base / part, f"model.base {part}/")
        from vidgen.pipelines.weights import WEIGHTED, refuse_pickle_only

        present = [p for p in WEIGHTED if (base / p).is_dir()]
        refuse_pickle_only(base, present)
        if cfg.variant is not None:  # a misspelt variant is an error, not a silent fall-back to plain files
            from vidgen.pipelines.weights import resolve_variant

            resolve_variant(base, present, cfg.variant)
        vae = _from_pretrained(AutoencoderKL, base / "vae", "VAE", use_safetensors=True, **component_variant(base / "vae", cfg.variant))
        text_encoder = _from_pretrained(CLIPTextModel, base / "text_encoder", "text encoder", use_safetensors=True,
                                        **component_variant(base / "text_encoder", cfg.variant))
        tokenizer = _from_pretrained(CLIPTokenizer, base / "tokenizer", "tokenizer")
        scheduler_config = _from_pretrained(DDIMScheduler, base / "scheduler", "scheduler").config
    extra = {} if cfg.zero_terminal_snr is None else {"rescale_betas_zero_snr": cfg.zero_terminal_snr}
    if cfg.snr_shift is not None:  # from the plain schedule, whatever shift the base folder had; 1 removes it
        shifted = cfg.snr_shift != 1
        extra["trained_betas"] = shifted_betas(scheduler_config, cfg.snr_shift) if shifted else None
        # A shifted schedule's first step keeps visible noise (alpha-bar 0.99 at shift 3): let DDIM's last
        # step land on the clean prediction instead.
        extra["set_alpha_to_one"] = shifted
    noise_scheduler = DDPMScheduler.from_config(scheduler_config, prediction_type=cfg.prediction_type, **extra)
    sampling_scheduler = DDIMScheduler.from_config(scheduler_config, prediction_type=cfg.prediction_type, **extra)
    unet = load_denoiser(cfg, text_encoder.config.hidden_size, unet2d=unet2d)
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    return TrainingModels(unet, vae, text_encoder, tokenizer, noise_scheduler, sampling_scheduler)


def temporal_parameter_names(unet) -> list[str]:
    """Names of the denoiser's temporal-layer parameters."""
    markers = _TEMPORAL_MARKERS.get(type(unet).__name__)
    if markers is None:
        raise ConfigError(f"no temporal layers known for {type(unet).__name__}")
    return [n for n, _ in unet.named_parameters() if any(m in n for m in markers)]


def select_trainable(unet, cfg: ModelConfig) -> list[torch.nn.Parameter]:
    """Freeze what should not train and return the parameters that do.

    ``all`` trains every denoiser weight; ``temporal`` only the temporal layers
    (spatial weights stay bit-identical); ``lora`` adds LoRA adapters (Hu et al.
    2021) to the attention projections and trains only those.

    Raises:
        ConfigError: LoRA on a denoiser without adapter support.
    """
    if cfg.trainable == "all":
        unet.requires_grad_(True)
    elif cfg.trainable == "temporal":
        names = set(temporal_parameter_names(unet))
        for name, param in unet.named_parameters():
            param.requires_grad_(name in names)
    else:
        if not hasattr(unet, "add_adapter"):
            raise ConfigError(f"model.trainable=lora: {type(unet).__name__} does not support LoRA adapters in diffusers; use all or temporal")
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or cfg.lora_rank,
                                    init_lora_weights="gaussian", target_modules=lora_targets(unet, cfg.lora_layers)))
    params = [p for p in unet.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"model.trainable={cfg.trainable} leaves no trainable parameter in {type(unet).__name__}")
    return params


def lora_targets(unet, layers: str = "all") -> list[str] | str:
    """peft ``target_modules`` for LoRA on the attention projections of ``layers``: ``all``, ``spatial`` (the
    image model's: style, subject) or ``motion`` (the temporal layers: camera moves, motion, as AnimateDiff's
    motion LoRAs)."""
    if layers == "all":
        return list(LORA_TARGETS)
    markers = "|".join(_TEMPORAL_MARKERS.get(type(unet).__name__, ("motion_modules",)))
    projections = r"\.(to_q|to_k|to_v|to_out\.0)"
    if layers == "motion":
        return rf".*({markers}).*{projections}"
    return rf"^(?!.*({markers})).*{projections}"


def enable_gradient_checkpointing(unet) -> None:
    """Turn on activation checkpointing, or say clearly why this denoiser cannot.

    Raises:
        ConfigError: the denoiser class does not support it (diffusers'
            ``UNet3DConditionModel`` refuses).
    """
    if not getattr(unet, "_supports_gradient_checkpointing", False):
        raise ConfigError(
            f"model.gradient_checkpointing: diffusers' {type(unet).__name__} does not support gradient checkpointing; "
            "set it to false or use a UNetMotionModel (model.kind=motion)"
        )
    unet.enable_gradient_checkpointing()
