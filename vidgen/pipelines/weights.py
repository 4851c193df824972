"""Opening the weights users hold: Stable Diffusion bases, AnimateDiff motion adapters, variants, LoRAs.

A video model is either a complete model folder (``--model DIR``) or assembled from parts
the community publishes (``--base SD --motion-adapter MA``):

* ``SD``: a diffusers Stable Diffusion folder (``UNet2DConditionModel`` in ``unet/``) or a
  single-file checkpoint (``.safetensors``, or a pickle read with ``weights_only=True``) in
  the original (LDM) key layout, converted by diffusers' single-file loaders from local
  configs only (``base_config``; Stable Diffusion 1.5's are shipped);
* ``MA``: a diffusers ``MotionAdapter`` folder or an original AnimateDiff motion-module file.

The denoiser is assembled as diffusers does it (``UNetMotionModel.from_unet2d``), so frames
equal ``AnimateDiffPipeline``'s on the same files. LoRAs (``PATH[:SCALE]``, any format
diffusers' ``load_lora_weights`` reads) apply on top of either kind of model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from vidgen.errors import ConfigError, InputError, ModelLoadError, first_line
from vidgen.models.weight_files import PICKLE_SUFFIXES, WEIGHT_SUFFIXES, folder_variants, read_weights, weight_keys
from vidgen.runtime import quiet_libraries

BASE_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
WEIGHTED = ("vae", "text_encoder", "unet")
# diffusers configs of Stable Diffusion 1.5 (no weights), for single-file checkpoints of that shape
SD15_CONFIG_DIR = Path(__file__).resolve().parent.parent / "models" / "assets" / "sd15"
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError, json.JSONDecodeError)


@dataclass
class WeightsSettings:
    """Where a model's weights come from besides a model folder: the ``weights:`` section of job configs."""

    base: Optional[str] = None  # Stable Diffusion folder or single file, with motion_adapter
    motion_adapter: Optional[str] = None  # MotionAdapter folder or original AnimateDiff file
    base_config: Optional[str] = None  # diffusers configs describing a single-file base (default: SD 1.5's)
    variant: Optional[str] = None  # fp16...: weight files to read (default: the one a folder holds)
    lora: list[str] = field(default_factory=list)  # PATH[:SCALE], applied in order

    def __post_init__(self) -> None:
        if (self.base is None) != (self.motion_adapter is None):
            given, missing = ("base", "motion_adapter") if self.base is not None else ("motion_adapter", "base")
            raise ConfigError(f"weights.{given} needs weights.{missing} too (--base SD --motion-adapter MA)")
        if self.base_config is not None and self.base is None:
            raise ConfigError("weights.base_config describes a single-file --base; give --base too")
        if self.variant is not None and (not self.variant or not self.variant.replace("_", "").isalnum()):
            raise ConfigError(f"weights.variant must be a name like fp16, got {self.variant!r}")
        for spec in self.lora:
            parse_lora_spec(spec)

    def check_files(self) -> None:
        """Fail before anything loads when a named file or folder is not there.

        Raises:
            ModelLoadError: naming the missing path.
        """
        named = [("base", self.base), ("motion adapter", self.motion_adapter), ("base config", self.base_config)]
        named += [("LoRA", str(parse_lora_spec(spec)[0])) for spec in self.lora]
        for what, path in named:
            if path is not None and not Path(path).exists():
                raise ModelLoadError(f"{what} not found: {path!r}")

    @property
    def assembled(self) -> bool:
        return self.base is not None

    def describe(self) -> str:
        """Where the weights come from, for messages."""
        text = f"{self.base} + {self.motion_adapter}" if self.assembled else ""
        if self.lora:
            text += (" with LoRA " if text else "LoRA ") + ", ".join(self.lora)
        return text


def parse_lora_spec(spec: str) -> tuple[Path, float]:
    """``PATH`` or ``PATH:SCALE`` -> ``(path, scale)`` (scale 1 by default).

    Raises:
        InputError: an empty path or a scale that is not a finite number.
    """
    import math

    path, scale = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if Path(spec).exists():  # a file whose name holds ':' itself
        sep = ""
    if sep and not tail.startswith(("/", "\\")) and not (len(head) == 1 and head.isalpha()):  # not a drive letter
        try:
            scale = float(tail)
        except ValueError:
            raise InputError(f"--lora {spec!r}: the part after ':' must be a scale, e.g. {head}:0.8") from None
        path = head
        if not math.isfinite(scale):
            raise InputError(f"--lora {spec!r}: the scale must be a finite number")
    if not path.strip():
        raise InputError(f"--lora {spec!r}: no file given")
    return Path(path), scale


