"""Interleaved video-text items in the style of InternVid-ICL.

An item is the clips of one video in temporal order, each followed by its
caption: ``[clip, caption, clip, caption, ...]`` (InternVid, arXiv 2307.06942,
Sec. 3.3). Each clip is dropped with probability ``drop`` (0.3 in the paper)
so the model sees more text context; its caption stays. Variants: ``asr``
adds each clip's ASR transcript after its caption (when rows carry one);
``concat`` joins two items of different videos into one.

Written as JSON lines, one list of segments per line:
``{"video": clip, "youtube_id": ..., "start": s, "end": s}``, ``{"text": caption}``
and ``{"text": asr, "kind": "asr"}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from vidgen.data.readers import RowReport
from vidgen.data.rows import Row
from vidgen.errors import InputError
from vidgen.io.files import atomic_output
from vidgen.io.text import json_value, text_lines

DEFAULT_DROP = 0.3  # InternVid-ICL's clip drop probability
VARIANTS = ("single", "asr", "concat")
ASR_FIELDS = ("ASR", "asr", "Asr", "transcript", "Transcript")


def row_asr(row: Row) -> str | None:
    """The row's ASR transcript from its extra columns (see :data:`ASR_FIELDS`), or ``None``."""
    for name in ASR_FIELDS:
        value = row.extra.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@dataclass
class InterleaveReport:
    """What :func:`build_items` made."""

    rows: RowReport = field(default_factory=RowReport)
    items: int = 0
    videos: int = 0
    videos_too_few_clips: int = 0
    clips_kept: int = 0
    clips_dropped: int = 0
    unpaired: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {k: (v.to_dict() if isinstance(v, RowReport) else v) for k, v in self.__dict__.items()}

    def summary(self) -> str:
        """One line for the terminal."""
        dropped = self.clips_dropped / max(1, self.clips_kept + self.clips_dropped)
        extra = f", {self.unpaired} items left unpaired" if self.unpaired else ""
        return (f"{self.items} items from {self.videos} videos ({self.videos_too_few_clips} with too few clips skipped); "
                f"{self.clips_kept} clips kept, {self.clips_dropped} dropped ({dropped:.1%}){extra}")


def _clip_ref(row: Row, clip_dir: str | None) -> str:
    return row.clip_name if clip_dir is None else os.path.join(clip_dir, row.clip_name)


def video_item(rows: list[Row], rng: np.random.Generator, *, drop: float = DEFAULT_DROP, asr: bool = False,
               clip_dir: str | None = None, report: InterleaveReport | None = None) -> list[dict[str, Any]]:
    """One interleaved item from the rows of one video (sorted here by start time).

    Each clip is kept with probability ``1 - drop``; if every clip falls, one
    (chosen at random) is kept, so an item always holds a video.
    """
    rows = sorted(rows, key=lambda r: (r.start, r.end))
    keep = rng.random(len(rows)) >= drop
    if not keep.any():
        keep[int(rng.integers(len(rows)))] = True
    item: list[dict[str, Any]] = []
    for row, kept in zip(rows, keep):
        if kept:
            item.append({"video": _clip_ref(row, clip_dir), "youtube_id": row.youtube_id, "start": row.start, "end": row.end})
        item.append({"text": row.caption})
        transcript = row_asr(row) if asr else None
        if transcript is not None:
            item.append({"text": transcript, "kind": "asr"})
    if report is not None:
        report.clips_kept += int(keep.sum())
        report.clips_dropped += int(len(keep) - keep.sum())
    return item


def _group(rows: Iterable[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.youtube_id, []).append(row)
    return groups


def build_items(rows: Iterable[Row], *, variant: str = "single", drop: float = DEFAULT_DROP, seed: int = 0,
                min_clips: int = 2, max_clips: int | None = None, clip_dir: str | None = None,
                report: InterleaveReport | None = None) -> Iterator[list[dict[str, Any]]]:
    """Interleaved items from rows, grouped by video (held in memory: one entry per row).

    Args:
        rows: the rows.
        variant: ``"single"`` (one video per item), ``"asr"`` (with ASR
            transcripts after captions), ``"concat"`` (two videos per item).
        drop: probability of dropping each clip.
        seed: the random seed (same seed and rows, same items).
        min_clips: videos with fewer rows are skipped.
        max_clips: longer videos are split into consecutive items of at most this many clips.
        clip_dir: prefix for the clip references (default: the bare clip file name).
        report: counts, filled as items are made.

    Raises:
        InputError: an unknown variant or a bad probability or count.
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown interleave variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if not 0.0 <= drop < 1.0:
        raise InputError(f"clip drop probability must be in [0, 1), got {drop!r}")
    if min_clips < 1:
        raise InputError(f"min_clips must be at least 1, got {min_clips}")
    if max_clips is not None and max_clips < min_clips:
        raise InputError(f"max_clips={max_clips} is below min_clips={min_clips}")
    report = report if report is not None else InterleaveReport()
    rng = np.random.default_rng(seed)
    singles: list[tuple[str, list[dict[str, Any]]]] = []
    for youtube_id, group in _group(rows).items():
        if len(group) < min_clips:
            report.videos_too_few_clips += 1
            continue
        report.videos += 1
        group.sort(key=lambda r: (r.start, r.end))
        step = max_clips or len(group)
        for i in range(0, len(group), step):
            window = group[i : i + step]
            if len(window) < min_clips:
                continue
            item = video_item(window, rng, drop=drop, asr=variant == "asr", clip_dir=clip_dir, report=report)
            if variant == "concat":
                singles.append((youtube_id, item))
            else:
                report.items += 1
                yield item
    if variant != "concat":
        return
    # Pair items of different videos, in a shuffled order.
    order = rng.permutation(len(singles))
    waiting: list[tuple[str, list[dict[str, Any]]]] = []
    for position in order:
        youtube_id, item = singles[position]
        partner = next((i for i, (vid, _) in enumerate(waiting) if vid != youtube_id), None)
        if partner is None:
            waiting.append((youtube_id, item))
            continue
        _, first = waiting.pop(partner)
        report.items += 1
        yield first + item
    report.unpaired = len(waiting)


def write_items(items: Iterable[list[dict[str, Any]]], path: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Write items as JSON lines (atomically); returns how many.

    Raises:
        OutputError: ``path`` exists without ``overwrite``.
    """
    count = 0
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_items(path: str | os.PathLike) -> Iterator[list[dict[str, Any]]]:
    """Read interleaved items back (one JSON list per line).

    Raises:
        DataError: a line that is not a JSON list of segment objects.
    """
    from vidgen.errors import DataError

    if not os.path.isfile(path):
        raise DataError(f"interleaved items file not found: {str(path)!r}")
    with open(path, "rb") as f:
        for number, line in enumerate(text_lines(f, str(path)), start=1):
            if not line.strip():
                continue
            item = json_value(line, f"{str(path)}:{number}", DataError)
            if not isinstance(item, list) or not all(isinstance(s, dict) and ("video" in s or "text" in s) for s in item):
                raise DataError(f"{str(path)}:{number}: an item must be a list of {{'video': ...}} / {{'text': ...}} segments")
            yield item
