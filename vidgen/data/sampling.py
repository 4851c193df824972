"""Diversity sampling of InternVid rows, as InternVid builds its 10M-FLT subset.

Each clip is weighted 1 / (number of clips of its YouTube video) and clips are
drawn without replacement (InternVid, arXiv 2307.06942, Sec. 3.2), so long
videos with hundreds of clips do not crowd out the rest. The draw is the
Efraimidis-Spirakis scheme (each item gets the key ``u ** (1 / w)``; the
``target`` largest keys win), which has the distribution of successive
weighted draws without replacement and streams: memory holds one count per
video and ``target`` keys, never the rows.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from vidgen.data.readers import RowReport, RowWriter, iter_rows
from vidgen.errors import InputError

INTERNVID_SEED = 42  # the seed InternVid's 10M-FLT sampling used (FORMATS.md)
_CHUNK = 1 << 14


def _check_target(target: int) -> None:
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0:
        raise InputError(f"target count must be a non-negative integer, got {target!r}")


def diversity_select(video_ids: Callable[[], Iterable[str]], target: int, seed: int = INTERNVID_SEED) -> tuple[set[int], int, int]:
    """Which rows a diversity sample keeps, by position, streaming over the video IDs twice.

    Args:
        video_ids: called to get a fresh iterable of each row's video ID, in
            row order (the same order on both calls).
        target: how many rows to keep (all of them when there are fewer).
        seed: the random seed; the same seed and rows give the same sample.

    Returns:
        ``(positions, rows, videos)``: the 0-based positions of the kept rows,
        the number of rows and of distinct videos.

    Raises:
        InputError: a negative target.
    """
    _check_target(target)
    clips_per_video: Counter[str] = Counter(video_ids())
    total = sum(clips_per_video.values())
    if target >= total:
        return set(range(total)), total, len(clips_per_video)
    rng = np.random.default_rng(seed)
    heap: list[tuple[float, int]] = []  # min-heap of the `target` largest keys seen
    position = 0

    def take(ids: list[str]) -> None:
        nonlocal position
        # log of the key u ** (1/w) with w = 1/count: count * log(u); 1 - random() lies in (0, 1].
        keys = np.log1p(-rng.random(len(ids))) * np.fromiter((clips_per_video[v] for v in ids), np.float64, len(ids))
        if target == 0:
            position += len(ids)
            return
        floor = heap[0][0] if len(heap) >= target else -np.inf
        for offset in np.flatnonzero(keys > floor):
            item = (float(keys[offset]), position + int(offset))
            if len(heap) < target:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
            if len(heap) >= target:
                floor = heap[0][0]
        position += len(ids)

    buf: list[str] = []
    for vid in video_ids():
        buf.append(vid)
        if len(buf) >= _CHUNK:
            take(buf)
            buf = []
    if buf:
        take(buf)
    return {pos for _, pos in heap}, total, len(clips_per_video)


def diversity_sample(video_ids: Sequence[str], target: int, seed: int = INTERNVID_SEED) -> list[int]:
    """Positions (sorted) of a diversity sample of an in-memory list of video IDs (see :func:`diversity_select`)."""
    positions, _, _ = diversity_select(lambda: video_ids, target, seed)
    return sorted(positions)


@dataclass
class SampleReport:
    """The outcome of :func:`sample_file`."""

    rows: RowReport = field(default_factory=RowReport)
    videos: int = 0
    kept: int = 0
    target: int = 0
    seed: int = INTERNVID_SEED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"rows": self.rows.to_dict(), "videos": self.videos, "kept": self.kept, "target": self.target, "seed": self.seed}

    def summary(self) -> str:
        """One line for the terminal."""
        return (f"kept {self.kept} of {self.rows.valid} valid rows from {self.videos} videos "
                f"(target {self.target}, seed {self.seed}; {self.rows.bad} malformed)")


def sample_file(src: str | os.PathLike, dst: str | os.PathLike, target: int, *, seed: int = INTERNVID_SEED,
                strict: bool = False, overwrite: bool = False) -> SampleReport:
    """Diversity-sample ``target`` rows of ``src`` into ``dst``, in their original order.

    Reads ``src`` three times (clips per video, the draw, the writing) and
    holds only per-video counts and the kept positions in memory.

    Raises:
        InputError: a negative target.
        RowError: with ``strict``, the first malformed row (nothing is written).
        DataError: an unreadable input or a bad output format.
        OutputError: ``dst`` exists without ``overwrite``.
    """
    _check_target(target)

    def video_ids() -> Iterable[str]:
        return (row.youtube_id for row in iter_rows(src, strict=strict, report=RowReport(log=False)))

    keep, _, videos = diversity_select(video_ids, target, seed)
    report = SampleReport(videos=videos, target=target, seed=seed)
    with RowWriter(dst, overwrite=overwrite) as writer:
        for position, row in enumerate(iter_rows(src, strict=strict, report=report.rows)):
            if position in keep:
                writer.write(row)
    report.kept = writer.count
    return report