def resolve_variant(folder: Path, components: Sequence[str], asked: str | None) -> str | None:
    """The weight variant to read from a model or base folder.

    With ``asked``, that variant (components without it fall back to their plain file);
    otherwise none where every component has a plain file, else the one variant the others hold.

    Raises:
        ModelLoadError: the asked variant is nowhere, or a component holds several and none was asked.
    """
    held = {name: folder_variants(folder / name) for name in components}
    if asked is not None:
        if not any(asked in found for found in held.values()):
            found = sorted({v for vs in held.values() for v in vs if v})
            raise ModelLoadError(f"{str(folder)!r} holds no {asked!r} weight variant"
                                 + (f" (it has: {', '.join(found)})" if found else " (only plain weight files)"))
        missing = [n for n, found in held.items() if asked not in found and None not in found]
        if missing:
            raise ModelLoadError(f"{str(folder)!r}: {', '.join(missing)}/ has neither {asked!r} nor plain weights")
        return asked
    lacking = {n: found for n, found in held.items() if None not in found and found}
    variants = sorted({v for found in lacking.values() for v in found})
    if len(variants) > 1:
        raise ModelLoadError(f"{str(folder)!r} holds several weight variants ({', '.join(variants)}) and no plain "
                             "files; choose one with --variant")
    return variants[0] if variants else None


def _is_weight_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES


def open_base(path: str | os.PathLike, *, variant: str | None = None, config: str | os.PathLike | None = None,
              torch_dtype=None) -> dict[str, Any]:
    """The parts of a Stable Diffusion model: ``{"vae", "text_encoder", "tokenizer", "unet", "scheduler"}``.

    Args:
        path: a diffusers folder with a 2-D ``UNet2DConditionModel`` in ``unet/``, or one
            single-file checkpoint in the original key layout.
        variant: weight variant of a folder (default: the one it holds).
        config: for a single file, a diffusers folder whose configs describe it
            (default: Stable Diffusion 1.5's, shipped with vidgen); nothing is fetched.
        torch_dtype: the dtype to load the weights in (default float32, whatever the files hold).

    Raises:
        ModelLoadError: a missing, incomplete, unreadable or unsafe base.
    """
    import torch

    torch_dtype = torch_dtype or torch.float32
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"base model not found: {str(path)!r}")
    if path.is_file():
        return _open_single_file_base(path, Path(config) if config else SD15_CONFIG_DIR, torch_dtype)
    if config is not None:
        raise InputError(f"--base-config describes single-file bases; {str(path)!r} is a folder with its own configs")
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    for name in BASE_COMPONENTS:
        if not (path / name).is_dir():
            raise ModelLoadError(f"base folder {str(path)!r} is missing its {name}/ subfolder "
                                 "(a Stable Diffusion folder has vae/, text_encoder/, tokenizer/, unet/, scheduler/)")
    refuse_pickle_only(path, WEIGHTED)
    variant = resolve_variant(path, WEIGHTED, variant)
    unet_class = _config_class(path / "unet")
    if unet_class != "UNet2DConditionModel":
        hint = " (it is a video model folder: pass it as --model)" if unet_class in ("UNetMotionModel", "UNet3DConditionModel") else ""
        raise ModelLoadError(f"base {str(path)!r}: unet/ holds {unet_class}, not a Stable Diffusion UNet2DConditionModel{hint}")

    def load(cls, name, **kwargs):
        try:
            with quiet_libraries():
                return cls.from_pretrained(str(path / name), **kwargs)
        except LOAD_ERRORS as exc:
            raise ModelLoadError(f"cannot load {name}/ of base {str(path)!r}: {first_line(exc)}") from None

    return {
        "vae": load(AutoencoderKL, "vae", use_safetensors=True, torch_dtype=torch_dtype,
                    **component_variant(path / "vae", variant)),
        "text_encoder": load(CLIPTextModel, "text_encoder", dtype=torch_dtype,
                             **component_variant(path / "text_encoder", variant)),
        "tokenizer": load(CLIPTokenizer, "tokenizer"),
        "unet": load(UNet2DConditionModel, "unet", use_safetensors=True, torch_dtype=torch_dtype,
                     **component_variant(path / "unet", variant)),
        "scheduler": load(_scheduler_class(path / "scheduler"), "scheduler"),
    }


def _scheduler_class(folder: Path):
    """The scheduler class a folder's config names (as diffusers' pipelines load it), DDIM if it names none."""
    import diffusers

    try:
        name = json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        name = None
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    return cls if isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin) else diffusers.DDIMScheduler


def component_variant(folder: Path, asked: str | None) -> dict:
    """``variant=`` for one component's ``from_pretrained``: ``asked`` where the folder holds it (else its plain
    file), or, with nothing asked, the one variant a folder without plain files holds."""
    if asked is not None:
        variant = asked if asked in folder_variants(folder) else None
    else:
        variant = resolve_variant(folder.parent, [folder.name], None)
    return {"variant": variant} if variant else {}


