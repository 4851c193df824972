"""What ``vidgen score`` scores: video files, folders, or tables of ``{video, caption}``, each paired with its caption.

Caption sources, strongest first: a table row (``.jsonl``/``.csv`` given as a
video source, or ``--captions``), then ``--prompt``, then the ``.yaml`` that
``vidgen sample`` writes beside each video (its ``prompts`` entry). A video
path that does not exist is kept: it is reported as skipped when scored, so
one bad path never stops a run.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from vidgen.errors import DataError, InputError
from vidgen.io.text import json_value, read_text, text_lines

TABLE_SUFFIXES = (".jsonl", ".csv")
VIDEO_COLUMNS = ("video", "path", "video_path", "file", "filename")
CAPTION_COLUMNS = ("caption", "Caption", "text", "prompt")


@dataclass
class ScoreItem:
    """One video to score and the caption it is scored against (``None`` when none is known)."""

    video: Path
    caption: Optional[str] = None
    caption_source: Optional[str] = None


def _pick(columns: list[str], wanted: tuple[str, ...], path: Path, what: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise DataError(f"{str(path)!r} has no {what} column (expected one of {', '.join(wanted)}; found {', '.join(columns) or 'none'})")


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` of a .jsonl or .csv table."""
    if not path.is_file():
        raise InputError(f"table not found: {str(path)!r}")
    with path.open("rb") as f:
        lines = text_lines(f, str(path))
        if path.suffix.lower() == ".csv":
            for lineno, row in enumerate(csv.DictReader(lines), 2):
                yield lineno, row
            return
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            yield lineno, json_value(line, f"{str(path)!r} line {lineno}", DataError, want_object=True)


def read_pairs(path: str | os.PathLike) -> list[ScoreItem]:
    """``{video, caption}`` rows of a .jsonl/.csv; relative video paths resolve against the table's folder.

    Raises:
        DataError: a missing column, a malformed row or an empty caption.
        InputError: the file does not exist.
        TextEncodingError: the file is not UTF-8.
    """
    path = Path(path)
    items: list[ScoreItem] = []
    video_col = caption_col = None
    for lineno, row in _rows(path):
        if video_col is None:
            video_col = _pick(list(row), VIDEO_COLUMNS, path, "video")
            caption_col = _pick(list(row), CAPTION_COLUMNS, path, "caption")
        video, caption = row.get(video_col), row.get(caption_col)
        if not isinstance(video, str) or not video.strip():
            raise DataError(f"{str(path)!r} line {lineno}: empty or missing {video_col!r}")
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{str(path)!r} line {lineno}: empty or missing {caption_col!r}")
        video_path = Path(video)
        if not video_path.is_absolute():
            video_path = path.parent / video_path
        items.append(ScoreItem(video_path, caption.strip(), f"{path.name}:{lineno}"))
    if video_col is None:
        raise DataError(f"{str(path)!r} holds no rows")
    return items


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty lines of a text file (``#`` comments skipped).

    Raises:
        InputError: the file does not exist.
        TextEncodingError: the file is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"captions file not found: {str(path)!r}")
    lines = [line.strip() for line in read_text(path).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def sidecar_caption(video: Path) -> Optional[str]:
    """The prompt in the ``.yaml`` that ``vidgen sample`` writes beside a video, if there is one."""
    from omegaconf import OmegaConf

    sidecar = video.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    try:
        data = OmegaConf.to_container(OmegaConf.load(sidecar))
    except Exception:  # any YAML problem only means "no caption here"; the video is then reported as uncaptioned
        return None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if isinstance(prompts, list) and len(prompts) == 1 and isinstance(prompts[0], str) and prompts[0].strip():
        return prompts[0].strip()
    return None


def expand_sources(sources: list[str]) -> list[ScoreItem]:
    """Video files, folders (their video files, sorted, not recursive), pair tables and story
    folders (each clip with its own caption from ``story.jsonl``), in the order given."""
    from vidgen.io.video import is_video_file
    from vidgen.metrics.story import is_story_folder, read_story_doc

    items: list[ScoreItem] = []
    for source in sources:
        path = Path(source)
        if path.suffix.lower() in TABLE_SUFFIXES and not path.is_dir():
            items.extend(read_pairs(path))
        elif is_story_folder(path):
            items.extend(ScoreItem(path / clip, caption, "story.jsonl") for caption, clip, _, _ in read_story_doc(path))
        elif path.is_dir():
            items.extend(ScoreItem(p) for p in sorted(path.iterdir()) if p.is_file() and is_video_file(p))
        else:
            items.append(ScoreItem(path))
    return items


def collect_items(
    sources: list[str],
    prompts: list[str] | None = None,
    captions: str | None = None,
    retrieve: bool = False,
) -> tuple[list[ScoreItem], list[str]]:
    """Resolve what to score.

    Args:
        sources: video files, folders, or .jsonl/.csv tables of pairs.
        prompts: ``--prompt`` texts: one caption for every video (scoring), or
            candidate texts (retrieval).
        captions: ``--captions`` file: a .jsonl/.csv of pairs (matched by path,
            then by file name), or a .txt with one caption per video in order
            (retrieval: one candidate per line).
        retrieve: rank candidate texts instead of scoring fixed pairs.

    Returns:
        ``(items, candidate texts)``; candidates are empty unless ``retrieve``.

    Raises:
        InputError: no videos, several prompts without ``retrieve``, a .txt whose
            line count does not match, or nothing to retrieve among.
        DataError: a malformed captions table.
    """
    prompts = [p.strip() for p in (prompts or []) if p and p.strip()]
    items = expand_sources(sources)
    if not items:
        raise InputError(f"no videos found in {', '.join(map(repr, sources)) or 'the arguments'}")
    if len(prompts) > 1 and not retrieve:
        raise InputError(f"{len(prompts)} prompts given; one prompt scores every video (use --retrieve to rank several)")
    lines: list[str] = []
    if captions:
        if Path(captions).suffix.lower() in TABLE_SUFFIXES:
            table = read_pairs(captions)
            by_path = {os.path.normpath(str(p.video.resolve())): p for p in table}
            by_name = {p.video.name: p for p in table}
            for item in items:
                if item.caption is None:
                    match = by_path.get(os.path.normpath(str(item.video.resolve()))) or by_name.get(item.video.name)
                    if match:
                        item.caption, item.caption_source = match.caption, match.caption_source
        else:
            lines = read_text_lines(captions)
            if not retrieve:
                if len(lines) != len(items):
                    raise InputError(f"captions file {captions!r} has {len(lines)} captions for {len(items)} videos")
                for item, line in zip(items, lines):
                    item.caption = item.caption or line
                    item.caption_source = item.caption_source or f"{Path(captions).name}:{line[:20]}"
                lines = []
    for item in items:
        if item.caption is None and prompts and not retrieve:
            item.caption, item.caption_source = prompts[0], "--prompt"
        if item.caption is None:
            found = sidecar_caption(item.video)
            if found:
                item.caption, item.caption_source = found, item.video.with_suffix(".yaml").name
    candidates: list[str] = []
    if retrieve:
        candidates = list(dict.fromkeys(prompts + lines + [i.caption for i in items if i.caption]))
        if not candidates:
            raise InputError("--retrieve needs texts to rank: give --prompt (repeatable), --captions, or captioned videos")
    elif all(item.caption is None for item in items):
        raise InputError("no caption for any video: pass --prompt TEXT or --captions FILE")
    return items, candidates
