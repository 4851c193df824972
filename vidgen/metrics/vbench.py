"""VBench's two ViCLIP dimensions, ``overall_consistency`` and ``temporal_style``, computed as VBench computes them.

Both are the cosine between ViCLIP-L/14's video embedding and the embedding of
the raw prompt (VBench's ``get_vid_features`` / ``get_text_features``), with
VBench's frames and transform (:data:`vidgen.metrics.preprocess.PRESETS`
``"vbench"``), in fp32. They differ only in the prompts each is computed over:

* standard mode (``full_info``: VBench's ``VBench_full_info.json``): each
  dimension over its own prompts' videos ``{prompt}-{0..4}.mp4`` (93 prompts for
  ``overall_consistency``, 100 others for ``temporal_style``), missing videos
  reported; these are the numbers VBench's leaderboard publishes;
* custom mode (no ``full_info``): every video of the folder for both dimensions,
  its prompt the file name without ``-{index}`` (unlike VBench, which also takes
  a bare file name as the prompt, vidgen lists such files as skipped: a missing
  index usually means the wrong folder), or the prompt a prompts file gives
  (VBench's ``--prompt_file`` JSON, or a ``.jsonl``/``.csv`` of ``{video, caption}``).

Results are written in VBench's layout, so its scripts read them:
``{name}_eval_results.json`` holds, per dimension, ``[mean, [{"video_path",
"video_results"}, ...]]`` and ``{name}_full_info.json`` the prompts and videos
of each dimension. The min-max normalised score VBench's final-score script
computes is in vidgen's own report (a file of its own in the folder would break
that script, which reads every JSON object there as results).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.errors import DataError, InputError
from vidgen.io.text import read_text
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
        text = read_text(path)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{str(path)!r} is not JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise DataError(f"{str(path)!r} must map video files to prompts, as VBench's --prompt_file does")
        return {Path(k).name: v for k, v in data.items()}
    return {item.video.name: item.caption for item in read_pairs(path)}


@dataclass
class Collected:
    """What a VBench folder offers: the videos to score, which dimension each counts for, what was skipped."""

    items: list[ScoreItem]
    dimensions: dict[str, list[str]]  # dimension -> the video paths it is computed over
    unmatched: list[Unmatched]
    missing: list[str]  # standard mode: videos VBench's prompt list wants that the folder lacks


def collect(folder: str | Path, prompts_file: str | None = None, full_info: str | None = None) -> Collected:
    """The videos of a VBench folder with their prompts, and the files that are not such videos.

    Args:
        folder: the sampled videos.
        prompts_file: custom mode: file name -> prompt (else the prompt is in the name).
        full_info: standard mode: VBench's ``VBench_full_info.json`` (each prompt's dimensions).

    Raises:
        InputError: the folder does not exist or holds no video with a prompt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"VBench folder not found: {str(folder)!r}")
    if full_info:
        return _collect_standard(folder, full_info)
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
    every = [str(item.video) for item in items]
    return Collected(items, {dim: every for dim in DIMENSIONS}, unmatched, [])


def _collect_standard(folder: Path, full_info: str) -> Collected:
    """Standard mode: each dimension's prompts from VBench's prompt list, videos ``{prompt}-{0..4}{suffix}``."""
    path = Path(full_info)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise InputError(f"VBench prompt list not found: {str(path)!r}") from None
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{str(path)!r} is not JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "prompt_en" in e for e in entries):
        raise DataError(f"{str(path)!r} is not VBench's full_info list of {{prompt_en, dimension}}")
    names = {p.name: p for p in folder.iterdir() if p.is_file()}
    items: dict[str, ScoreItem] = {}
    dimensions: dict[str, list[str]] = {dim: [] for dim in DIMENSIONS}
    missing = []
    for entry in entries:
        wanted = [dim for dim in DIMENSIONS if dim in entry.get("dimension", [])]
        if not wanted:
            continue
        for index in range(5):  # VBench samples 5 videos per prompt
            found = next((names[n] for n in (file_name(entry["prompt_en"], index, s) for s in SUFFIXES) if n in names), None)
            if found is None:
                missing.append(file_name(entry["prompt_en"], index))
                continue
            items.setdefault(str(found), ScoreItem(found, entry["prompt_en"], "VBench prompt list"))
            for dim in wanted:
                dimensions[dim].append(str(found))
    if not items:
        raise InputError(f"none of the videos {str(path)!r} lists for {', '.join(DIMENSIONS)} is in {str(folder)!r}")
    return Collected(list(items.values()), dimensions, [], missing)


def results(scores: dict[str, float], dimensions: dict[str, list[str]]) -> dict[str, Any]:
    """VBench's ``eval_results``: per dimension ``[mean, [{"video_path", "video_results"}, ...]]`` over the videos
    of that dimension that were scored (``scores``: video path -> cosine).

    Raises:
        DataError: a dimension with no scored video.
    """
    out = {}
    for dim in DIMENSIONS:
        rows = [(path, scores[path]) for path in dimensions[dim] if path in scores]
        if not rows:
            raise DataError(f"no video of {dim} could be scored")
        out[dim] = [sum(score for _, score in rows) / len(rows),
                    [{"video_path": path, "video_results": score} for path, score in rows]]
    return out


def normalized(eval_results: dict[str, Any]) -> dict[str, float]:
    """VBench's normalised dimension scores: ``(mean - min) / (max - min) * weight``."""
    out = {}
    for dim in DIMENSIONS:
        low, high = NORMALIZE[dim]
        out[dim] = (eval_results[dim][0] - low) / (high - low) * WEIGHT[dim]
    return out


def write(out_dir: str | Path, name: str, collected: Collected, eval_results: dict[str, Any],
          overwrite: bool = False) -> list[Path]:
    """Write ``{name}_eval_results.json`` and ``{name}_full_info.json`` (each scored video's prompt and dimensions)
    into ``out_dir``.

    Raises:
        OutputError: a file exists without ``overwrite``, or the folder cannot be written.
    """
    from vidgen.io.files import atomic_write_text, ensure_writable_dir

    out = ensure_writable_dir(out_dir)
    scored = {row["video_path"] for dim in DIMENSIONS for row in eval_results[dim][1]}
    info = [{"prompt_en": item.caption, "dimension": [d for d in DIMENSIONS if str(item.video) in collected.dimensions[d]],
             "video_list": [str(item.video)]} for item in collected.items if str(item.video) in scored]
    files = {f"{name}_eval_results.json": eval_results, f"{name}_full_info.json": info}
    return [atomic_write_text(out / file, json.dumps(data, indent=4, ensure_ascii=False) + "\n", overwrite=overwrite)
            for file, data in files.items()]


def output_paths(out_dir: str | Path, name: str) -> list[Path]:
    """The files :func:`write` writes (checked before any work)."""
    return [Path(out_dir) / f"{name}_{part}.json" for part in ("eval_results", "full_info")]
