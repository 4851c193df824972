"""What a model can read in a prompt: its word list (when its folder ships one) and its text encoder's length.

A model trained on a closed world (such as the shipped default model) carries the words it
was trained on in ``vocabulary.json`` (``{"words": [...], "describes": "..."}``). A
prompt with other words still renders, but the user is told once which words the
model does not know and what it can draw. Any model's tokenizer has a context
length; a longer prompt is cut, and the warning names the words that were dropped.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from vidgen.errors import ModelLoadError

logger = logging.getLogger("vidgen")

VOCABULARY_FILE = "vocabulary.json"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """The lower-case words of ``text``, in order (punctuation and digits dropped)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class ModelVocabulary:
    """The words a model was trained on, and a sentence saying what it can draw."""

    words: frozenset[str]
    describes: str = ""

    def unknown(self, prompt: str) -> list[str]:
        """The words of ``prompt`` the model never saw, each once, in prompt order."""
        seen: dict[str, None] = {}
        for word in words(prompt):
            if word not in self.words:
                seen.setdefault(word)
        return list(seen)

    @classmethod
    def from_texts(cls, texts: Iterable[str], describes: str = "") -> "ModelVocabulary":
        return cls(frozenset(w for text in texts for w in words(text)), describes)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / VOCABULARY_FILE
        path.write_text(json.dumps({"describes": self.describes, "words": sorted(self.words)}, indent=1) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ModelVocabulary | None":
        """The folder's vocabulary, or ``None`` when it ships none (real text encoders read any English).

        Raises:
            ModelLoadError: a malformed ``vocabulary.json``.
        """
        path = Path(folder) / VOCABULARY_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            vocabulary = cls(frozenset(str(w) for w in data["words"]), str(data.get("describes", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"malformed {str(path)!r}: {exc}") from None
        return vocabulary


class PromptWarnings:
    """Warns once per prompt about unknown words and about words cut by the text encoder's context."""

    def __init__(self, vocabulary: ModelVocabulary | None = None, model: str = "this model"):
        self.vocabulary, self.model = vocabulary, model
        self._done: set[tuple[str, bool]] = set()

    def check(self, prompts: Sequence[str], tokenizer, known_words: bool = True) -> None:
        """Warn about ``prompts`` not seen before: unknown words (with ``known_words``) and words past the context."""
        for prompt in prompts:
            if not prompt or (prompt, known_words) in self._done:
                continue
            self._done.add((prompt, known_words))
            unknown = self.vocabulary.unknown(prompt) if self.vocabulary is not None and known_words else []
            if unknown:
                logger.warning(
                    "%s does not know the word%s %s: it knows only %s. It will still render the prompt; for other "
                    "subjects, sample with your own weights (--model DIR, see docs/weights.md)",
                    self.model, "s" * (len(unknown) > 1), ", ".join(map(repr, unknown)),
                    self.vocabulary.describes or "the words it was trained on")
            dropped = dropped_words(tokenizer, prompt)
            if dropped:
                logger.warning("prompt longer than the text encoder's %d tokens; dropped: %r",
                               tokenizer.model_max_length, dropped)


def dropped_words(tokenizer, prompt: str) -> str:
    """The words at the end of ``prompt`` that do not fit the tokenizer's context, whole (a word cut in the
    middle counts as dropped); ``""`` when the prompt fits."""
    def fits(text: str) -> bool:
        return len(tokenizer(text, truncation=False).input_ids) <= tokenizer.model_max_length

    if fits(prompt):
        return ""
    ends = [m.end() for m in re.finditer(r"\S+", prompt)]
    lo, hi = 0, len(ends)  # the first lo words fit, the first hi do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(prompt[: ends[mid - 1]]) else (lo, mid)
    return prompt[ends[lo - 1] if lo else 0 :].strip()
