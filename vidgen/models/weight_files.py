"""The weight files the community publishes, read safely and mapped between key layouts.

* :func:`read_weights` reads a ``.safetensors`` file, or a pickle (``.ckpt``, ``.pt``,
  ``.pth``, ``.bin``) with ``torch.load(weights_only=True)``, which reads tensors and
  refuses a pickle that would run code.
* AnimateDiff's original motion-module files (``mm_sd_v15_v2.ckpt`` and its
  ``.safetensors`` copies) name their layers ``temporal_transformer``,
  ``attention_blocks.N``, ``norms.N``, ``ff_norm``; diffusers' ``MotionAdapter`` names
  the same tensors ``attnN``, ``normN``. :func:`motion_modules_from_original` and
  :func:`motion_modules_to_original` map between the two, and
  :func:`motion_adapter_config` reads a ``MotionAdapter`` config from the keys and shapes.
* :func:`folder_variants` tells which weight variants (``fp16``...) a component folder holds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import torch

from vidgen.errors import ModelLoadError, first_line

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
# AnimateDiff has 8 heads in every motion module of every release; the weights cannot tell the number.
ANIMATEDIFF_HEADS = 8

# (diffusers name, original name) inside one motion module; applied to whole dot-separated parts.
_BLOCK_PARTS = (("attn1", "attention_blocks.0"), ("attn2", "attention_blocks.1"),
                ("norm1", "norms.0"), ("norm2", "norms.1"), ("norm3", "ff_norm"))


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of one weight file, without running code.

    A pickle is loaded with ``torch.load(weights_only=True)``; a ``state_dict`` or
    ``module`` wrapper (as Lightning and some trainers write) is unwrapped.

    Raises:
        ModelLoadError: a missing or unreadable file, a pickle that needs code, or a file holding no tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weight file not found: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot read {str(path)!r}: not a valid safetensors file ({first_line(exc)})") from None
    if suffix not in PICKLE_SUFFIXES:
        raise ModelLoadError(f"{str(path)!r}: unknown weight file type {suffix or '(no suffix)'!r}; "
                             f"expected one of {', '.join(WEIGHT_SUFFIXES)}")
    obj = load_pickle_safely(path)
    for wrapper in ("state_dict", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    if not tensors:
        raise ModelLoadError(f"{str(path)!r} holds no tensors (expected a state dict)")
    return tensors


def load_pickle_safely(path: Path):
    """``torch.load(path, weights_only=True)`` (memory-mapped where the format allows): tensors and plain
    containers only, never code.

    Raises:
        ModelLoadError: a pickle that needs code to load, or an unreadable file.
    """
    import pickle

    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"refusing {str(path)!r}: it is a pickle that needs code to load, and vidgen loads checkpoints with "
            f"torch.load(weights_only=True), which only reads tensors ({first_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"cannot read checkpoint {str(path)!r}: {first_line(exc)}") from None


def weight_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a weight file: a safetensors header is read without loading its tensors;
    a pickle is read whole by :func:`read_weights` (so a pickle that needs code is refused here too).

    Raises:
        ModelLoadError: as :func:`read_weights`.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors" and path.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as handle:
                return list(handle.keys())
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot read {str(path)!r}: not a valid safetensors file ({first_line(exc)})") from None
    return list(read_weights(path))


def is_original_motion_modules(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is an AnimateDiff motion-module file in the original key layout."""
    return any(".temporal_transformer." in k for k in state_dict)