def _config_class(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        raise ModelLoadError(f"{str(folder)!r} has no readable config.json") from None


def refuse_pickle_only(folder: Path, components: Sequence[str]) -> None:
    """Refuse a component folder whose weights are pickles only (or missing), saying why.

    Raises:
        ModelLoadError: naming the folder, the component and its pickle files.
    """
    for name in components:
        sub = folder / name
        # by the names diffusers and transformers read: another .safetensors file beside pickles is not weights
        if sub.is_dir() and not folder_variants(sub):
            pickles = sorted(p.name for p in sub.iterdir() if p.suffix in PICKLE_SUFFIXES)
            what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no .safetensors weights"
            others = sorted(p.name for p in sub.glob("*.safetensors"))
            if others:  # decoys: diffusers reads diffusion_pytorch_model[.VARIANT].safetensors, transformers model[...]
                what += f" (and {', '.join(others)}, not a weights file name the libraries read)"
            raise ModelLoadError(f"{str(folder)!r}: {name}/ holds {what}; vidgen loads folders' weights from "
                                 "safetensors only, because pickles can run code")


def _open_single_file_base(path: Path, config: Path, torch_dtype) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline

    if not _is_weight_file(path):
        raise ModelLoadError(f"base {str(path)!r} is a file but not a checkpoint (expected {', '.join(WEIGHT_SUFFIXES)})")
    if not (config / "unet" / "config.json").is_file():
        raise ModelLoadError(f"--base-config {str(config)!r} is not a diffusers folder with unet/config.json")
    keys = weight_keys(path)  # refuses pickles with code before diffusers reads the file
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ModelLoadError(f"{str(path)!r} is not a Stable Diffusion checkpoint in the original layout "
                             "(no model.diffusion_model.* keys)")
    missing = [k for k, prefix in (("VAE", "first_stage_model."), ("text encoder", "cond_stage_model."))
               if not any(key.startswith(prefix) for key in keys)]
    if missing:
        raise ModelLoadError(f"{str(path)!r} holds the U-Net only, without its {' and '.join(missing)}; "
                             "use a full checkpoint or a diffusers folder as --base")
    extra = {}
    if not (config / "tokenizer").is_dir():
        from vidgen.models.tokenizer import hf_clip_tokenizer

        extra["tokenizer"] = hf_clip_tokenizer(77)
    try:
        with quiet_libraries():
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=str(config), local_files_only=True, torch_dtype=torch_dtype,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False, **extra)
    except LOAD_ERRORS as exc:
        raise ModelLoadError(f"cannot convert single-file base {str(path)!r} with the configs in {str(config)!r}: "
                             f"{first_line(exc)}") from None
    return {name: getattr(pipe, name) for name in BASE_COMPONENTS}


def open_motion_adapter(path: str | os.PathLike, *, variant: str | None = None, torch_dtype=None):
    """A diffusers ``MotionAdapter`` from its folder or from an original AnimateDiff motion-module file,
    in ``torch_dtype`` (default float32).

    Raises:
        ModelLoadError: a missing, unreadable or unsafe file, or one that holds no motion modules.
    """
    import torch
    from diffusers import MotionAdapter

    from vidgen.models.weight_files import (is_original_motion_modules, motion_adapter_config,
                                            motion_modules_from_original, original_position_length)

    torch_dtype = torch_dtype or torch.float32
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"motion adapter not found: {str(path)!r}")
    if path.is_dir():
        if _config_class(path) != "MotionAdapter":
            raise ModelLoadError(f"{str(path)!r} is not a MotionAdapter folder (its config.json names "
                                 f"{_config_class(path)})")
        if not any(path.glob("*.safetensors")):
            refuse_pickle_only(path.parent, [path.name])
        # --variant names the base's files; an adapter without that variant reads the files it has
        chosen = variant if variant in folder_variants(path) else resolve_variant(path.parent, [path.name], None)
        try:
            with quiet_libraries():
                return MotionAdapter.from_pretrained(str(path), use_safetensors=True, variant=chosen, torch_dtype=torch_dtype)
        except LOAD_ERRORS as exc:
            raise ModelLoadError(f"cannot load motion adapter {str(path)!r}: {first_line(exc)}") from None
    if not _is_weight_file(path):
        raise ModelLoadError(f"motion adapter {str(path)!r} is neither a MotionAdapter folder nor a weight file")
    original = read_weights(path)
    if not is_original_motion_modules(original):
        raise ModelLoadError(f"{str(path)!r} holds no AnimateDiff motion modules (no *.temporal_transformer.* keys)")
    state = motion_modules_from_original(original)
    config = motion_adapter_config(state, source=repr(str(path)))
    length = original_position_length(original)
    if length is not None:
        config["motion_max_seq_length"] = length
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters come from the file; only the position tables are built
        adapter = MotionAdapter(**config)
    _load_exactly(adapter, state, str(path), ignore=("pos_embed.pe",))
    return adapter.to(dtype=torch_dtype)


