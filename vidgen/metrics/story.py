"""Continuity of stories: how smoothly consecutive clips join, and whether each clip does what its caption says.

Two boundary measures, both on the stitched video:

* ``jump_px``: the toy-world judge's object centroid in the last frame before a
  boundary vs the first frame after it, in model pixels (NaN when no object is
  found). A continuous story jumps by about one frame's motion.
* ``pixel_change``: mean absolute change across the boundary divided by the
  median frame-to-frame change inside the clips (1 means the cut is no more
  visible than ordinary motion), which needs no judge.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidgen.errors import DataError

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
        doc = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
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


def _pixel_changes(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def boundary_measures(parts: Sequence[np.ndarray], scale: float = 1.0) -> list[dict[str, float]]:
    """Jump (model pixels) and relative pixel change at each boundary between consecutive parts.

    Args:
        parts: each clip's frames as they appear in the stitched video (uint8 ``[T, H, W, 3]``).
        scale: video pixels per model pixel (the upscale factor of written videos).
    """
    from vidgen.metrics.judge import boundary_jump

    inside = np.concatenate([_pixel_changes(p) for p in parts if len(p) > 1])
    typical = float(np.median(inside)) if inside.size else math.nan
    out = []
    for a, b in zip(parts, parts[1:]):
        change = float(np.abs(b[0].astype(np.float32) - a[-1].astype(np.float32)).mean())
        out.append({"jump_px": boundary_jump(a, b) / scale,
                    "pixel_change": change / typical if typical and typical > 0 else math.nan})
    return out


def clip_verdicts(parts: Sequence[np.ndarray], captions: Sequence[str]) -> list[dict[str, Any]]:
    """The judge's reading of each part against its caption's toy-world attributes."""
    from vidgen.metrics.judge import faithfulness, judge_frames

    rows = []
    for frames, caption in zip(parts, captions):
        result = judge_frames(frames)
        rows.append({"caption": caption, "color": result.color, "shape": result.shape, "motion": result.motion,
                     "matches": dict(faithfulness(result, caption).matches)})
    return rows


def summarize_story(boundaries: list[dict[str, float]], clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Median jump and pixel change; per-clip motion accuracy; colour and shape kept across the story."""
    jumps = [b["jump_px"] for b in boundaries if not math.isnan(b["jump_px"])]
    changes = [b["pixel_change"] for b in boundaries if not math.isnan(b["pixel_change"])]
    motion = [c["matches"]["motion"] for c in clips if "motion" in c["matches"]]
    kept = {}
    for attr in ("color", "shape"):
        verdicts = [c[attr] for c in clips]
        stated = [c["matches"].get(attr) for c in clips if attr in c["matches"]]
        kept[attr] = bool(verdicts and len(set(verdicts)) == 1 and verdicts[0] is not None and all(stated))
    return {
        "median_jump_px": float(np.median(jumps)) if jumps else math.nan,
        "median_pixel_change": float(np.median(changes)) if changes else math.nan,
        "motion_accuracy": float(np.mean(motion)) if motion else math.nan,
        "color_kept": kept["color"], "shape_kept": kept["shape"],
    }


def story_folder_measures(folder: str | Path) -> dict[str, Any]:
    """Continuity and per-clip judge verdicts of a written story folder (``vidgen story`` output).

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
        settings = json.loads((folder / "settings.json").read_text())
    scale = info.width / settings["width"] if settings.get("width") else 1.0
    bounds = [int(round(start * info.fps)) for _, _, start, _ in clips] + [len(video)]
    parts = [video[a:b] for a, b in zip(bounds, bounds[1:])]
    boundaries = boundary_measures(parts, scale)
    verdicts = clip_verdicts(parts, [c for c, *_ in clips])
    return {"folder": str(folder), "boundaries": boundaries, "clips": verdicts, **summarize_story(boundaries, verdicts)}


@dataclass
class StoryEvalResult:
    """Per mode (``continuity``, ``independent``) the pooled measures, plus every story's details."""

    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    stories: list[dict[str, Any]] = field(default_factory=list)


def toy_story_scripts(n: int, seed: int, num_clips: int = 3) -> list[list[str]]:
    """``n`` toy-world story scripts: one object (colour, shape, background fixed) whose motion changes clip to clip."""
    from vidgen.data.toyworld import canonical_caption, make_story

    return [[canonical_caption(s.attrs) for s in make_story(i, seed=seed, num_clips=num_clips, num_frames=2, size=16)]
            for i in range(n)]


