"""``vidgen export``: a training checkpoint -> a sampling-ready model folder."""

from __future__ import annotations

import os
from pathlib import Path

from vidgen.errors import ModelLoadError, OutputError
from vidgen.io.files import atomic_folder
from vidgen.training.checkpoint import load_weights_into, find_checkpoint, load_lora


def is_model_folder(path: Path) -> bool:
    """A diffusers pipeline folder (what export and ``write_base_folder`` write)."""
    return (path / "model_index.json").is_file()


def export_model(
    run: str | os.PathLike,
    out: str | os.PathLike,
    checkpoint: str = "latest",
    use_ema: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a model folder (``model_index.json``, ``unet/``, ``vae/``...) from a run's checkpoint.

    The denoiser comes from the checkpoint (its EMA weights by default); the VAE,
    text encoder, tokenizer and scheduler from the run's ``model.base``. The
    validation's sampling settings become the folder's ``sample_defaults.yaml``, so
    ``vidgen sample --model OUT`` samples the way training validated. LoRA runs
    are exported with the adapters fused into the weights.

    Args:
        run: the run folder (or a checkpoint folder, with ``checkpoint="latest"``).
        out: the model folder to write.
        checkpoint: ``"latest"`` or a checkpoint path.
        use_ema: export the EMA weights when the checkpoint has them.
        overwrite: replace an existing ``out``.

    Returns:
        The written folder.

    Raises:
        ModelLoadError: no usable checkpoint.
        OutputError: ``out`` exists without ``overwrite``.
    """
    from vidgen.config import load_config
    from vidgen.pipelines.settings import write_model_defaults
    from vidgen.pipelines.text_to_video import TextToVideoPipeline
    from vidgen.training.config import TrainConfig
    from vidgen.training.models import load_training_models, select_trainable

    run = Path(run)
    out = Path(out)
    if (run / "trainer_state.json").is_file() and checkpoint == "latest":
        ckpt = run
    else:
        ckpt = find_checkpoint(run, checkpoint)
    run_root = ckpt.parent if ckpt.parent.joinpath("config.yaml").is_file() else ckpt
    resolved = out.resolve()
    for inside in (run_root.resolve(), ckpt.resolve()):
        if resolved == inside or inside in resolved.parents or resolved in inside.parents:
            raise OutputError(f"--out {str(out)!r} overlaps the run folder {str(inside)!r}; export to a separate folder")
    if out.exists() and not overwrite:  # checked early, before any model is loaded
        raise OutputError(f"output folder {str(out)!r} exists (pass --overwrite to replace it)")
    if not (ckpt / "config.yaml").is_file():
        raise ModelLoadError(f"checkpoint {str(ckpt)!r} has no config.yaml")
    cfg = load_config(TrainConfig, files=[ckpt / "config.yaml"])
    if cfg.model.trainable == "lora":
        from vidgen.extras import require

        require("peft", "exporting a LoRA run", "train")
    from accelerate.utils import set_seed

    set_seed(cfg.train.seed)  # fresh/inflated denoisers and LoRA adapters initialise as they did in training
    models = load_training_models(cfg.model)
    unet = models.unet
    lora = cfg.model.trainable == "lora"
    ema_part = "unet_ema_lora" if lora else "unet_ema"
    part = ema_part if use_ema and (ckpt / ema_part).is_dir() else ("unet_lora" if lora else "unet")
    if lora:
        select_trainable(unet, cfg.model)
        load_lora(unet, ckpt / part)
        unet.fuse_lora()
        unet.unload_lora()
    else:
        load_weights_into(unet, ckpt / part)
    pipe = TextToVideoPipeline(vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer,
                               unet=unet, scheduler=models.sampling_scheduler)
    with atomic_folder(out, overwrite=overwrite, replaceable=is_model_folder) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        # A model trained with context frames continues stories from the previous clip's frames as it learnt them: clean.
        write_model_defaults(tmp, cfg.validation.sampling, {"pin": "clean"} if cfg.train.context_prob > 0 else None)
    return out
