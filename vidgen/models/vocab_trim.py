"""Trim a model's text vocabulary to the tokens a caption corpus uses.

A text encoder trained only on a narrow corpus (the toy world's captions) never
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
from vidgen.models.tokenizer import EOT_TOKEN, SOT_TOKEN, VOCAB_SIZE, Vocabulary

__all__ = ["trim_model_folder", "trim_viclip", "trim_clip_text_model"]


def _base_vocabulary(folder: Path, rows: int) -> Vocabulary:
    """The vocabulary a table of ``rows`` rows was built for: the folder's own files, else CLIP's."""
    vocabulary = Vocabulary.from_folder(folder)
    if vocabulary is None:
        if rows != VOCAB_SIZE:
            raise ModelLoadError(f"{folder}: {rows} token rows and no tokenizer files to say which tokens they are")
        vocabulary = Vocabulary.clip()
    if len(vocabulary) != rows:
        raise ModelLoadError(f"{folder}: the tokenizer has {len(vocabulary)} tokens, the text encoder {rows} rows")
    return vocabulary


def trim_clip_text_model(text_encoder, base: Vocabulary, new: Vocabulary):
    """``text_encoder`` (a ``transformers`` CLIP text model, changed in place) with the rows of ``new``'s tokens."""
    rows = torch.tensor(new.ids_in(base))
    embedding = text_encoder.get_input_embeddings()
    trimmed = torch.nn.Embedding(len(new), embedding.embedding_dim, dtype=embedding.weight.dtype)
    with torch.no_grad():
        trimmed.weight.copy_(embedding.weight[rows])
    text_encoder.set_input_embeddings(trimmed)
    index = new.encoder
    text_encoder.config.vocab_size = len(new)
    text_encoder.config.bos_token_id = index[SOT_TOKEN]
    text_encoder.config.eos_token_id = index[EOT_TOKEN]
    return text_encoder


def trim_viclip(model, new: Vocabulary):
    """``model`` (a ViCLIP, changed in place) with the text rows of ``new``'s tokens; it carries ``new`` from then on."""
    base = model.vocabulary if model.vocabulary is not None else Vocabulary.clip()
    rows = torch.tensor(new.ids_in(base))
    tower = model.text_encoder
    weight = tower.token_embedding.weight
    trimmed = torch.nn.Embedding(len(new), weight.shape[1], dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        trimmed.weight.copy_(weight[rows])
    tower.token_embedding = trimmed
    model.config = dataclasses.replace(model.config, vocab_size=len(new))
    tower.config = model.config
    model.vocabulary = new
    return model


def _stored_dtype(config_path: Path) -> torch.dtype:
    """The dtype a ``transformers`` config says its weights were saved in (float32 when it says none)."""
    config = json.loads(config_path.read_text())
    name = config.get("dtype") or config.get("torch_dtype")
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(name, torch.float32)


def trim_model_folder(src: str | os.PathLike, dst: str | os.PathLike, texts: Iterable[str], *,
                      overwrite: bool = False) -> dict:
    """Copy a model folder to ``dst`` with its text vocabulary trimmed to ``texts``.

    ``src`` is a pipeline folder (``model_index.json``; its ``text_encoder/`` +
    ``tokenizer/`` and, when present, ``viclip/`` are trimmed, the rest copied) or a
    ViCLIP folder. Weights keep their stored dtype. ``dst`` is written beside itself and
    renamed when complete; with ``overwrite`` it may replace an empty or model folder.

    Returns:
        ``{"tokens_before", "tokens_after", "bytes_before", "bytes_after"}``.

    Raises:
        ModelLoadError: ``src`` is not such a folder or its parts disagree.
        OutputError: ``dst`` exists (without ``overwrite``) or cannot be written.
        InputError: ``texts`` is empty.
    """
    from transformers import CLIPTextModel

    from vidgen.io.files import atomic_folder
    from vidgen.models.tokenizer import hf_clip_tokenizer
    from vidgen.models.viclip_io import load_viclip, read_viclip_weights, save_viclip

    src, dst = Path(src), Path(dst)
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("no texts to keep the vocabulary of")
    is_pipeline = (src / "model_index.json").is_file()
    viclip_dir = src / "viclip" if is_pipeline else src
    if not is_pipeline and not (src / "config.json").is_file():
        raise ModelLoadError(f"{src}: neither a model folder (model_index.json) nor a ViCLIP folder (config.json)")
    report = {"bytes_before": sum(f.stat().st_size for f in src.rglob("*") if f.is_file())}
    if dst.resolve() == src.resolve():
        raise InputError(f"{src}: trim into another folder, not onto itself")

    def replaceable(path: Path) -> bool:
        return (path / "model_index.json").is_file() or (path / "config.json").is_file()

    with atomic_folder(dst, overwrite=overwrite, replaceable=replaceable) as tmp:
        if is_pipeline:
            shutil.copytree(src, tmp, dirs_exist_ok=True,
                            ignore=lambda d, names: names if Path(d) in (src / "text_encoder", src / "tokenizer", viclip_dir) else [])
            te_dir, tok_dir = src / "text_encoder", src / "tokenizer"
            dtype = _stored_dtype(te_dir / "config.json")
            try:
                text_encoder = CLIPTextModel.from_pretrained(str(te_dir), torch_dtype=dtype, use_safetensors=True)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"{te_dir}: cannot load the text encoder: {str(e).splitlines()[0]}") from None
            base = _base_vocabulary(tok_dir, text_encoder.config.vocab_size)
            new = base.trimmed(texts)
            trim_clip_text_model(text_encoder, base, new).save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
            settings = json.loads((tok_dir / "tokenizer_config.json").read_text())
            tokenizer = hf_clip_tokenizer(settings.get("model_max_length", 77), pad_token=settings.get("pad_token"),
                                          vocabulary=new)
            tokenizer.save_pretrained(str(tmp / "tokenizer"))
            new.save(tmp / "tokenizer", overwrite=True)
            report["tokens_before"] = len(base)
        if (viclip_dir / "config.json").is_file():
            state, _ = read_viclip_weights(viclip_dir)
            dtype = next(t.dtype for t in state.values() if t.is_floating_point())
            del state
            model = load_viclip(viclip_dir, dtype=dtype)
            base = model.vocabulary if model.vocabulary is not None else _base_vocabulary(viclip_dir, model.config.vocab_size)
            new_v = base.trimmed(texts)
            if is_pipeline and new_v.tokens != new.tokens:
                raise ModelLoadError(f"{src}: the ViCLIP and the text encoder have different vocabularies")
            save_viclip(trim_viclip(model, new_v), tmp / "viclip" if is_pipeline else tmp, overwrite=True,
                        max_shard_bytes=6 * 2**20)
            report.setdefault("tokens_before", len(base))
            new = new_v
    report.update(tokens_after=len(new), bytes_after=sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()))
    return report

