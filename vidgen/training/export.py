"""``vidgen export``: a training checkpoint -> files vidgen, diffusers, AnimateDiff and ComfyUI users open.

Formats:

* ``folder``: a whole model folder. ``vidgen sample --model`` opens it, and so does plain diffusers
  (``DiffusionPipeline.from_pretrained``: its ``model_index.json`` names ``AnimateDiffPipeline`` or
  ``TextToVideoSDPipeline``), every component in one dtype;
* ``motion-adapter``: the trained motion modules as a diffusers ``MotionAdapter`` folder, to pair with any
  Stable Diffusion 1.5 base (``AnimateDiffPipeline.from_pretrained(SD, motion_adapter=...)``);
* ``single-file``: the same motion modules in AnimateDiff's original key layout, one ``.safetensors`` as the
  original ``mm_sd_v15_v2`` files (ComfyUI's AnimateDiff nodes, A1111's extension, ``MotionAdapter.from_single_file``);
* ``lora``: a LoRA run's adapters as diffusers' ``pytorch_lora_weights.safetensors`` (``load_lora_weights``).
"""

from __future__ import annotations

import os
from pathlib import Path

from vidgen.errors import InputError, ModelLoadError, OutputError
from vidgen.io.files import atomic_folder, atomic_output, remove_temporaries
from vidgen.training.checkpoint import load_weights_into, find_checkpoint, load_lora

EXPORT_FORMATS = ("folder", "motion-adapter", "single-file", "lora")
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers' load_lora_weights looks for


def is_model_folder(path: Path) -> bool:
    """A diffusers pipeline folder (what export and ``write_base_folder`` write)."""
    return (path / "model_index.json").is_file()


def _is_adapter_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "config.json").read_text(encoding="utf-8").find("MotionAdapter") >= 0


def _is_lora_folder(path: Path) -> bool:
    return (path / LORA_WEIGHTS_FILE).is_file()


def export_model(
    run: str | os.PathLike,
    out: str | os.PathLike,
    checkpoint: str = "latest",
    use_ema: bool = True,
    overwrite: bool = False,
    format: str = "folder",
    dtype: str = "fp32",
) -> Path:
    """Write a run's checkpoint in one of :data:`EXPORT_FORMATS` (see the module's text).

    The denoiser comes from the checkpoint (its EMA weights by default); for ``folder``, the VAE,
    text encoder, tokenizer and scheduler come from the run's ``model.base``, and the
    validation's sampling settings become the folder's ``sample_defaults.yaml``, so
    ``vidgen sample --model OUT`` samples the way training validated. A LoRA run's
    ``folder`` has the adapters fused into the weights; its ``lora`` export keeps them apart.

    Args:
        run: the run folder (or a checkpoint folder, with ``checkpoint="latest"``).
        out: the folder to write (``single-file``: a ``.safetensors`` file).
        checkpoint: ``"latest"`` or a checkpoint path.
        use_ema: export the EMA weights when the checkpoint has them.
        overwrite: replace an existing ``out``.
        format: one of :data:`EXPORT_FORMATS`.
        dtype: ``fp32`` (opens anywhere without a dtype argument), ``fp16`` or ``bf16``, for every tensor written.

    Returns:
        The written folder or file.

    Raises:
        InputError: an unknown format or dtype, or a format the run cannot give (no motion modules, no LoRA).
        ModelLoadError: no usable checkpoint.
        OutputError: ``out`` exists without ``overwrite``.
    """
    from vidgen.config import load_config
    from vidgen.pipelines.settings import write_model_defaults
    from vidgen.pipelines.text_to_video import TextToVideoPipeline
    from vidgen.training.config import TrainConfig
    from vidgen.runtime import resolve_dtype
    from vidgen.training.models import load_training_models, select_trainable

    if format not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    torch_dtype = resolve_dtype(dtype)
    run = Path(run)
    out = Path(out)
    if format == "single-file" and out.suffix != ".safetensors":
        raise InputError(f"--format single-file writes one .safetensors file; --out {str(out)!r} does not end in .safetensors")
    if (run / "trainer_state.json").is_file() and checkpoint == "latest":
        ckpt = run
    else:
        ckpt = find_checkpoint(run, checkpoint)
    run_root = ckpt.parent if ckpt.parent.joinpath("config.yaml").is_file() else ckpt
    resolved = out.resolve()
    for inside in (run_root.resolve(), ckpt.resolve()):
        if resolved == inside or inside in resolved.parents or resolved in inside.parents:
            raise OutputError(f"--out {str(out)!r} overlaps the run folder {str(inside)!r}; export to a separate folder")
    # What a killed export left beside ``out`` goes first (a previous version set aside goes back under its name).
    remove_temporaries(out.parent, {out.name})
    if out.exists() and not overwrite:  # checked early, before any model is loaded
        raise OutputError(f"output {str(out)!r} exists (pass --overwrite to replace it)")
    if not (ckpt / "config.yaml").is_file():
        raise ModelLoadError(f"checkpoint {str(ckpt)!r} has no config.yaml")
    cfg = load_config(TrainConfig, files=[ckpt / "config.yaml"])
    lora = cfg.model.trainable == "lora"
    if format == "lora" and not lora:
        raise InputError(f"--format lora needs a run trained with model.trainable=lora; {str(run)!r} trained "
                         f"{cfg.model.trainable} weights (export them as folder, motion-adapter or single-file)")
    if lora:
        from vidgen.extras import require

        require("peft", "exporting a LoRA run", "train")
    from accelerate.utils import set_seed

    set_seed(cfg.train.seed)  # fresh/inflated denoisers and LoRA adapters initialise as they did in training
    models = load_training_models(cfg.model)
    unet = models.unet
    if format in ("motion-adapter", "single-file") and type(unet).__name__ != "UNetMotionModel":
        raise InputError(f"--format {format} writes AnimateDiff motion modules; this run's denoiser is a "
                         f"{type(unet).__name__} (export it as a folder)")
    ema_part = "unet_ema_lora" if lora else "unet_ema"
    part = ema_part if use_ema and (ckpt / ema_part).is_dir() else ("unet_lora" if lora else "unet")
    if lora:
        select_trainable(unet, cfg.model)
        load_lora(unet, ckpt / part)
        if format == "lora":
            return _write_lora(unet, out, overwrite, torch_dtype)
        unet.fuse_lora()
        unet.unload_lora()
    else:
        load_weights_into(unet, ckpt / part)
    unet.to(dtype=torch_dtype)
    if format == "motion-adapter":
        adapter = motion_adapter_of(unet).to(dtype=torch_dtype)
        with atomic_folder(out, overwrite=overwrite, replaceable=_is_adapter_folder) as tmp:
            adapter.save_pretrained(str(tmp), safe_serialization=True)
        return out
    if format == "single-file":
        return _write_original_motion_modules(unet, out, overwrite)
    pipe = TextToVideoPipeline(vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer,
                               unet=unet, scheduler=models.sampling_scheduler)
    pipe.to(dtype=torch_dtype)
    with atomic_folder(out, overwrite=overwrite, replaceable=is_model_folder) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        # A model trained with context frames continues stories from the previous clip's frames as it learnt them: clean.
        write_model_defaults(tmp, cfg.validation.sampling, {"pin": "clean"} if cfg.train.context_prob > 0 else None)
    return out


