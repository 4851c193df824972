"""Opening a model folder with checks that turn every failure into one clear message."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from vidgen.assets import shipped_model_dir
from vidgen.errors import InputError, ModelLoadError, first_line

if TYPE_CHECKING:
    from vidgen.pipelines.weights import WeightsSettings

REQUIRED_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
DENOISER_CLASSES = ("UNetMotionModel", "UNet3DConditionModel")
WEIGHTED_COMPONENTS = ("vae", "text_encoder", "unet")

# Where the shipped default model lives: the checkout's top-level checkpoints/, or the copy an install carries.
DEFAULT_MODEL_DIR = shipped_model_dir()


def default_model_dir() -> Path:
    """The shipped default model folder: the checkout's ``checkpoints/``, or the copy an install carries.

    Raises:
        ModelLoadError: no model is shipped there.
    """
    if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        raise ModelLoadError(f"no --model given and no default model found at {str(DEFAULT_MODEL_DIR)!r} "
                             "(no model_index.json there); pass --model DIR")
    return DEFAULT_MODEL_DIR


def check_model_folder(path: str | os.PathLike) -> dict:
    """Check that ``path`` is a complete vidgen/diffusers model folder.

    Returns:
        The parsed ``model_index.json``.

    Raises:
        ModelLoadError: naming what is missing or malformed.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model folder not found: {str(path)!r}")
    if not path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} is a file; expected a folder with model_index.json")
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise ModelLoadError(f"{str(path)!r} is not a model folder: model_index.json is missing")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"malformed {str(index_path)!r}: {exc}") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"malformed {str(index_path)!r}: expected a JSON object")
    for name in REQUIRED_COMPONENTS:
        if name not in index:
            raise ModelLoadError(f"model folder {str(path)!r}: model_index.json lists no {name!r} component")
        if not (path / name).is_dir():
            raise ModelLoadError(f"model folder {str(path)!r} is missing its {name}/ subfolder")
    unet_class = index["unet"][1] if isinstance(index["unet"], list) and len(index["unet"]) == 2 else None
    if unet_class not in DENOISER_CLASSES:
        raise ModelLoadError(
            f"model folder {str(path)!r}: denoiser class {unet_class!r} is not supported "
            f"(expected one of {', '.join(DENOISER_CLASSES)})"
        )
    from vidgen.pipelines.weights import refuse_pickle_only

    refuse_pickle_only(path, WEIGHTED_COMPONENTS)
    return index


def load_pipeline(
    path: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    dtype: str = "fp32",
    scheduler: str | None = None,
    attention: str = "auto",
    progress: bool = False,
    weights: "WeightsSettings | None" = None,
    compile: bool = False,
):
    """Open a model as a :class:`~vidgen.pipelines.TextToVideoPipeline`, ready to sample.

    Args:
        path: the model folder; ``None`` for the shipped default model (or for ``weights.base``).
        weights: a Stable Diffusion base with a motion adapter instead of a model folder,
            the weight variant, and LoRAs to apply (:mod:`vidgen.pipelines.weights`).
        compile: compile the denoiser with ``torch.compile`` (the first videos of each shape pay for
            the compilation; it does not combine with feature caching).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"`` for the weights.
        scheduler: a short scheduler name to use instead of the folder's own.
        attention: attention backend (see ``TextToVideoPipeline.set_attention_backend``).
        progress: show the libraries' loading progress bars.

    Raises:
        ModelLoadError: the folder is missing, incomplete or unreadable.
        InputError: a bad device, dtype, scheduler or attention name.
    """
    from vidgen.pipelines.schedulers import make_scheduler
    from vidgen.runtime import quiet_libraries, resolve_device, resolve_dtype
    from vidgen.pipelines.text_to_video import TextToVideoPipeline

    from vidgen.pipelines.weights import WeightsSettings, apply_loras, open_assembled, resolve_variant

    weights = weights or WeightsSettings()
    if weights.assembled and path is not None:
        raise InputError("give either a model folder (--model) or --base with --motion-adapter, not both")
    weights.check_files()
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if not progress:
        from vidgen.runtime import silence_library_progress

        silence_library_progress()
    if weights.assembled:
        pipe = TextToVideoPipeline(**open_assembled(weights, torch_dtype=torch_dtype))
    else:
        path = default_model_dir() if path is None else Path(path)
        check_model_folder(path)
        variant = resolve_variant(path, WEIGHTED_COMPONENTS, weights.variant)
        try:
            with quiet_libraries():
                pipe = TextToVideoPipeline.from_pretrained(str(path), torch_dtype=torch_dtype, use_safetensors=True,
                                                           variant=variant)
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError, TypeError) as exc:
            reason = first_line(exc)
            raise ModelLoadError(f"cannot load model folder {str(path)!r}: {reason}") from None
    if scheduler:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    apply_loras(pipe, weights.lora)
    pipe.to(device)
    from vidgen.pipelines.prompts import ModelVocabulary, PromptWarnings

    if weights.assembled:
        pipe.prompt_warnings = PromptWarnings(None, model=weights.describe())
    else:
        name = "the shipped model" if path.resolve() == DEFAULT_MODEL_DIR.resolve() else f"the model in {path}"
        pipe.prompt_warnings = PromptWarnings(ModelVocabulary.load(path), model=name)
    pipe.set_attention_backend(attention)
    if compile:
        pipe.unet.compile()
    pipe.set_progress_bar_config(disable=True)
    return pipe
