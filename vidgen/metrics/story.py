"""Continuity of stories: how visibly consecutive clips of a story folder join.

``pixel_change`` at a boundary is the mean absolute change across it divided by
the median frame-to-frame change inside the clips: 1 means the cut is no more
visible than ordinary motion. It needs no model of what the video shows; a
world whose objects a judge can track can add its own measures on top of
:func:`story_parts`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidgen.errors import DataError
from vidgen.io.text import read_text

STORY_DOC = "story.jsonl"


def is_story_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / STORY_DOC).is_file()


def read_story_doc(folder: str | Path) -> list[tuple[str, str, float, float]]:
    """``(caption, clip file, start, end)`` per clip of a story folder's ``story.jsonl``.

    Raises:
        DataError: the document is missing or malformed.
    """
    path = Path(folder) / STORY_DOC
    try:
        doc = json.loads(read_text(path).splitlines()[0])
    except (OSError, IndexError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read story document {str(path)!r}: {exc}") from None
    clips, caption = [], None
    for segment in doc if isinstance(doc, list) else []:
        if "text" in segment:
            caption = segment["text"]
        elif "video" in segment:
            if caption is None:
                raise DataError(f"{str(path)!r}: clip {segment['video']!r} has no caption before it")
            clips.append((caption, segment["video"], float(segment["start"]), float(segment["end"])))
            caption = None
    if not clips:
        raise DataError(f"{str(path)!r} holds no clips")
    return clips


def story_parts(folder: str | Path) -> tuple[list[str], list[np.ndarray], float]:
    """A written story folder (``vidgen story`` output) cut back into its clips.

    Returns:
        ``(captions, parts, scale)``: each clip's caption, its frames as they appear in the stitched
        ``story.mp4`` (uint8 ``[T, H, W, 3]``), and the video pixels per model pixel (the upscale factor).

    Raises:
        DataError: not a story folder; VideoError: an unreadable stitched video.
    """
    from vidgen.io.video import probe, read_frames

    folder = Path(folder)
    if not is_story_folder(folder):
        raise DataError(f"{str(folder)!r} is not a story folder (no {STORY_DOC})")
    clips = read_story_doc(folder)
    info = probe(folder / "story.mp4")
    video = read_frames(folder / "story.mp4")
    settings = {}
    if (folder / "settings.json").is_file():
        settings = json.loads(read_text(folder / "settings.json"))
    scale = info.width / settings["width"] if settings.get("width") else 1.0
    bounds = [int(round(start * info.fps)) for _, _, start, _ in clips] + [len(video)]
    return [c for c, *_ in clips], [video[a:b] for a, b in zip(bounds, bounds[1:])], scale


def _frame_changes(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def pixel_changes(parts: Sequence[np.ndarray]) -> list[float]:
    """The relative pixel change at each boundary between consecutive parts (uint8 ``[T, H, W, 3]`` each)."""
    inside = np.concatenate([_frame_changes(p) for p in parts if len(p) > 1] or [np.zeros(0, np.float32)])
    typical = float(np.median(inside)) if inside.size else math.nan
    out = []
    for a, b in zip(parts, parts[1:]):
        change = float(np.abs(b[0].astype(np.float32) - a[-1].astype(np.float32)).mean())
        out.append(change / typical if typical and typical > 0 else math.nan)
    return out


def median_finite(values: Sequence[float]) -> float:
    """The median of the finite values (NaN when there are none)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.median(finite)) if finite else math.nan


def story_continuity(folder: str | Path) -> dict[str, Any]:
    """Each boundary's relative pixel change in a written story folder, and their median.

    Raises:
        DataError: not a story folder; VideoError: an unreadable stitched video.
    """
    _, parts, _ = story_parts(folder)
    changes = pixel_changes(parts)
    return {"folder": str(folder), "boundaries": [{"pixel_change": c} for c in changes],
            "median_pixel_change": median_finite(changes)}