def motion_state(unet) -> dict:
    """The motion modules' tensors of a ``UNetMotionModel``, by their diffusers names."""
    return {k: v for k, v in unet.state_dict().items() if ".motion_modules." in k}


def motion_adapter_of(unet):
    """The motion modules of a ``UNetMotionModel`` as a ``MotionAdapter`` with the U-Net's whole motion config.

    Raises:
        ModelLoadError: the modules do not fit the adapter built from that config.
    """
    from diffusers import MotionAdapter

    from vidgen.errors import first_line

    cfg = unet.config
    adapter = MotionAdapter(
        block_out_channels=tuple(cfg.block_out_channels), motion_layers_per_block=cfg.layers_per_block,
        motion_transformer_layers_per_block=cfg.temporal_transformer_layers_per_block,
        motion_mid_block_layers_per_block=cfg.mid_block_layers,
        motion_transformer_layers_per_mid_block=cfg.temporal_transformer_layers_per_mid_block,
        motion_num_attention_heads=cfg.motion_num_attention_heads, motion_norm_num_groups=cfg.norm_num_groups,
        motion_max_seq_length=cfg.motion_max_seq_length, use_motion_mid_block=cfg.use_motion_mid_block,
    )
    state = motion_state(unet)
    try:
        adapter.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"the run's motion modules do not fit a MotionAdapter: {first_line(exc)}") from None
    return adapter


def _write_original_motion_modules(unet, out: Path, overwrite: bool) -> Path:
    from safetensors.torch import save_file

    from vidgen.models.weight_files import ANIMATEDIFF_HEADS, motion_modules_to_original

    cfg = unet.config
    heads = cfg.motion_num_attention_heads
    if heads != ANIMATEDIFF_HEADS or cfg.norm_num_groups != 32:
        raise InputError(f"--format single-file: AnimateDiff's original layout cannot say how many attention heads "
                         f"and norm groups the motion modules have, and every tool reads it as {ANIMATEDIFF_HEADS} heads "
                         f"and 32 groups; this run's have {heads} and {cfg.norm_num_groups} (export --format "
                         "motion-adapter, whose config says so)")

    state = {k: v.detach().contiguous().cpu() for k, v in motion_modules_to_original(motion_state(unet)).items()}
    with atomic_output(out, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "written_by": "vidgen export --format single-file"})
    return out


def _write_lora(unet, out: Path, overwrite: bool, torch_dtype) -> Path:
    from peft.utils import get_peft_model_state_dict

    from vidgen.pipelines.text_to_video import TextToVideoPipeline

    # Files in diffusers' LoRA layout carry no alpha: loaders take alpha = rank, so lora_B holds alpha / rank.
    scaling = unet.peft_config["default"].lora_alpha / unet.peft_config["default"].r
    layers = {k: (v * scaling if ".lora_B." in k else v).detach().to(torch_dtype).contiguous().cpu()
              for k, v in get_peft_model_state_dict(unet).items()}
    with atomic_folder(out, overwrite=overwrite, replaceable=_is_lora_folder) as tmp:
        TextToVideoPipeline.save_lora_weights(str(tmp), unet_lora_layers=layers, safe_serialization=True)
    return out
