"""Trim a model's text vocabulary to the tokens a caption corpus uses.

A text encoder trained only on a narrow corpus (a synthetic world's captions, say) never
updates the rows of CLIP's 49408-token embedding table that the corpus does not
reach, yet the table is most of the encoder's weights. :func:`trim_model_folder`
keeps the rows of :meth:`Vocabulary.trimmed` (byte symbols, start/end tokens and
every merge on the way to the corpus's words) in a pipeline's ``text_encoder/`` +
``tokenizer/`` and in a ViCLIP folder's text tower (which then carries
``vocab.json`` + ``merges.txt``). The corpus's texts give exactly the same outputs
afterwards; words outside it tokenise into smaller pieces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import torch

from vidgen.errors import InputError, ModelLoadError
from vidgen.models.tokenizer import EOT_TOKEN, SOT_TOKEN, Vocabulary, table_vocabulary

__all__ = ["trim_model_folder", "trim_viclip", "trim_clip_text_model"]


def _base_vocabulary(folder: Path, rows: int) -> Vocabulary:
    """The vocabulary a table of ``rows`` rows was built for: the folder's own files, else CLIP's."""
    vocabulary = table_vocabulary(Vocabulary.from_folder(folder), rows, str(folder))
    return vocabulary if vocabulary is not None else Vocabulary.clip()


def _rows_of(embedding: torch.nn.Embedding, rows: list[int]) -> torch.nn.Embedding:
    """A new embedding holding ``rows`` of ``embedding`` (same dtype and device)."""
    weight = embedding.weight
    out = torch.nn.Embedding(len(rows), weight.shape[1], dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        out.weight.copy_(weight[torch.tensor(rows, device=weight.device)])
    return out


def trim_clip_text_model(text_encoder, base: Vocabulary, new: Vocabulary):
    """``text_encoder`` (a ``transformers`` CLIP text model, changed in place) with the rows of ``new``'s tokens;
    its start, end and padding ids follow their tokens."""
    text_encoder.set_input_embeddings(_rows_of(text_encoder.get_input_embeddings(), new.ids_in(base)))
    index, config = new.encoder, text_encoder.config
    pad = config.pad_token_id
    pad_token = base.tokens[pad] if isinstance(pad, int) and 0 <= pad < len(base) else None
    config.vocab_size = len(new)
    config.bos_token_id = index[SOT_TOKEN]
    config.eos_token_id = index[EOT_TOKEN]
    if pad_token is not None:
        config.pad_token_id = index.get(pad_token, index[EOT_TOKEN])
    return text_encoder


def trim_viclip(model, new: Vocabulary):
    """``model`` (a ViCLIP, changed in place) with the text rows of ``new``'s tokens; it carries ``new`` from then on."""
    base = model.vocabulary if model.vocabulary is not None else Vocabulary.clip()
    tower = model.text_encoder
    tower.token_embedding = _rows_of(tower.token_embedding, new.ids_in(base))
    model.config = dataclasses.replace(model.config, vocab_size=len(new))
    tower.config = model.config
    model.vocabulary = new
    return model


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: unreadable: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def _is_model_folder(path: Path) -> bool:
    """A pipeline folder or a ViCLIP folder: the only kinds ``trim_model_folder`` may replace."""
    if (path / "model_index.json").is_file():
        return True
    try:
        return json.loads((path / "config.json").read_text()).get("model_type") == "viclip"
    except (OSError, ValueError, AttributeError):
        return False


def trim_model_folder(src: str | os.PathLike, dst: str | os.PathLike, texts: Iterable[str], *,
                      overwrite: bool = False, max_shard_bytes: int | None = None) -> dict:
    """Copy a model folder to ``dst`` with its text vocabulary trimmed to ``texts``.

    ``src`` is a pipeline folder (``model_index.json``: its ``text_encoder/`` + ``tokenizer/``
    and, when present, ``viclip/`` are written anew, holding only their model files, and every
    other file is copied) or a ViCLIP folder. Weights keep their stored dtype. ``dst`` is
    written beside itself and renamed when complete; with ``overwrite`` it may replace an
    empty folder or a model folder, never ``src`` nor a folder inside or around it.

    Args:
        max_shard_bytes: split the ViCLIP's weights into files of at most this size (see ``save_viclip``).

    Returns:
        ``{"tokens_before", "tokens_after", "bytes_before", "bytes_after"}``.

    Raises:
        ModelLoadError: ``src`` is not such a folder, a part is unreadable, or the parts disagree.
        OutputError: ``dst`` exists (without ``overwrite``) or cannot be written.
        InputError: no texts, a text that is not a string, or ``dst`` overlapping ``src``.
    """
    from transformers import CLIPTextModel

    from vidgen.io.files import atomic_folder
    from vidgen.models.tokenizer import hf_clip_tokenizer
    from vidgen.models.viclip_io import load_viclip, save_viclip

    src, dst = Path(src), Path(dst)
    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise InputError("the texts to keep the vocabulary of must be strings")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("no texts to keep the vocabulary of")
    a, b = src.resolve(), dst.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise InputError(f"trim {str(src)!r} into a folder apart from it, not {str(dst)!r}")
    is_pipeline = (src / "model_index.json").is_file()
    viclip_dir = src / "viclip" if is_pipeline else src
    if not is_pipeline and not (src / "config.json").is_file():
        raise ModelLoadError(f"{src}: neither a model folder (model_index.json) nor a ViCLIP folder (config.json)")
    report = {"bytes_before": sum(f.stat().st_size for f in src.rglob("*") if f.is_file())}
    new = None
    with atomic_folder(dst, overwrite=overwrite, replaceable=_is_model_folder) as tmp:
        if is_pipeline:
            rewritten = (src / "text_encoder", src / "tokenizer", viclip_dir)
            shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=lambda d, names: names if Path(d) in rewritten else [])
            te_dir, tok_dir = src / "text_encoder", src / "tokenizer"
            try:
                text_encoder = CLIPTextModel.from_pretrained(str(te_dir), torch_dtype="auto", use_safetensors=True)
            except (OSError, ValueError, RuntimeError) as e:
                raise ModelLoadError(f"{te_dir}: cannot load the text encoder: {str(e).splitlines()[0]}") from None
            base = _base_vocabulary(tok_dir, text_encoder.config.vocab_size)
            new = base.trimmed(texts)
            trim_clip_text_model(text_encoder, base, new).save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
            settings = _read_json(tok_dir / "tokenizer_config.json")
            tokenizer = hf_clip_tokenizer(settings.get("model_max_length", 77), pad_token=settings.get("pad_token"),
                                          vocabulary=new)
            tokenizer.save_pretrained(str(tmp / "tokenizer"))
            new.save(tmp / "tokenizer", overwrite=True)
            report["tokens_before"] = len(base)
        if (viclip_dir / "config.json").is_file():
            model = load_viclip(viclip_dir, dtype=None)  # the stored dtypes
            base = model.vocabulary if model.vocabulary is not None else Vocabulary.clip()
            new_v = base.trimmed(texts)
            if new is not None and new_v.tokens != new.tokens:
                raise ModelLoadError(f"{src}: the ViCLIP and the text encoder have different vocabularies")
            save_viclip(trim_viclip(model, new_v), tmp / "viclip" if is_pipeline else tmp, overwrite=True,
                        max_shard_bytes=max_shard_bytes)
            report.setdefault("tokens_before", len(base))
            new = new_v
    report.update(tokens_after=len(new), bytes_after=sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()))
    return report
