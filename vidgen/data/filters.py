"""Subsets of InternVid rows by threshold: aesthetic and UMT scores, duration, caption length, language.

InternVid-Aes-18M is the clips with aesthetic score >= 4; InternVid-10M-FLT
keeps the clips whose UMT score ranks in the top 30% (shared/FORMATS.md). A
top-percentile threshold needs the whole column's distribution; it is found
exactly in bounded memory (a count per distinct float32 score, or a two-level
radix histogram when there are too many distinct scores), so a 45 GB file
never has to fit in memory.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from vidgen.data.readers import RowReport, RowWriter, iter_rows
from vidgen.data.rows import Row
from vidgen.errors import InputError

# Where a language may be recorded (InternVid-10M-FLT-INFO's exact column name
# is unconfirmed, so the common spellings are all looked at).
LANGUAGE_FIELDS = ("language", "Language", "lang", "Lang", "video_language", "Video_Language")

# Distinct float32 scores counted exactly before switching to a radix histogram.
MAX_DISTINCT_SCORES = 1 << 20
_CHUNK = 1 << 16


@dataclass
class FilterSpec:
    """Which rows to keep. Every bound is inclusive; ``None`` means no bound.

    Attributes:
        min_aesthetic, max_aesthetic: aesthetic score bounds (Aes-18M: ``min_aesthetic=4``).
        min_umt, max_umt: UMT score bounds.
        umt_top: keep the rows whose UMT score ranks in this top fraction
            (10M-FLT: 0.3), computed over the rows that pass every other bound.
        min_duration, max_duration: clip length bounds in seconds.
        min_caption_words, max_caption_words: caption length bounds in words.
        languages: keep rows whose language (see :data:`LANGUAGE_FIELDS`) is one
            of these (case-insensitive); rows without a language are dropped.
    """

    min_aesthetic: float | None = None
    max_aesthetic: float | None = None
    min_umt: float | None = None
    max_umt: float | None = None
    umt_top: float | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    min_caption_words: int | None = None
    max_caption_words: int | None = None
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for low, high in (
            ("min_aesthetic", "max_aesthetic"),
            ("min_umt", "max_umt"),
            ("min_duration", "max_duration"),
            ("min_caption_words", "max_caption_words"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            for name, value in ((low, lo), (high, hi)):
                if value is not None and not math.isfinite(value):
                    raise InputError(f"{name} must be a finite number, got {value!r}")
            if lo is not None and hi is not None and lo > hi:
                raise InputError(f"{low}={lo} is above {high}={hi}: no row could pass")
        for name in ("min_duration", "max_duration", "min_caption_words", "max_caption_words"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"{name} must be >= 0, got {value!r}")
        if self.umt_top is not None and not 0 < self.umt_top <= 1:
            raise InputError(f"umt_top is a fraction in (0, 1] (0.3 keeps the top 30%), got {self.umt_top!r}")
        self.languages = tuple(lang.strip().lower() for lang in self.languages if lang.strip())

    @property
    def is_empty(self) -> bool:
        """Whether no bound is set (every valid row passes)."""
        return all(getattr(self, f) is None for f in self.__dataclass_fields__ if f != "languages") and not self.languages


def row_language(row: Row) -> str | None:
    """The row's language from its extra columns, lower-cased, or ``None``."""
    for name in LANGUAGE_FIELDS:
        value = row.extra.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return None


def _outside(value: float, low: float | None, high: float | None) -> bool:
    return (low is not None and value < low) or (high is not None and value > high)


def rejection(row: Row, spec: FilterSpec) -> str | None:
    """Why ``spec`` drops ``row`` (``"aesthetic score"``, ``"no UMT score"``...), or ``None`` if it passes.

    The UMT top fraction is not checked here (it needs a threshold computed
    over all rows, see :func:`top_fraction_threshold`).
    """
    if spec.min_aesthetic is not None or spec.max_aesthetic is not None:
        if row.aesthetic_score is None:
            return "no aesthetic score"
        if _outside(row.aesthetic_score, spec.min_aesthetic, spec.max_aesthetic):
            return "aesthetic score"
    if spec.min_umt is not None or spec.max_umt is not None or spec.umt_top is not None:
        if row.umt_score is None:
            return "no UMT score"
        if _outside(row.umt_score, spec.min_umt, spec.max_umt):
            return "UMT score"
    if _outside(row.duration, spec.min_duration, spec.max_duration):
        return "duration"
    if spec.min_caption_words is not None or spec.max_caption_words is not None:
        if _outside(len(row.caption.split()), spec.min_caption_words, spec.max_caption_words):
            return "caption length"
    if spec.languages:
        language = row_language(row)
        if language is None:
            return "no language"
        if language not in spec.languages:
            return "language"
    return None


def _sortable(values: np.ndarray) -> np.ndarray:
    """float32 -> uint32 keys whose unsigned order is the floats' order."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))


def _unsortable(key: int) -> float:
    key = np.uint32(key)
    bits = key & np.uint32(0x7FFFFFFF) if key & np.uint32(0x80000000) else ~key
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def _chunks(values: Iterable[float]) -> Iterator[np.ndarray]:
    buf: list[float] = []
    for value in values:
        buf.append(value)
        if len(buf) >= _CHUNK:
            yield np.asarray(buf, dtype=np.float32)
            buf = []
    if buf:
        yield np.asarray(buf, dtype=np.float32)


def _kth_from_top(counts: np.ndarray, k: int) -> tuple[int, int]:
    """Bin holding the k-th largest item (1-based) of a histogram, and that item's rank inside the bin."""
    from_top = np.cumsum(counts[::-1])
    position = int(np.searchsorted(from_top, k))  # first bin (from the top) where the running count reaches k
    above = int(from_top[position - 1]) if position else 0
    return len(counts) - 1 - position, k - above


