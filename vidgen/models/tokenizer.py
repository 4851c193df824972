"""CLIP's byte-pair-encoding vocabulary, shipped with the package.

``assets/bpe_simple_vocab_16e6.txt.gz`` holds CLIP's merges (see
``assets/LICENSE-bpe_simple_vocab.txt``). The 49408-token vocabulary is built from
it the way CLIP builds it: 256 byte symbols, the same with an end-of-word
marker, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

BPE_PATH = Path(__file__).resolve().parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
SOT_ID = 49406
EOT_ID = 49407
_NUM_MERGES = VOCAB_SIZE - 256 * 2 - 2


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


@functools.lru_cache(maxsize=2)
def load_merges(path: str | None = None) -> tuple[tuple[str, str], ...]:
    """The first 48894 merges of the BPE file (the ones CLIP's vocabulary uses)."""
    with gzip.open(path or BPE_PATH, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    pairs = lines[1 : _NUM_MERGES + 1]
    return tuple(tuple(line.split()) for line in pairs)  # type: ignore[misc]


@functools.lru_cache(maxsize=2)
def clip_vocab(path: str | None = None) -> dict[str, int]:
    """Token string -> id for CLIP's 49408-token vocabulary."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in load_merges(path)] + [SOT_TOKEN, EOT_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}


def hf_clip_tokenizer(model_max_length: int = 77):
    """A ``transformers.CLIPTokenizer`` over the shipped vocabulary (no download).

    Args:
        model_max_length: padding/truncation length (77 for Stable Diffusion's
            CLIP, 32 for ViCLIP's text tower).
    """
    from transformers import CLIPTokenizer

    merges = list(load_merges())
    return CLIPTokenizer(vocab=dict(clip_vocab()), merges=merges, model_max_length=model_max_length)
