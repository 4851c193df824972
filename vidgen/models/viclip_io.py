"""ViCLIP checkpoints: the official ``.pth``, Hugging Face folders, our safetensors export, and the text tower as transformers CLIP.

Every format is loaded strictly: a missing or unexpected key, or a wrong
shape, is an error that lists them. ``.pth`` files are read with
``torch.load(..., weights_only=True)``, so a pickle that would run code is
refused. Our export is a folder laid out like the Hugging Face ``ViCLIP-*-hf``
ones (``config.json`` + ``model.safetensors`` with the official key names).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from vidgen.assets import shipped_model_dir
from vidgen.errors import ConfigError, ModelLoadError, first_line
from vidgen.models.viclip import CONFIGS, ViCLIP, ViCLIPConfig, config_name, get_config

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "viclip"

# Where `vidgen score` looks when no --viclip is given (the shipped model carries one there): the
# checkout's checkpoints/viclip, or the copy an install carries.
DEFAULT_VICLIP_DIR = shipped_model_dir() / "viclip"



def infer_config(state_dict: Mapping[str, torch.Tensor], masking_prob: float = 0.9) -> ViCLIPConfig:
    """Model sizes read off a ViCLIP state dict.

    Widths, depths, patch, image size, frames, embedding size, context length
    and vocabulary come from tensor shapes. Head counts are not stored in the
    weights: a named size with the same shapes gives them, else 64-wide heads
    (CLIP's convention for every released size) are assumed.

    Raises:
        ModelLoadError: a key needed to read the sizes is missing or has an odd shape.
    """
    def get(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise ModelLoadError(f"cannot infer the ViCLIP size: the weights have no {key!r}")
        return state_dict[key]

    def depth(prefix: str) -> int:
        blocks = {k[len(prefix):].split(".", 1)[0] for k in state_dict if k.startswith(prefix)}
        return len([b for b in blocks if b.isdigit()])

    conv = get("vision_encoder.conv1.weight")
    pos = get("vision_encoder.positional_embedding")
    if conv.ndim != 5 or pos.ndim != 2:
        raise ModelLoadError(f"cannot infer the ViCLIP size: conv1.weight {tuple(conv.shape)} / positional_embedding {tuple(pos.shape)}")
    patch = int(conv.shape[-1])
    grid = math.isqrt(int(pos.shape[0]) - 1)
    shapes = dict(
        embed_dim=int(get("vision_encoder.proj").shape[1]),
        image_size=grid * patch,
        patch_size=patch,
        num_frames=int(get("vision_encoder.temporal_positional_embedding").shape[1]) * int(conv.shape[2]),
        tubelet_size=int(conv.shape[2]),
        vision_width=int(conv.shape[0]),
        vision_layers=depth("vision_encoder.transformer.resblocks."),
        text_width=int(get("text_encoder.token_embedding.weight").shape[1]),
        text_layers=depth("text_encoder.transformer.resblocks."),
        context_length=int(get("text_encoder.positional_embedding").shape[0]),
        vocab_size=int(get("text_encoder.token_embedding.weight").shape[0]),
    )
    for named in CONFIGS.values():  # a named size, possibly with tubelets (the heads come from the name)
        if all(getattr(named, k) == v for k, v in shapes.items() if k != "tubelet_size"):
            return dataclasses.replace(named, tubelet_size=shapes["tubelet_size"], masking_prob=masking_prob)
    for key in ("vision_width", "text_width"):
        if shapes[key] % 64:
            raise ModelLoadError(
                f"cannot infer the ViCLIP head count: {key} {shapes[key]} is not a multiple of 64; "
                "give the size (a config.json with the heads)"
            )
    try:
        return ViCLIPConfig(**shapes, vision_heads=shapes["vision_width"] // 64, text_heads=shapes["text_width"] // 64,
                            masking_prob=masking_prob)
    except ConfigError as exc:
        raise ModelLoadError(f"the weights do not describe a valid ViCLIP: {exc}") from None


def _describe_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: ViCLIP, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise unless ``state_dict`` has exactly the model's keys, with the model's shapes.

    Raises:
        ModelLoadError: listing the missing keys, the unexpected keys and the shape mismatches.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe_keys(unexpected)}")
    if not problems:
        wrong = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                 if tuple(state_dict[k].shape) != tuple(v.shape)]
        if wrong:
            problems.append(f"shape mismatches (checkpoint vs model): {_describe_keys(wrong)}")
    if problems:
        raise ModelLoadError(f"{source} does not match ViCLIP {config_name(model.config) or 'config'}: " + "; ".join(problems))


def _read_torch_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a ``.pth``, loaded with ``weights_only=True`` (no code runs)."""
    from vidgen.models.weight_files import load_pickle_safely

    obj = load_pickle_safely(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"checkpoint {str(path)!r} holds no ViCLIP state dict (expected a 'model' entry of tensors)")
    return dict(obj)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {str(path)!r}: {first_line(exc)}") from None


def _read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """Merge the shards an ``*.safetensors.index.json`` lists (the Hugging Face sharding convention)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"malformed shard index {str(index)!r}: {exc}") from None
    state: dict[str, torch.Tensor] = {}
    for name in sorted(set(weight_map.values())):
        if not (index.parent / name).is_file():
            raise ModelLoadError(f"shard {name!r} listed in {str(index)!r} is missing")
        state.update(_read_safetensors(index.parent / name))
    return state


def _read_folder_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"malformed {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"malformed {str(path)!r}: expected a JSON object")
    return data


def _config_from_json(data: Mapping[str, Any], source: str) -> ViCLIPConfig | None:
    """Our export stores every size; the HF folders store ``size``; else ``None`` (infer from weights)."""
    # masking_prob is optional; tubelet_size came later (exports written before it are tubelet 1, its default).
    fields = {f.name for f in dataclasses.fields(ViCLIPConfig)} - {"masking_prob", "tubelet_size"}
    try:
        if fields <= set(data):
            return ViCLIPConfig.from_dict(data)
        if data.get("size") is not None:
            return get_config(str(data["size"]))
    except ConfigError as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    return None


def default_viclip_path() -> Path:
    """The shipped ViCLIP folder: ``checkpoints/viclip/`` (the checkout's, or the copy an install carries).

    Raises:
        ModelLoadError: none is there.
    """
    if not DEFAULT_VICLIP_DIR.is_dir():
        raise ModelLoadError(f"no ViCLIP checkpoint given and none shipped at {str(DEFAULT_VICLIP_DIR)!r}; pass --viclip PATH")
    return DEFAULT_VICLIP_DIR


def read_viclip_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ViCLIPConfig | None]:
    """Read ViCLIP weights from a ``.pth``/``.pt``/``.bin``, a ``.safetensors`` file or a model folder.

    Returns:
        ``(state_dict, config)``; ``config`` is ``None`` when nothing but the
        weights describes the size.

    Raises:
        ModelLoadError: the path is missing, unreadable, a code-carrying pickle,
            or a folder without weights.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"ViCLIP checkpoint not found: {str(path)!r}")
    if path.is_dir():
        data = _read_folder_config(path)
        config = _config_from_json(data, str(path / CONFIG_NAME))
        index = path / INDEX_NAME
        if not (path / WEIGHTS_NAME).is_file() and index.is_file():
            return _read_sharded(index), config
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            others = sorted(path.glob("*.safetensors")) or sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pth", ".pt"))
            if not others:
                raise ModelLoadError(f"ViCLIP folder {str(path)!r} has no {WEIGHTS_NAME} (nor other .safetensors/.bin/.pth weights)")
            weights = others[0]
        state = _read_safetensors(weights) if weights.suffix == ".safetensors" else _read_torch_checkpoint(weights)
        return state, config
    if path.suffix == ".safetensors":
        sibling = _read_folder_config(path.parent) if path.name == WEIGHTS_NAME else {}
        return _read_safetensors(path), _config_from_json(sibling, str(path.parent / CONFIG_NAME))
    return _read_torch_checkpoint(path), None


def load_viclip(
    path: str | os.PathLike | None = None,
    *,
    size: str | ViCLIPConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> ViCLIP:
    """Load a ViCLIP checkpoint strictly and return the model in eval mode.

    Accepted: the official ``.pth`` (``torch.load(..., weights_only=True)["model"]``),
    a Hugging Face ``ViCLIP-*-hf`` folder (``config.json`` + ``model.safetensors``),
    our own export (:func:`save_viclip`), or a bare ``.safetensors`` file.

    Args:
        path: checkpoint file or folder; ``None`` for the shipped default.
        size: a named size or config; ``None`` reads it from ``config.json`` or
            infers it from the weights' shapes.
        device: where to put the model.
        dtype: parameter dtype (float32 reproduces the reference scores); ``None`` keeps the stored ones.

    Returns:
        :class:`ViCLIP` in eval mode.

    Raises:
        ModelLoadError: unreadable/unsafe file, or missing/unexpected keys or
            wrong shapes (all listed).
        ConfigError: an unknown ``size``.
    """
    path = default_viclip_path() if path is None else Path(path)
    state, stored = read_viclip_weights(path)
    config = get_config(size) if size is not None else (stored or infer_config(state))
    with torch.device("meta"):
        model = ViCLIP(config, init=False)
    check_state_dict(model, state, repr(str(path)))
    # assign=True adopts the loaded tensors instead of copying them into fresh ones: one copy in memory.
    model.load_state_dict(state, strict=True, assign=True)
    from vidgen.models.tokenizer import MERGES_FILE, VOCAB_FILE, Vocabulary, table_vocabulary

    # A trimmed text tower keeps its vocabulary beside its weights (vocab.json + merges.txt, as save_viclip writes).
    folder = path if path.is_dir() else path.parent
    has_files = (folder / VOCAB_FILE).is_file() or (folder / MERGES_FILE).is_file()
    model.vocabulary = table_vocabulary(Vocabulary.from_folder(folder) if has_files else None, config.vocab_size, str(path))
    return model.to(device=device, dtype=dtype).eval()


def save_viclip(model: ViCLIP, folder: str | os.PathLike, *, overwrite: bool = False,
                max_shard_bytes: int | None = None) -> Path:
    """Write ``model`` as a folder: ``config.json`` (every size) + ``model.safetensors`` (official key names),
    plus ``vocab.json`` + ``merges.txt`` when the model has its own vocabulary (``model.vocabulary``).

    With ``max_shard_bytes`` the weights are split into ``model-0000N-of-0000M.safetensors``
    files of at most that size (one tensor may exceed it) plus ``model.safetensors.index.json``.

    The layout matches the Hugging Face ``ViCLIP-*-hf`` folders, so
    :func:`load_viclip` opens both the same way. Files are written under
    temporary names and renamed when complete.

    Returns:
        The folder.

    Raises:
        OutputError: the folder already holds a model and ``overwrite`` is false,
            or it cannot be written.
    """
    from safetensors.torch import save_file

    from vidgen.io.files import atomic_output, atomic_write_text, check_output_path

    folder = Path(folder)
    weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    check_output_path(weights, overwrite)
    check_output_path(config_path, overwrite)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    name = config_name(model.config)
    meta = {"model_type": MODEL_TYPE, "size": {"l14": "l", "b16": "b"}.get(name or "", name), **model.config.to_dict()}
    total = sum(t.numel() * t.element_size() for t in state.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        with atomic_output(weights, overwrite=overwrite) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model_type": MODEL_TYPE})
    else:
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for key, tensor in state.items():
            nbytes = tensor.numel() * tensor.element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][key] = tensor
            size += nbytes
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            with atomic_output(folder / name, overwrite=overwrite) as tmp:
                save_file(shard, str(tmp), metadata={"format": "pt", "model_type": MODEL_TYPE})
            weight_map.update({k: name for k in shard})
        atomic_write_text(folder / INDEX_NAME, json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1),
                          overwrite=overwrite)
    vocabulary = getattr(model, "vocabulary", None)
    if vocabulary is not None:
        vocabulary.save(folder, overwrite=overwrite)
    else:
        from vidgen.models.tokenizer import MERGES_FILE, VOCAB_FILE

        for name in (VOCAB_FILE, MERGES_FILE):  # a trimmed model saved here before: its files would not fit this one
            (folder / name).unlink(missing_ok=True)
    atomic_write_text(config_path, json.dumps(meta, indent=2) + "\n", overwrite=overwrite)
    return folder


# ViCLIP text-tower keys -> transformers CLIP text-model keys (without the "text_model." prefix).
_TEXT_KEYS = (("token_embedding.weight", "embeddings.token_embedding.weight"),
              ("positional_embedding", "embeddings.position_embedding.weight"),
              ("ln_final.weight", "final_layer_norm.weight"), ("ln_final.bias", "final_layer_norm.bias"))
_TEXT_BLOCK_KEYS = (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"),
                    ("attn.out_proj", "self_attn.out_proj"))


def viclip_text_to_clip_text_model(model: ViCLIP, with_projection: bool = False):
    """ViCLIP's text tower as a ``transformers`` CLIP text model (same weights, same outputs).

    The result can serve as a diffusers pipeline's frozen ``text_encoder``:
    ``last_hidden_state`` equals :meth:`TextTransformer.hidden_states` and
    ``pooler_output @ text_projection`` equals :meth:`ViCLIP.encode_text`.
    Tokenise with ``hf_clip_tokenizer(32, pad_token="!", vocabulary=model.vocabulary)`` to pad as ViCLIP does.

    Args:
        model: a ViCLIP.
        with_projection: return ``CLIPTextModelWithProjection`` (its
            ``text_embeds`` are ViCLIP's text embeddings) instead of ``CLIPTextModel``.

    Returns:
        ``transformers.CLIPTextModel`` or ``CLIPTextModelWithProjection`` in eval mode, float32, on CPU.
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from vidgen.models.tokenizer import EOT_ID, EOT_TOKEN, SOT_ID, SOT_TOKEN

    c = model.config
    sot_id, eot_id = SOT_ID, EOT_ID
    if getattr(model, "vocabulary", None) is not None:
        index = model.vocabulary.encoder
        sot_id, eot_id = index[SOT_TOKEN], index[EOT_TOKEN]
    hf_config = CLIPTextConfig(
        vocab_size=c.vocab_size, hidden_size=c.text_width, intermediate_size=4 * c.text_width,
        projection_dim=c.embed_dim, num_hidden_layers=c.text_layers, num_attention_heads=c.text_heads,
        max_position_embeddings=c.context_length, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=sot_id, eos_token_id=eot_id, pad_token_id=0,
    )
    src = {k: v.detach().to("cpu", torch.float32) for k, v in model.text_encoder.state_dict().items()}
    out = {theirs: src[ours] for ours, theirs in _TEXT_KEYS}
    for i in range(c.text_layers):
        ours, theirs = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        # nn.MultiheadAttention packs q, k, v row-wise into one in_proj; CLIP's HF layout keeps three Linears.
        for kind in ("weight", "bias"):
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), src[f"{ours}attn.in_proj_{kind}"].chunk(3)):
                out[f"{theirs}self_attn.{proj}.{kind}"] = part
            for a, b in _TEXT_BLOCK_KEYS:
                out[f"{theirs}{b}.{kind}"] = src[f"{ours}{a}.{kind}"]
    hf = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(hf_config)
    # The transformer's keys sit under "text_model." in some classes/versions of transformers and at the top in others.
    prefix = "text_model." if any(k.startswith("text_model.") for k in hf.state_dict()) else ""
    out = {prefix + k: v for k, v in out.items()}
    if with_projection:
        out["text_projection.weight"] = src["text_projection"].T.contiguous()
    result = hf.load_state_dict(out, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]  # a non-weight buffer
    if missing or unexpected:
        raise ModelLoadError(f"text tower conversion left keys unmatched: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def load_clip_text_model_into_viclip(model: ViCLIP, text_encoder) -> ViCLIP:
    """Put a ``transformers`` CLIP text model's weights into ViCLIP's text tower (the inverse of
    :func:`viclip_text_to_clip_text_model`); ViCLIP's ``text_projection`` is kept.

    This makes a ViCLIP whose text tower *is* a pipeline's text encoder, e.g. to train a video tower
    against the default model's frozen text encoder (locked-text tuning).

    Args:
        model: the ViCLIP to change in place.
        text_encoder: a ``CLIPTextModel`` / ``CLIPTextModelWithProjection``, or a folder holding one
            (a model folder's ``text_encoder/``).

    Returns:
        ``model``.

    Raises:
        ModelLoadError: the folder does not hold a CLIP text model, or its shape differs from the tower's.
    """
    if isinstance(text_encoder, (str, os.PathLike)):
        from transformers import CLIPTextModel

        folder = Path(text_encoder)
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder}: no text encoder here (config.json missing)")
        try:
            text_encoder = CLIPTextModel.from_pretrained(folder, torch_dtype=torch.float32, use_safetensors=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{folder}: cannot load a CLIP text model: {first_line(e)}") from e
    c, h = model.config, text_encoder.config
    theirs_shape = (h.vocab_size, h.hidden_size, h.num_hidden_layers, h.num_attention_heads, h.max_position_embeddings,
                    h.intermediate_size, h.hidden_act)
    ours_shape = (c.vocab_size, c.text_width, c.text_layers, c.text_heads, c.context_length, 4 * c.text_width,
                  "quick_gelu")
    if theirs_shape != ours_shape:
        raise ModelLoadError(f"text encoder (vocab, width, layers, heads, context, mlp, activation) {theirs_shape} does "
                             f"not fit the ViCLIP text tower's {ours_shape}")
    src = {k.removeprefix("text_model."): v.detach().to("cpu", torch.float32)
           for k, v in text_encoder.state_dict().items()}
    out = {ours: src[theirs] for ours, theirs in _TEXT_KEYS}
    for i in range(c.text_layers):
        ours, theirs = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[f"{ours}attn.in_proj_{kind}"] = torch.cat([src[f"{theirs}self_attn.{p}.{kind}"]
                                                           for p in ("q_proj", "k_proj", "v_proj")])
            for a, b in _TEXT_BLOCK_KEYS:
                out[f"{ours}{a}.{kind}"] = src[f"{theirs}{b}.{kind}"]
    tower = model.text_encoder
    out["text_projection"] = tower.text_projection.detach()
    dtype = tower.token_embedding.weight.dtype
    tower.load_state_dict({k: v.to(dtype) for k, v in out.items()}, strict=True)
    return model
