"""Assembling model folders from separately trained parts.

A text-to-video model needs a VAE, a text encoder with its tokenizer, and a
noise schedule before its denoiser can train. Where no pretrained ones exist they can come
from ``vidgen train vae`` and ``vidgen train viclip`` (whose text tower becomes
the frozen text encoder, as CLIP's does for Stable Diffusion). The
``base`` folder this writes is what a training config's ``model.base`` and
``vidgen data cache --model`` take.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidgen.errors import ModelLoadError, OutputError
from vidgen.io.files import atomic_folder


def write_base_folder(
    vae: str | os.PathLike,
    viclip: str | os.PathLike,
    out: str | os.PathLike,
    *,
    prediction_type: str = "v_prediction",
    timestep_spacing: str = "trailing",
    overwrite: bool = False,
) -> Path:
    """Write ``out/{vae,text_encoder,tokenizer,scheduler}`` from a trained VAE and ViCLIP.

    Args:
        vae: an ``AutoencoderKL`` folder.
        viclip: a ViCLIP checkpoint (its text tower becomes the text encoder).
        out: the folder to write.
        prediction_type: the denoiser's target, recorded in the scheduler config.
        timestep_spacing: sampling timestep spacing; ``trailing`` starts sampling
            from pure noise (Lin et al. 2024, "Common diffusion noise schedules
            and sample steps are flawed").
        overwrite: replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        ModelLoadError: a part cannot be loaded.
        OutputError: ``out`` exists without ``overwrite``.
    """
    from diffusers import AutoencoderKL

    from vidgen.models.t2v import build_scheduler
    from vidgen.models.tokenizer import hf_clip_tokenizer
    from vidgen.models.viclip_io import load_viclip, viclip_text_to_clip_text_model
    from vidgen.runtime import quiet_libraries

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"output folder {str(out)!r} exists (pass --overwrite to replace it)")
    try:
        with quiet_libraries():
            vae_model = AutoencoderKL.from_pretrained(str(vae), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load VAE from {str(vae)!r}: {str(exc).splitlines()[0]}") from None
    viclip_model = load_viclip(viclip)
    text_encoder = viclip_text_to_clip_text_model(viclip_model)
    # ViCLIP pads with token 0 ("!"); the text encoder must see the same padding it was trained with.
    tokenizer = hf_clip_tokenizer(viclip_model.config.context_length, pad_token="!", vocabulary=viclip_model.vocabulary)
    scheduler = build_scheduler(prediction_type=prediction_type, timestep_spacing=timestep_spacing)
    def replaceable(path: Path) -> bool:  # a base or model folder, never an unrelated one
        return (path / "model_index.json").is_file() or (path / "vae" / "config.json").is_file()

    with atomic_folder(out, overwrite=overwrite, replaceable=replaceable) as tmp:
        vae_model.save_pretrained(str(tmp / "vae"), safe_serialization=True)
        text_encoder.save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        scheduler.save_pretrained(str(tmp / "scheduler"))
    return out