def motion_modules_from_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original AnimateDiff keys -> diffusers ``MotionAdapter`` keys (diffusers' own single-file mapping).

    The sinusoidal position tables (``pos_encoder.pe``) are left out: the adapter rebuilds them from its config.
    """
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    return convert_animatediff_checkpoint_to_diffusers(dict(state_dict))


def motion_modules_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers motion-module keys (a ``MotionAdapter``'s, or ``motion_modules`` of a ``UNetMotionModel``)
    -> the original AnimateDiff layout, position tables included (tools detect the format by them)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = re.match(r"^(.*\.motion_modules\.\d+)\.(.*)$", key)
        if match is None:
            continue
        module, rest = match.groups()
        parts = rest.split(".")
        if parts[-2:] == ["pos_embed", "pe"]:  # one table per block in diffusers, one per attention originally
            block = ".".join(parts[:-2])
            for attention in ("attention_blocks.0", "attention_blocks.1"):  # own copies: files cannot share storage
                out[f"{module}.temporal_transformer.{block}.{attention}.pos_encoder.pe"] = value.clone()
            continue
        for new, old in _BLOCK_PARTS:
            parts = [old if p == new else p for p in parts]
        out[f"{module}.temporal_transformer.{'.'.join(parts)}"] = value
    return out


def motion_adapter_config(state_dict: Mapping[str, torch.Tensor], source: str = "the file") -> dict[str, Any]:
    """A ``MotionAdapter`` config read from diffusers-layout motion-module keys and shapes.

    The number of attention heads cannot be read from weights; it is AnimateDiff's 8.

    Raises:
        ModelLoadError: keys that are not motion modules, or a layout no ``MotionAdapter`` has.
    """
    channels: dict[int, int] = {}
    layers: dict[int, int] = {}
    transformer_layers = 1
    max_len = None
    for key, value in state_dict.items():
        match = re.match(r"^down_blocks\.(\d+)\.motion_modules\.(\d+)\.(.*)$", key)
        if match:
            block, index, rest = int(match[1]), int(match[2]), match[3]
            layers[block] = max(layers.get(block, 0), index + 1)
            if rest == "norm.weight":
                channels[block] = int(value.shape[0])
        blocks = re.search(r"\.transformer_blocks\.(\d+)\.", key)
        if blocks:
            transformer_layers = max(transformer_layers, int(blocks[1]) + 1)
        if key.endswith("pos_embed.pe") and value.ndim == 3:
            max_len = int(value.shape[1])
    if any(k.startswith(("conv_in", "controlnet")) for k in state_dict):
        raise ModelLoadError(f"{source} is a SparseCtrl/ControlNet file, not motion modules")
    if not channels or sorted(channels) != list(range(len(channels))):
        raise ModelLoadError(f"{source} holds no AnimateDiff motion modules (no down_blocks.N.motion_modules.M.norm.weight keys)")
    per_block = {layers[b] for b in channels}
    if len(per_block) != 1:
        raise ModelLoadError(f"{source}: down blocks have different numbers of motion modules {sorted(layers.values())}")
    config: dict[str, Any] = dict(
        block_out_channels=tuple(channels[b] for b in sorted(channels)),
        motion_layers_per_block=per_block.pop(),
        motion_transformer_layers_per_block=transformer_layers,
        motion_num_attention_heads=ANIMATEDIFF_HEADS,
        use_motion_mid_block=any(k.startswith("mid_block.motion_modules.") for k in state_dict),
    )
    if max_len is not None:
        config["motion_max_seq_length"] = max_len
    return config


def original_position_length(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """The frame count of an original file's position tables (24 in AnimateDiff v1, 32 later), if it has them."""
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe") and value.ndim == 3:
            return int(value.shape[1])
    return None


_VARIANT = re.compile(r"^(?:diffusion_pytorch_model|model)\.([A-Za-z0-9_]+)(?:-\d+-of-\d+)?\.safetensors(?:\.index\.json)?$")
_PLAIN = re.compile(r"^(?:diffusion_pytorch_model|model)(?:-\d+-of-\d+)?\.safetensors(?:\.index\.json)?$")


def folder_variants(folder: str | os.PathLike) -> set[str | None]:
    """The safetensors weight variants a component folder holds: ``None`` for the plain file, ``"fp16"``...

    Shards (``-00001-of-00002``) and their index count as the variant they belong to.
    """
    found: set[str | None] = set()
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for item in folder.iterdir():
        if _PLAIN.match(item.name):
            found.add(None)
        else:
            match = _VARIANT.match(item.name)
            if match:
                found.add(match[1])
    return found
