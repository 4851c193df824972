"""CLIP's byte-pair-encoding tokenizer, with its vocabulary shipped in the package.

``assets/bpe_simple_vocab_16e6.txt.gz`` holds CLIP's merges (see
``assets/LICENSE-bpe_simple_vocab.txt``). The 49408-token vocabulary is built from
it the way CLIP builds it: 256 byte symbols, the same with an end-of-word
marker, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.

:class:`CLIPBPETokenizer` is our own implementation of CLIP's recipe (the one
ViCLIP's text tower was trained with): ftfy repair, HTML unescaping, whitespace
clean-up, lower case, CLIP's pre-tokenisation pattern, byte-level BPE, then
``[SOT] ids [EOT]`` zero-padded to the context length, with the end token forced
into the last slot when the text is too long. :func:`hf_clip_tokenizer` gives
transformers' ``CLIPTokenizer`` over the same vocabulary (for diffusers
pipelines); it skips the ftfy/HTML repair, so the two agree on clean text only.

:class:`Vocabulary` is a vocabulary other than CLIP's full one: a model trained on a
narrow caption corpus keeps only the tokens those captions reach (every byte
symbol, so any text still tokenises, plus each merge on the way to the corpus's
words), written as the standard ``vocab.json`` + ``merges.txt`` pair. Words of the
corpus tokenise to the same tokens as under the full vocabulary; other words fall
apart into smaller pieces.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from vidgen.errors import InputError, ModelLoadError, OutputError

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


def hf_clip_tokenizer(model_max_length: int = 77, pad_token: str | None = None, vocabulary: "Vocabulary | None" = None):
    """A ``transformers.CLIPTokenizer`` over the shipped vocabulary (no download).

    Args:
        model_max_length: padding/truncation length (77 for Stable Diffusion's
            CLIP, 32 for ViCLIP's text tower).
        pad_token: padding token; ``None`` keeps transformers' default
            (``<|endoftext|>``). ``"!"`` (id 0) pads the way OpenAI CLIP and
            ViCLIP do, so padded positions match :class:`CLIPBPETokenizer`.
        vocabulary: another vocabulary than CLIP's full one (see :class:`Vocabulary`).
    """
    from transformers import CLIPTokenizer

    if vocabulary is None:
        vocab, merges = dict(clip_vocab()), list(load_merges())
    else:
        vocab, merges = vocabulary.encoder, list(vocabulary.merges)
    extra = {} if pad_token is None else {"pad_token": pad_token}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length, **extra)


def apply_merges(parts: list[str], ranks: dict[tuple[str, str], int], made: set[str] | None = None) -> tuple[str, ...]:
    """Byte-pair-merge a word's symbols: the adjacent pair of lowest rank is merged everywhere it
    occurs, left to right, until no adjacent pair has a rank. ``made`` collects every merged token."""
    while len(parts) > 1:
        best_rank, best = None, None
        for pair in zip(parts, parts[1:]):
            rank = ranks.get(pair)
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best = rank, pair
        if best is None:
            break
        first, second = best
        merged: list[str] = []
        i = 0
        while i < len(parts):
            if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
        if made is not None:
            made.add(first + second)
    return tuple(parts)


VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"


@dataclass(frozen=True)
class Vocabulary:
    """A CLIP-style BPE vocabulary: tokens in id order and the merges, by rank.

    ``Vocabulary.clip()`` is CLIP's own (49408 tokens); :meth:`trimmed` keeps the part
    a caption corpus reaches. Ids follow the order of the full vocabulary, so the byte
    symbols keep ids 0-511 (padding with 0 is unchanged) and the end token stays the
    largest id (CLIP's pooling takes the position of the largest id).
    """

    tokens: tuple[str, ...]
    merges: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise InputError("vocabulary: a token appears twice")
        known = set(self.tokens)
        for special in (SOT_TOKEN, EOT_TOKEN):
            if special not in known:
                raise InputError(f"vocabulary: {special} is missing")
        if self.tokens[-1] != EOT_TOKEN:
            raise InputError(f"vocabulary: {EOT_TOKEN} must have the largest id (CLIP pools at the largest id)")
        symbols = list(bytes_to_unicode().values())
        lacking = [t for t in symbols + [c + _END_OF_WORD for c in symbols] if t not in known]
        if lacking:
            raise InputError(f"vocabulary: {len(lacking)} byte symbols are missing (e.g. {lacking[0]!r}): "
                             "some texts could not be tokenised")
        missing = [a + b for a, b in self.merges if a + b not in known or a not in known or b not in known]
        if missing:
            raise InputError(f"vocabulary: {len(missing)} merges use or make tokens it lacks, e.g. {missing[0]!r}")

    @classmethod
    def clip(cls) -> "Vocabulary":
        """CLIP's full vocabulary (the shipped merges file; built once)."""
        return _clip_vocabulary()

    @functools.cached_property
    def encoder(self) -> dict[str, int]:
        """Token -> id (built once per vocabulary)."""
        return {tok: i for i, tok in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def trimmed(self, texts: Iterable[str]) -> "Vocabulary":
        """The part of this vocabulary that ``texts`` reach: every byte symbol (with and without the
        end-of-word marker), the start and end tokens, and each token made on the way to the texts' words.

        Under the result the texts tokenise to the same tokens: BPE merges the lowest-ranked pair
        present at each step, and every merge a kept word takes is kept (the others never apply first).
        """
        full = CLIPBPETokenizer(vocabulary=self)
        made: set[str] = set()
        for text in texts:
            for word in full.words(text):
                if word not in (SOT_TOKEN, EOT_TOKEN):
                    apply_merges(_word_parts(word), full.bpe_ranks, made)
        symbols = set(bytes_to_unicode().values())
        keep = made | symbols | {s + _END_OF_WORD for s in symbols} | {SOT_TOKEN, EOT_TOKEN}
        return Vocabulary(tuple(t for t in self.tokens if t in keep),
                          tuple(m for m in self.merges if m[0] + m[1] in made))

    def ids_in(self, other: "Vocabulary") -> list[int]:
        """For each of this vocabulary's tokens, its id in ``other`` (e.g. the rows to keep of a
        token-embedding table built for ``other``).

        Raises:
            InputError: a token that ``other`` lacks.
        """
        index = other.encoder
        lacking = [t for t in self.tokens if t not in index]
        if lacking:
            raise InputError(f"vocabulary: {len(lacking)} tokens are not in the other vocabulary, e.g. {lacking[0]!r}")
        return [index[t] for t in self.tokens]

    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> None:
        """Write ``vocab.json`` (token -> id) and ``merges.txt`` into ``folder``, the files of a
        ``transformers`` slow CLIP tokenizer.

        Raises:
            OutputError: a file exists and ``overwrite`` is false, or cannot be written.
        """
        from vidgen.io.files import atomic_write_text, check_output_path

        folder = Path(folder)
        for name in (VOCAB_FILE, MERGES_FILE):
            check_output_path(folder / name, overwrite)
        atomic_write_text(folder / VOCAB_FILE, json.dumps(self.encoder, ensure_ascii=False) + "\n", overwrite=overwrite)
        lines = ["#version: 0.2", *(f"{a} {b}" for a, b in self.merges)]
        atomic_write_text(folder / MERGES_FILE, "\n".join(lines) + "\n", overwrite=overwrite)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "Vocabulary | None":
        """The vocabulary in ``folder``: ``vocab.json`` + ``merges.txt``, else a BPE ``tokenizer.json``
        (a ``transformers`` fast tokenizer's); ``None`` when it has neither.

        Raises:
            ModelLoadError: one of the pair without the other, or files that are unreadable or disagree.
        """
        folder = Path(folder)
        vocab_path, merges_path, fast_path = folder / VOCAB_FILE, folder / MERGES_FILE, folder / "tokenizer.json"
        has_pair = vocab_path.is_file(), merges_path.is_file()
        if any(has_pair) and not all(has_pair):
            raise ModelLoadError(f"{folder}: {VOCAB_FILE} and {MERGES_FILE} come together; one is missing")
        if not any(has_pair) and not fast_path.is_file():
            return None
        try:
            if all(has_pair):
                index = json.loads(vocab_path.read_text(encoding="utf-8"))
                lines = merges_path.read_text(encoding="utf-8").split("\n")
                merges = [line.split() for line in lines if line.strip() and not line.startswith("#version")]
            else:
                model = json.loads(fast_path.read_text(encoding="utf-8"))["model"]
                if model.get("type") != "BPE":
                    raise ValueError(f"tokenizer.json holds a {model.get('type')} model, not BPE")
                index = model["vocab"]
                merges = [m.split() if isinstance(m, str) else list(m) for m in model["merges"]]
            tokens = sorted(index, key=index.get)
            if [index[t] for t in tokens] != list(range(len(tokens))):
                raise ValueError("token ids are not 0..N-1")
            if any(len(m) != 2 for m in merges):
                raise ValueError("a merge is not two symbols")
            return cls(tuple(tokens), tuple(tuple(m) for m in merges))  # type: ignore[arg-type]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, AttributeError, TypeError, InputError) as e:
            raise ModelLoadError(f"{folder}: unreadable tokenizer files: {str(e).splitlines()[0]}") from None


@functools.lru_cache(maxsize=1)
def _clip_vocabulary() -> Vocabulary:
    return Vocabulary(tuple(clip_vocab()), load_merges())


def table_vocabulary(vocabulary: Vocabulary | None, rows: int, where: str) -> Vocabulary | None:
    """``vocabulary`` (``None``: CLIP's full one) checked against a token table of ``rows`` rows.

    Raises:
        ModelLoadError: the sizes differ (``where`` names the model in the message).
    """
    if vocabulary is None and rows != VOCAB_SIZE:
        raise ModelLoadError(f"{where}: the text tower has {rows} token rows, not CLIP's {VOCAB_SIZE}, and no "
                             "vocab.json + merges.txt say which tokens they are")
    if vocabulary is not None and len(vocabulary) != rows:
        raise ModelLoadError(f"{where}: the tokenizer files have {len(vocabulary)} tokens, the text tower {rows} rows")
    return vocabulary


def _word_parts(word: str) -> list[str]:
    """A pre-token's byte symbols as BPE starts from them: the last one carries the end-of-word marker."""
    return list(word[:-1]) + [word[-1] + _END_OF_WORD]


# CLIP's pre-tokenisation: the special tokens, English contractions, runs of
# letters, single digits, runs of other non-space symbols. \p{L}/\p{N} are
# Unicode classes that the standard ``re`` module lacks, hence ``regex``.
_PRETOKENIZE = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_END_OF_WORD = "</w>"


class CLIPBPETokenizer:
    """CLIP's tokenizer: text -> ``[SOT] bpe-ids [EOT] 0 0 ...`` of a fixed context length.

    Tokenisation equals OpenAI CLIP's and ViCLIP's ``SimpleTokenizer`` (the
    ``ftfy`` and ``regex`` packages make the cleaning and the pattern exact).
    BPE results are cached per word, so repeated captions cost a dictionary
    look-up.

    Args:
        context_length: the length of every tokenised row (32 for ViCLIP, 77
            for CLIP).
        bpe_path: a ``bpe_simple_vocab_16e6.txt.gz`` merges file (default: the
            shipped one).
        vocabulary: a :class:`Vocabulary` instead (e.g. a trimmed one); ids then follow it.

    Example:
        >>> tok = CLIPBPETokenizer(context_length=32)
        >>> tok.encode("a red circle moves left")
        [320, 736, 7117, 6880, 1823]
    """

    _CACHE_LIMIT = 200_000

    def __init__(self, context_length: int = 32, bpe_path: str | Path | None = None, *,
                 vocabulary: Vocabulary | None = None):
        import regex

        if context_length < 2:
            raise InputError(f"context length must be at least 2 (start and end tokens), got {context_length}")
        self.context_length = int(context_length)
        if vocabulary is not None and bpe_path is not None:
            raise InputError("give a merges file or a vocabulary, not both")
        path = str(bpe_path) if bpe_path is not None else None
        self.encoder: dict[str, int] = clip_vocab(path) if vocabulary is None else vocabulary.encoder
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        merges = load_merges(path) if vocabulary is None else vocabulary.merges
        self.bpe_ranks: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.sot_id = self.encoder[SOT_TOKEN]
        self.eot_id = self.encoder[EOT_TOKEN]
        self._pattern = regex.compile(_PRETOKENIZE, regex.IGNORECASE)
        self._cache: dict[str, tuple[str, ...]] = {}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (49408 for CLIP's full vocabulary)."""
        return len(self.encoder)

    @staticmethod
    def clean(text: str) -> str:
        """CLIP's text normalisation: ftfy repair, HTML unescape (twice), whitespace collapsed, lower case."""
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return " ".join(text.split()).lower()

    def bpe(self, word: str) -> tuple[str, ...]:
        """Split one pre-token (already mapped to byte symbols) into BPE vocabulary entries.

        The pair of adjacent symbols with the lowest merge rank is merged
        everywhere it occurs, left to right, until no adjacent pair has a rank.
        """
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if word in (SOT_TOKEN, EOT_TOKEN):
            return (word,)
        result = apply_merges(_word_parts(word), self.bpe_ranks)
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = result
        return result

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without start/end tokens and without truncation."""
        if not isinstance(text, str):
            raise InputError(f"text to tokenise must be a string, got {type(text).__name__}")
        ids: list[int] = []
        for word in self.words(text):
            ids.extend(self.encoder[t] for t in self.bpe(word))
        return ids

    def words(self, text: str) -> list[str]:
        """``text`` cleaned and pre-tokenised, each piece mapped to byte symbols (what :meth:`bpe` takes)."""
        return ["".join(self.byte_encoder[b] for b in piece.encode("utf-8")) for piece in self._pattern.findall(self.clean(text))]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids: the start token is dropped, decoding stops at the end token (padding follows it)."""
        kept = []
        for i in (int(i) for i in ids):
            if i == self.eot_id:
                break
            if i != self.sot_id and i in self.decoder:
                kept.append(i)
        symbols = "".join(self.decoder[i] for i in kept)
        # The end-of-word marker is plain ASCII, so it survives the byte mapping and is replaced after it.
        raw = bytearray(self.byte_decoder[c] for c in symbols)
        return raw.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ").strip()

    def token_rows(self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True) -> list[list[int]]:
        """``[SOT] ids [EOT]`` per text, cut to the context length (unpadded).

        Raises:
            InputError: a text is too long and ``truncate`` is false.
        """
        if isinstance(texts, str):
            texts = [texts]
        length = int(context_length or self.context_length)
        rows = []
        for text in texts:
            row = [self.sot_id, *self.encode(text), self.eot_id]
            if len(row) > length:
                if not truncate:
                    raise InputError(f"text {text[:60]!r} has {len(row)} tokens; the context length is {length}")
                # CLIP's rule: keep the first tokens, the end token takes the last slot.
                row = row[:length]
                row[-1] = self.eot_id
            rows.append(row)
        return rows

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True):
        """Tokenise to a ``torch.long`` tensor ``[N, context_length]``, zero-padded.

        Args:
            texts: one text or a list of texts.
            context_length: override the tokenizer's context length.
            truncate: cut over-long texts (end token in the last slot); when
                false, an over-long text is an error.

        Returns:
            ``torch.LongTensor`` of shape ``[N, context_length]``.

        Raises:
            InputError: a text is not a string, or too long with ``truncate=False``.
        """
        import torch

        length = int(context_length or self.context_length)
        rows = self.token_rows(texts, length, truncate)
        out = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out