def top_fraction_threshold(values: Callable[[], Iterable[float]], fraction: float) -> tuple[float, int]:
    """The smallest score among the top ``fraction`` of ``values``, exactly, in bounded memory.

    Keeping every value ``>= threshold`` (compared as float32) keeps the top
    ``ceil(fraction * n)`` values, plus any ties with the threshold.

    Args:
        values: called to get a fresh iterable of the scores (once, or twice
            when there are more than :data:`MAX_DISTINCT_SCORES` distinct ones).
        fraction: in (0, 1].

    Returns:
        ``(threshold, n)``; the threshold is ``-inf`` when there are no values.
    """
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    exact: Counter[float] | None = Counter()
    high = np.zeros(1 << 16, dtype=np.int64)
    n = 0
    for chunk in _chunks(values()):
        n += len(chunk)
        keys = _sortable(chunk)
        high += np.bincount(keys >> np.uint32(16), minlength=1 << 16)
        if exact is not None:
            distinct, counts = np.unique(chunk, return_counts=True)
            exact.update(dict(zip(distinct.tolist(), counts.tolist())))
            if len(exact) > MAX_DISTINCT_SCORES:
                exact = None  # too many distinct scores to count one by one: fall back on the radix histogram
    if n == 0:
        return -math.inf, 0
    k = max(1, math.ceil(fraction * n - 1e-9))
    if exact is not None:
        seen = 0
        for value in sorted(exact, reverse=True):
            seen += exact[value]
            if seen >= k:
                return float(value), n
    top_bin, rank = _kth_from_top(high, k)
    low = np.zeros(1 << 16, dtype=np.int64)
    for chunk in _chunks(values()):
        keys = _sortable(chunk)
        inside = keys[(keys >> np.uint32(16)) == top_bin]
        low += np.bincount(inside & np.uint32(0xFFFF), minlength=1 << 16)
    low_bin, _ = _kth_from_top(low, rank)
    return _unsortable((top_bin << 16) | low_bin), n


@dataclass
class FilterReport:
    """The outcome of :func:`filter_file`.

    Attributes:
        rows: what the read found (valid and malformed rows).
        kept: rows written.
        dropped: rows dropped, by reason.
        umt_threshold: the UMT score the top fraction starts at (when ``umt_top`` was set).
    """

    rows: RowReport
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    umt_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "rows": self.rows.to_dict(),
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "umt_threshold": self.umt_threshold,
        }

    def summary(self) -> str:
        """One line for the terminal."""
        drops = ", ".join(f"{n} {why}" for why, n in self.dropped.most_common()) or "none"
        threshold = f"; UMT threshold {self.umt_threshold:.6g}" if self.umt_threshold is not None else ""
        return f"kept {self.kept} of {self.rows.valid} valid rows (dropped: {drops}; {self.rows.bad} malformed){threshold}"


def filter_rows(rows: Iterable[Row], spec: FilterSpec, *, umt_threshold: float | None = None,
                dropped: Counter | None = None) -> Iterator[Row]:
    """The rows that pass ``spec`` (and score ``>= umt_threshold`` in float32, when given).

    Args:
        rows: rows to filter, streamed.
        spec: the bounds.
        umt_threshold: from :func:`top_fraction_threshold` when ``spec.umt_top`` is set.
        dropped: counts of dropped rows by reason, updated in place.
    """
    dropped = dropped if dropped is not None else Counter()
    threshold = None if umt_threshold is None else np.float32(umt_threshold)
    for row in rows:
        why = rejection(row, spec)
        if why is None and threshold is not None and np.float32(row.umt_score) < threshold:
            why = "UMT top fraction"
        if why is not None:
            dropped[why] += 1
            continue
        yield row


def filter_file(src: str | os.PathLike, dst: str | os.PathLike, spec: FilterSpec, *,
                strict: bool = False, overwrite: bool = False) -> FilterReport:
    """Stream the rows of ``src`` that pass ``spec`` into ``dst`` (any row format; written atomically).

    With ``spec.umt_top`` the file is read more than once: first for the
    scores' distribution, then to write.

    Raises:
        RowError: with ``strict``, the first malformed row (nothing is written).
        DataError: an unreadable input or a bad output format.
        OutputError: ``dst`` exists without ``overwrite``.
    """
    threshold = None
    if spec.umt_top is not None:
        def scores() -> Iterator[float]:
            for row in iter_rows(src, strict=strict, report=RowReport(log=False)):
                if rejection(row, spec) is None:
                    yield row.umt_score  # type: ignore[misc]

        threshold, _ = top_fraction_threshold(scores, spec.umt_top)
    report = FilterReport(rows=RowReport(), umt_threshold=threshold)
    with RowWriter(dst, overwrite=overwrite) as writer:
        rows = iter_rows(src, strict=strict, report=report.rows)
        report.kept = writer.write_all(filter_rows(rows, spec, umt_threshold=threshold, dropped=report.dropped))
    return report