def _pool(stories: list[dict[str, Any]], mode: str) -> dict[str, float]:
    jumps = [b["jump_px"] for s in stories for b in s[mode]["boundaries"] if not math.isnan(b["jump_px"])]
    changes = [b["pixel_change"] for s in stories for b in s[mode]["boundaries"] if not math.isnan(b["pixel_change"])]
    motion = [c["matches"]["motion"] for s in stories for c in s[mode]["clips"] if "motion" in c["matches"]]
    return {
        "stories": len(stories),
        "boundaries": sum(len(s[mode]["boundaries"]) for s in stories),
        "median_jump_px": float(np.median(jumps)) if jumps else math.nan,
        "mean_jump_px": float(np.mean(jumps)) if jumps else math.nan,
        "jump_found": len(jumps),
        "median_pixel_change": float(np.median(changes)) if changes else math.nan,
        "motion_accuracy": float(np.mean(motion)) if motion else math.nan,
        "color_kept": float(np.mean([s[mode]["color_kept"] for s in stories])),
        "shape_kept": float(np.mean([s[mode]["shape_kept"] for s in stories])),
    }


def format_story_table(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| mode | stories | boundary jump median (px) | mean (px) | pixel change (x inside-clip) | motion as captioned | colour kept | shape kept |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, r in summary.items():
        lines.append(f"| {mode} | {r['stories']} | {r['median_jump_px']:.2f} | {r['mean_jump_px']:.2f} | {r['median_pixel_change']:.2f} | "
                     f"{100 * r['motion_accuracy']:.1f}% | {100 * r['color_kept']:.1f}% | {100 * r['shape_kept']:.1f}% |")
    return "\n".join(lines)


def run_story_eval(cfg, pipe=None, num_clips: int = 3, progress=None) -> StoryEvalResult:
    """Generate ``cfg.n`` three-clip toy stories with continuity and as independent clips; measure both.

    Args:
        cfg: a :class:`vidgen.metrics.toyeval.EvalConfig` (``suite="story"``; its ``overlap`` and
            ``resample`` and ``pin`` set the continuity).
        pipe: a loaded pipeline (``None``: load the configured model).
        num_clips: clips per story.
        progress: called with ``(done, total)`` after each story.

    Returns:
        The result (also written as ``results.json`` and ``table.md`` in ``cfg.out``).
    """
    from vidgen.io.files import atomic_write_text
    from vidgen.io.writer import to_uint8_frames
    from vidgen.metrics.toyeval import eval_settings, prepare_out
    from vidgen.pipelines.sample import model_sample_defaults
    from vidgen.pipelines.story import StoryPipeline, default_resample

    out = prepare_out(cfg)
    s = eval_settings(cfg, pipe)
    model_defaults = model_sample_defaults(s.model_dir, ["pin", "resample"])
    pin = cfg.pin or model_defaults.get("pin", "noised")
    resample = default_resample(s.pipe, model_defaults) if cfg.resample is None else cfg.resample
    story = StoryPipeline(s.pipe)
    result = StoryEvalResult()
    scripts = toy_story_scripts(cfg.n, cfg.seed, num_clips)
    for i, captions in enumerate(scripts):
        entry: dict[str, Any] = {"captions": captions}
        for mode in ("continuity", "independent"):
            made = story(captions, num_frames=s.frames, overlap=cfg.overlap, height=s.height, width=s.width,
                         num_inference_steps=s.steps, guidance_scale=s.guidance, seed=cfg.seed + 1000 * i, mode=mode,
                         resample=resample, pin=pin, guidance_interval=s.guidance_interval)
            parts = [to_uint8_frames(c.new_frames) for c in made.clips]
            boundaries = boundary_measures(parts)
            clips = clip_verdicts(parts, captions)
            entry[mode] = {"boundaries": boundaries, "clips": clips, **summarize_story(boundaries, clips)}
        result.stories.append(entry)
        if progress:
            progress(i + 1, len(scripts))
    result.summary = {mode: _pool(result.stories, mode) for mode in ("continuity", "independent")}
    config = {"suite": "story", "n": cfg.n, "seed": cfg.seed, "overlap": cfg.overlap, "resample": resample, "pin": pin, "frames": s.frames, "steps": s.steps,
              "guidance": s.guidance, "guidance_interval": s.guidance_interval, "scheduler": s.scheduler, "height": s.height, "width": s.width, "model": str(s.model_dir)}
    atomic_write_text(out / "results.json", json.dumps({"config": config, "summary": result.summary,
                                                        "stories": result.stories}, indent=1, default=str))
    atomic_write_text(out / "table.md", format_story_table(result.summary) + "\n")
    return result
