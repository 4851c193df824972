"""VBench's two ViCLIP dimensions, ``overall_consistency`` and ``temporal_style``, computed as VBench computes them.

Both are the cosine between ViCLIP-L/14's video embedding and the embedding of
the raw prompt (VBench's ``get_vid_features`` / ``get_text_features``), with
VBench's frames and transform (:data:`vidgen.metrics.preprocess.PRESETS`
``"vbench"``): they differ only in which prompts VBench's standard suite feeds
them. A VBench folder holds ``{prompt}-{index}.mp4`` files (``.gif`` too); the
prompt is the file name without ``-{index}``, as VBench's custom-input mode reads
it, unless a prompts file maps file names to prompts (VBench's ``--prompt_file``
JSON, or a ``.jsonl``/``.csv`` of ``{video, caption}``).

Results are written in VBench's layout, so its scripts read them:
``{name}_eval_results.json`` holds, per dimension, ``[mean, [{"video_path",
"video_results"}, ...]]``; ``{name}_full_info.json`` the prompt of every video;
and ``{name}_normalized.json`` the min-max normalised score VBench's final-score
script computes for each dimension.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.errors import DataError, InputError
from vidgen.metrics.inputs import ScoreItem, read_pairs

DIMENSIONS = ("overall_consistency", "temporal_style")
# VBench's scripts/constant.py NORMALIZE_DIC (min, max) and DIM_WEIGHT for these dimensions.
NORMALIZE = {"overall_consistency": (0.0, 0.364), "temporal_style": (0.0, 0.364)}
WEIGHT = {"overall_consistency": 1.0, "temporal_style": 1.0}
SUFFIXES = (".mp4", ".gif")
_INDEX = re.compile(r"-\d+$")


def prompt_from_name(name: str) -> str | None:
    """The prompt of a VBench file name ``{prompt}-{index}.mp4``; ``None`` when it has no ``-{index}``."""
    stem = Path(name).stem
    return _INDEX.sub("", stem) if _INDEX.search(stem) else None


def file_name(prompt: str, index: int, suffix: str = ".mp4") -> str:
    """VBench's name for sample ``index`` of ``prompt`` (the inverse of :func:`prompt_from_name`).

    Raises:
        InputError: a prompt that cannot be a file name (a path separator, or empty).
    """
    if not prompt.strip() or "/" in prompt or "\0" in prompt:
        raise InputError(f"prompt {prompt!r} cannot be a VBench file name")
    return f"{prompt}-{index}{suffix}"


@dataclass
class Unmatched:
    """A file of the folder that is not a VBench video."""

    path: str
    reason: str


def _prompt_map(path: str | Path) -> dict[str, str]:
    """File name -> prompt from VBench's prompt file (``{path or name: prompt}`` JSON) or a table of pairs."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file not found: {str(path)!r}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{str(path)!r} is not JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise DataError(f"{str(path)!r} must map video files to prompts, as VBench's --prompt_file does")
        return {Path(k).name: v for k, v in data.items()}
    return {item.video.name: item.caption for item in read_pairs(path)}


def collect(folder: str | Path, prompts_file: str | None = None) -> tuple[list[ScoreItem], list[Unmatched]]:
    """The videos of a VBench folder with their prompts, and the files that are not such videos.

    Raises:
        InputError: the folder does not exist or holds no video with a prompt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"VBench folder not found: {str(folder)!r}")
    mapping = _prompt_map(prompts_file) if prompts_file else {}
    items, unmatched = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() not in SUFFIXES:
            unmatched.append(Unmatched(str(path), f"not a video VBench reads ({', '.join(SUFFIXES)})"))
            continue
        prompt = mapping.get(path.name) if mapping else prompt_from_name(path.name)
        if not prompt:
            reason = "not in the prompts file" if mapping else "name is not {prompt}-{index}" + path.suffix
            unmatched.append(Unmatched(str(path), reason))
            continue
        items.append(ScoreItem(path, prompt, "prompts file" if mapping else "file name"))
    if not items:
        raise InputError(f"no VBench video in {str(folder)!r} ({len(unmatched)} files skipped: "
                         f"{unmatched[0].reason if unmatched else 'the folder is empty'})")
    return items, unmatched


def results(rows: list[tuple[str, float]]) -> dict[str, Any]:
    """VBench's ``eval_results`` for per-video ``(path, cosine)``: every dimension, ``[mean, per-video list]``."""
    if not rows:
        raise DataError("no video could be scored")
    mean = sum(score for _, score in rows) / len(rows)
    per_video = [{"video_path": path, "video_results": score} for path, score in rows]
    return {dim: [mean, per_video] for dim in DIMENSIONS}


def normalized(eval_results: dict[str, Any]) -> dict[str, float]:
    """VBench's normalised dimension scores: ``(mean - min) / (max - min) * weight``."""
    out = {}
    for dim in DIMENSIONS:
        low, high = NORMALIZE[dim]
        out[dim] = (eval_results[dim][0] - low) / (high - low) * WEIGHT[dim]
    return out


def write(out_dir: str | Path, name: str, items: list[ScoreItem], eval_results: dict[str, Any],
          overwrite: bool = False) -> list[Path]:
    """Write ``{name}_eval_results.json``, ``{name}_full_info.json`` and ``{name}_normalized.json`` into ``out_dir``.

    Raises:
        OutputError: a file exists without ``overwrite``, or the folder cannot be written.
    """
    from vidgen.io.files import atomic_write_text, ensure_writable_dir

    out = ensure_writable_dir(out_dir)
    info = [{"prompt_en": item.caption, "dimension": list(DIMENSIONS), "video_list": [str(item.video)]} for item in items]
    files = {f"{name}_eval_results.json": eval_results, f"{name}_full_info.json": info,
             f"{name}_normalized.json": normalized(eval_results)}
    return [atomic_write_text(out / file, json.dumps(data, indent=4, ensure_ascii=False) + "\n", overwrite=overwrite)
            for file, data in files.items()]


def output_paths(out_dir: str | Path, name: str) -> list[Path]:
    """The files :func:`write` writes (checked before any work)."""
    return [Path(out_dir) / f"{name}_{part}.json" for part in ("eval_results", "full_info", "normalized")]