def _load_exactly(module, state: dict, source: str, ignore: Sequence[str] = ()) -> None:
    """Load ``state`` into ``module``; every key must fit, except buffers named in ``ignore``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(tuple(ignore))]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{label} {len(keys)} key(s), e.g. {keys[0]}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("mismatched", wrong)) if keys]
    if problems:
        raise ModelLoadError(f"{source} does not fit a {type(module).__name__}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=False, assign=True)


def motion_unet(unet2d, adapter, source: str = "the motion adapter"):
    """A ``UNetMotionModel``: the 2-D U-Net's weights with the adapter's motion modules (``from_unet2d``).

    Raises:
        ModelLoadError: the adapter's shape does not fit the base (e.g. an SDXL adapter on SD 1.5).
    """
    from diffusers import UNetMotionModel

    base, motion = unet2d.config, adapter.config
    base_channels, adapter_channels = tuple(base.block_out_channels), tuple(motion.block_out_channels)
    if base_channels != adapter_channels:
        raise ModelLoadError(f"{source} does not fit the base U-Net: its blocks have {list(adapter_channels)} channels, "
                             f"the base's {list(base_channels)}")
    layers = base.layers_per_block if isinstance(base.layers_per_block, int) else max(base.layers_per_block)
    adapter_layers = motion.motion_layers_per_block
    adapter_layers = adapter_layers if isinstance(adapter_layers, int) else max(adapter_layers)
    if layers != adapter_layers:
        raise ModelLoadError(f"{source} does not fit the base U-Net: {adapter_layers} motion modules per block, "
                             f"the base has {layers} layers per block")
    try:
        unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{source} does not fit the base U-Net: {first_line(exc)}") from None
    return unet if unet.dtype == unet2d.dtype else unet.to(dtype=unet2d.dtype)


def open_assembled(weights: WeightsSettings, torch_dtype=None) -> dict[str, Any]:
    """The five pipeline parts of ``--base SD --motion-adapter MA`` (the U-Net a ``UNetMotionModel``)."""
    parts = open_base(weights.base, variant=weights.variant, config=weights.base_config, torch_dtype=torch_dtype)
    adapter = open_motion_adapter(weights.motion_adapter, variant=weights.variant, torch_dtype=torch_dtype)
    parts["unet"] = motion_unet(parts["unet"], adapter, source=f"motion adapter {weights.motion_adapter!r}")
    return parts


def apply_loras(pipe, specs: Sequence[str]) -> list[str]:
    """Load each ``PATH[:SCALE]`` LoRA into ``pipe`` (U-Net and text encoder) and activate them all.

    Files are read by :func:`~vidgen.models.weight_files.read_weights` (no pickle runs code),
    then handed to diffusers' ``load_lora_weights``, which reads the diffusers, peft and
    kohya/A1111 layouts.

    Returns:
        The adapter names, in order.

    Raises:
        ModelLoadError: a missing or unsafe file, or a LoRA that does not fit the model.
    """
    if not specs:
        return []
    if not hasattr(pipe.unet, "set_adapters"):
        raise ModelLoadError(f"--lora: diffusers' {type(pipe.unet).__name__} does not take LoRA weights "
                             "(a UNetMotionModel model does)")
    from vidgen.extras import require

    require("peft", "--lora", "train")
    if any(pipe.get_list_adapters().values()):
        raise InputError("this pipeline already holds LoRAs; apply all of them in one call, with their scales")
    names, scales = [], []
    for i, spec in enumerate(specs):
        path, scale = parse_lora_spec(spec)
        if path.is_dir():
            files = sorted(path.glob("*.safetensors"))
            if len(files) != 1:
                raise ModelLoadError(f"LoRA folder {str(path)!r} holds {len(files)} .safetensors files; name the file")
            path = files[0]
        state = read_weights(path)
        before = _lora_layer_count(pipe)
        name = f"lora_{i}"
        try:
            with quiet_libraries():
                pipe.load_lora_weights(state, adapter_name=name)
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f"LoRA {str(path)!r} does not fit this model: {first_line(exc)}") from None
        if _lora_layer_count(pipe) == before:
            raise ModelLoadError(f"LoRA {str(path)!r} does not fit this model: none of its layers is in the U-Net "
                                 "or text encoder (a LoRA for another architecture?)")
        names.append(name)
        scales.append(scale)
    pipe.set_adapters(names, adapter_weights=scales)
    return names


def _lora_layer_count(pipe) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(len(getattr(m, "lora_A", {}) or {}) for part in (pipe.unet, pipe.text_encoder)
               for m in part.modules() if isinstance(m, BaseTunerLayer))
