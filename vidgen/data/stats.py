"""Counts and histograms of InternVid rows: durations, scores, caption lengths; a PNG plot.

Histograms have fixed bins (chosen for InternVid's ranges: most clips last a
few seconds to a minute, aesthetic scores lie in 4-6, UMT scores in 0.3-0.4),
so the statistics of any file fit in a few kilobytes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vidgen.extras import require
from vidgen.data.readers import RowReport, iter_rows
from vidgen.data.rows import Row
from vidgen.io.files import atomic_output

_FLUSH = 1 << 16


@dataclass
class Histogram:
    """A fixed-bin histogram with exact count, mean, min and max, filled in chunks.

    Attributes:
        name: what is counted (``"duration (s)"``).
        edges: bin edges; values below the first or at/above the last edge are
            counted in ``below``/``above``.
        counts: one count per bin.
    """

    name: str
    edges: np.ndarray
    counts: np.ndarray = field(init=False)
    below: int = 0
    above: int = 0
    n: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    _pending: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def add(self, value: float) -> None:
        """Count one value."""
        self._pending.append(value)
        if len(self._pending) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        """Fold the buffered values into the counts."""
        if not self._pending:
            return
        values = np.asarray(self._pending, dtype=np.float64)
        self._pending = []
        self.n += len(values)
        self.total += float(values.sum())
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.below += int((values < self.edges[0]).sum())
        self.above += int((values >= self.edges[-1]).sum())
        inside = values[(values >= self.edges[0]) & (values < self.edges[-1])]
        self.counts += np.histogram(inside, bins=self.edges)[0]

    @property
    def mean(self) -> float | None:
        """The exact mean (``None`` when empty)."""
        return self.total / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        self.flush()
        return {
            "count": self.n,
            "mean": self.mean,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
            "edges": [float(e) for e in self.edges],
            "counts": self.counts.tolist(),
            "below": self.below,
            "above": self.above,
        }


def _edges(low: float, high: float, step: float) -> np.ndarray:
    return np.round(np.arange(low, high + step / 2, step), 6)


@dataclass
class RowStats:
    """Statistics of a rows file (see :func:`compute_stats`)."""

    rows: RowReport = field(default_factory=RowReport)
    duration: Histogram = field(default_factory=lambda: Histogram("clip duration (s)", _edges(0, 60, 1)))
    aesthetic: Histogram = field(default_factory=lambda: Histogram("aesthetic score", _edges(0, 10, 0.1)))
    umt: Histogram = field(default_factory=lambda: Histogram("UMT score", _edges(0, 0.6, 0.01)))
    caption_words: Histogram = field(default_factory=lambda: Histogram("caption length (words)", _edges(0, 50, 1)))
    missing_aesthetic: int = 0
    missing_umt: int = 0

    def add(self, row: Row) -> None:
        """Count one row."""
        self.duration.add(row.duration)
        self.caption_words.add(len(row.caption.split()))
        if row.aesthetic_score is None:
            self.missing_aesthetic += 1
        else:
            self.aesthetic.add(row.aesthetic_score)
        if row.umt_score is None:
            self.missing_umt += 1
        else:
            self.umt.add(row.umt_score)

    @property
    def histograms(self) -> tuple[Histogram, ...]:
        """The four histograms, in plot order."""
        return self.duration, self.aesthetic, self.umt, self.caption_words

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "rows": self.rows.to_dict(),
            "missing_aesthetic_score": self.missing_aesthetic,
            "missing_umt_score": self.missing_umt,
            "duration_s": self.duration.to_dict(),
            "aesthetic_score": self.aesthetic.to_dict(),
            "umt_score": self.umt.to_dict(),
            "caption_words": self.caption_words.to_dict(),
        }

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [self.rows.summary()]
        for hist in self.histograms:
            hist.flush()
            if hist.n:
                lines.append(f"  {hist.name}: mean {hist.mean:.4g}, min {hist.min:.4g}, max {hist.max:.4g} ({hist.n} rows)")
        if self.missing_aesthetic or self.missing_umt:
            lines.append(f"  missing scores: aesthetic {self.missing_aesthetic}, UMT {self.missing_umt}")
        return "\n".join(lines)


def compute_stats(rows: Iterable[Row], stats: RowStats | None = None) -> RowStats:
    """Fold ``rows`` (streamed) into :class:`RowStats`."""
    stats = stats if stats is not None else RowStats()
    for row in rows:
        stats.add(row)
    for hist in stats.histograms:
        hist.flush()
    return stats


def file_stats(path: str | os.PathLike, *, strict: bool = False) -> RowStats:
    """Statistics of a rows file, streamed.

    Raises:
        RowError: with ``strict``, the first malformed row.
        DataError: an unreadable file.
    """
    stats = RowStats()
    return compute_stats(iter_rows(path, strict=strict, report=stats.rows), stats)


def plot_stats(stats: RowStats, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Draw the four histograms into one PNG (written atomically).

    Raises:
        MissingExtraError: matplotlib is not installed.
        OutputError: the file exists without ``overwrite``.
    """
    require("matplotlib", "plotting row statistics")
    from matplotlib.figure import Figure  # the object API draws with Agg and leaves pyplot's backend alone

    fig = Figure(figsize=(11, 7), dpi=100)
    axes = fig.subplots(2, 2).ravel()
    for ax, hist in zip(axes, stats.histograms):
        hist.flush()
        ax.stairs(hist.counts, hist.edges, fill=True, alpha=0.8)
        ax.set_title(hist.name)
        ax.set_ylabel("rows")
        notes = [f"n={hist.n}"]
        if hist.n:
            notes.append(f"mean={hist.mean:.3g}")
        if hist.below or hist.above:
            notes.append(f"outside: {hist.below} below, {hist.above} above")
        ax.text(0.98, 0.95, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=8)
    fig.suptitle(f"{stats.rows.source}: {stats.rows.valid} rows")
    fig.tight_layout()
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
