"""The toy world's evaluation suites (``vidgen eval``): how faithfully a model renders toy-world prompts.

* ``--suite toyworld``: N prompts drawn from the attribute combinations seen in
  training and from the held-out ones, sampled with the model, read back by the
  judge (colour, shape, motion, background), and scored with the toy ViCLIP
  against real clips of the same attributes. The result is a table
  (per-attribute accuracy, seen vs held-out, CLIPSIM of generated vs real clips),
  a JSON file with every prompt's verdict, and a contact sheet.
* ``--suite story``: N three-clip stories of one object whose motion changes,
  generated with continuity and as independent clips; the judge tracks the
  object across each boundary (``jump_px``) and reads every clip's attributes.
* ``--story DIR``: the same measures of one written story folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from vidgen.errors import InputError
from vidgen.metrics.story import median_finite, pixel_changes, story_parts
from vidgen.pipelines.settings import SamplingSettings, StorySettings
from vidgen.pipelines.weights import WeightsSettings
from vidgen.toyworld.captions import canonical_caption, make_caption
from vidgen.toyworld.judge import boundary_jump, faithfulness, judge_frames
from vidgen.toyworld.render import make_story, render_clip
from vidgen.toyworld.world import all_attrs, sample_scene

ATTRS = ("color", "shape", "motion", "background")
SUITES = ("toyworld", "story")


@dataclass
class EvalConfig:
    """``vidgen eval`` settings (sampling and story settings default to the model folder's ``sample_defaults.yaml``)."""

    suite: str = "toyworld"  # toyworld | story
    story_folder: Optional[str] = None  # measure an existing story folder instead of generating
    model: Optional[str] = None
    viclip: Optional[str] = None  # default: {model}/viclip, else the shipped ViCLIP
    n: Optional[int] = None  # prompts (toyworld, default 120) or stories (story, default 30)
    held_out_fraction: float = 0.5
    captions: str = "canonical"  # canonical (every attribute stated) | varied (the training templates)
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "fp32"
    compile: bool = False  # torch.compile the denoiser
    out: str = "eval/toyworld"
    save_videos: bool = False
    contact_rows: int = 24
    overwrite: bool = False
    fvd: bool = False  # toyworld suite: also the ViCLIP FVD of the generated clips against real ones, and of two real sets (the floor)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)  # sampling.seed: prompt order and sampling seeds
    story: StorySettings = field(default_factory=StorySettings)  # story suite: how clips continue one another
    weights: WeightsSettings = field(default_factory=WeightsSettings)  # --base/--motion-adapter, --variant, --lora

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise InputError(f"unknown eval suite {self.suite!r}; available: {', '.join(SUITES)}")
        if self.n is None:
            self.n = 120 if self.suite == "toyworld" else 30
        if self.n < 1 or self.batch_size < 1:
            raise InputError(f"n and batch_size must be positive, got {self.n} and {self.batch_size}")
        if not 0.0 <= self.held_out_fraction <= 1.0:
            raise InputError(f"held_out_fraction must lie in [0, 1], got {self.held_out_fraction}")
        if self.captions not in ("canonical", "varied"):
            raise InputError(f"captions must be canonical or varied, got {self.captions!r}")


@dataclass
class EvalItem:
    """One prompt's result."""

    index: int
    prompt: str
    split: str  # seen | held_out
    wanted: dict[str, Optional[str]]
    judged: dict[str, Optional[str]]
    matches: dict[str, bool]
    clipsim: float = math.nan
    clipsim_real: float = math.nan


@dataclass
class EvalReport:
    config: dict[str, Any]
    items: list[EvalItem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def eval_prompts(cfg: EvalConfig) -> list[tuple[str, str, Any, dict]]:
    """``(prompt, split, attrs, stated attributes)`` for N prompts, held-out combinations first.

    Combinations are drawn without replacement (cycling when N exceeds them), so
    the suite covers the world evenly.
    """
    rng = np.random.default_rng(cfg.sampling.seed)
    n_held = int(round(cfg.n * cfg.held_out_fraction))
    plan = []
    for split, count, pool in (("held_out", n_held, all_attrs("held_out")), ("seen", cfg.n - n_held, all_attrs("train"))):
        order: list[int] = []
        while len(order) < count:
            order += rng.permutation(len(pool)).tolist()
        for k in order[:count]:
            attrs = pool[k]
            if cfg.captions == "canonical":
                plan.append((canonical_caption(attrs), split, attrs, attrs.as_dict()))
            else:
                caption = make_caption(sample_scene(rng, attrs=attrs), rng)
                plan.append((caption.text, split, attrs, dict(caption.mentioned)))
    return plan


def _summary(items: list[EvalItem]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(items)}
    for split in ("all", "seen", "held_out"):
        chosen = [i for i in items if split == "all" or i.split == split]
        row: dict[str, Any] = {"n": len(chosen)}
        for attr in ATTRS:
            stated = [i.matches[attr] for i in chosen if attr in i.matches]
            row[attr] = float(np.mean(stated)) if stated else math.nan
        row["all_attributes"] = float(np.mean([all(i.matches.values()) for i in chosen])) if chosen else math.nan
        gen = [i.clipsim for i in chosen if not math.isnan(i.clipsim)]
        real = [i.clipsim_real for i in chosen if not math.isnan(i.clipsim_real)]
        row["clipsim_generated"] = float(np.mean(gen)) if gen else math.nan
        row["clipsim_real"] = float(np.mean(real)) if real else math.nan
        row["clipsim_ratio"] = row["clipsim_generated"] / row["clipsim_real"] if real and row["clipsim_real"] else math.nan
        out[split] = row
    return out


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (percentages; CLIPSIM as raw cosine)."""
    header = "| split | n | colour | shape | motion | background | all four | ViCLIP CLIPSIM generated | real | ratio |"
    lines = [header, "|" + "---|" * 10]
    for split in ("all", "seen", "held_out"):
        r = summary[split]
        pct = [f"{100 * r[a]:.1f}%" if not math.isnan(r[a]) else "-" for a in (*ATTRS, "all_attributes")]
        sims = [f"{r[k]:.4f}" if not math.isnan(r[k]) else "-" for k in ("clipsim_generated", "clipsim_real")]
        ratio = f"{r['clipsim_ratio']:.3f}" if not math.isnan(r["clipsim_ratio"]) else "-"
        lines.append(f"| {split} | {r['n']} | " + " | ".join(pct) + " | " + " | ".join(sims) + f" | {ratio} |")
    return "\n".join(lines)


def contact_sheet(rows: list[tuple[str, np.ndarray, dict[str, bool]]], path: Path, scale: int = 3) -> Path:
    """A PNG with, per row, four frames of a clip (first, 1/3, 2/3, last), its prompt and the judge's verdict."""
    from PIL import Image, ImageDraw

    from vidgen.io.files import atomic_output

    if not rows:
        raise InputError("contact sheet needs at least one clip")
    t, h, w, _ = rows[0][1].shape
    picks = sorted({0, t // 3, 2 * t // 3, t - 1})
    cell_w, cell_h = w * scale, h * scale
    text_w = 460
    sheet = Image.new("RGB", (len(picks) * (cell_w + 4) + text_w, len(rows) * (cell_h + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (prompt, frames, matches) in enumerate(rows):
        y = 4 + r * (cell_h + 4)
        for c, k in enumerate(picks):
            tile = Image.fromarray(frames[k]).resize((cell_w, cell_h), Image.NEAREST)
            sheet.paste(tile, (4 + c * (cell_w + 4), y))
        x = 8 + len(picks) * (cell_w + 4)
        draw.text((x, y + 2), prompt[:70], fill="black")
        verdict = "  ".join(f"{a}:{'ok' if ok else 'NO'}" for a, ok in matches.items())
        draw.text((x, y + 18), verdict, fill="darkgreen" if all(matches.values()) else "firebrick")
    with atomic_output(path, overwrite=True) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def prepare_out(cfg: EvalConfig) -> Path:
    """The results folder, refusing to replace earlier results without ``overwrite``."""
    from vidgen.errors import OutputError
    from vidgen.io.files import ensure_writable_dir

    out = ensure_writable_dir(cfg.out)
    if (out / "results.json").exists() and not cfg.overwrite:
        raise OutputError(f"{str(out / 'results.json')!r} exists (pass --overwrite to replace it)")
    return out


def load_model(cfg: EvalConfig, pipe=None):
    """``(pipeline, model folder, height, width)``: the model (loaded unless given) and the frame size it samples;
    the folder is ``None`` for a model assembled from ``--base`` and ``--motion-adapter``."""
    from vidgen.pipelines.loading import default_model_dir, load_pipeline
    from vidgen.pipelines.memory import check_sampling_size, model_geometry

    model_dir = None if cfg.weights.assembled else Path(cfg.model) if cfg.model else default_model_dir()
    check_sampling_size(cfg.sampling, model_geometry(model_dir, cfg.weights, pipe), dtype=cfg.dtype, device=cfg.device,
                        batch=cfg.batch_size if cfg.suite == "toyworld" else 1)  # before the model loads
    if pipe is None:
        pipe = load_pipeline(model_dir, device=cfg.device, dtype=cfg.dtype, scheduler=cfg.sampling.scheduler,
                             weights=cfg.weights, compile=cfg.compile)
    s = cfg.sampling
    return pipe, model_dir, s.height or pipe.default_size[0], s.width or pipe.default_size[1]


def model_name(cfg: EvalConfig, model_dir: Path | None) -> str:
    """The model as reports name it: its folder, or where its assembled weights came from."""
    return str(model_dir) if model_dir is not None else cfg.weights.describe()


def run_toyworld_eval(cfg: EvalConfig, pipe=None, viclip=None, progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Sample, judge and score ``cfg.n`` toy-world prompts; write results to ``cfg.out``.

    Args:
        cfg: the eval settings (resolve them with :func:`vidgen.pipelines.settings.load_job_config` to start
            from the model folder's sampling defaults).
        pipe: a loaded pipeline (``None``: load ``cfg.model`` or the shipped model).
        viclip: a loaded ViCLIP (``None``: from ``cfg.viclip``, the model folder, or the shipped
            ViCLIP; skipped with CLIPSIM reported as missing if none exists).
        progress: called with ``(done, total)`` after each batch.

    Returns:
        The report (also written as ``results.json``, ``table.md`` and ``contact_sheet.png``).
    """
    import torch

    from vidgen.io.files import atomic_write_text
    from vidgen.io.writer import to_uint8_frames, write_video
    from vidgen.pipelines.sample import slugify
    from vidgen.pipelines.settings import pipeline_kwargs

    out = prepare_out(cfg)
    s = cfg.sampling
    pipe, model_dir, height, width = load_model(cfg, pipe)
    scorer = _viclip_scorer(cfg, model_dir, viclip)

    plan = eval_prompts(cfg)
    report = EvalReport(config={**asdict(cfg), "model": model_name(cfg, model_dir),
                                "sampling": {**asdict(s), "height": height, "width": width}})
    contact = []
    rng = np.random.default_rng(s.seed + 1)
    fvd_sets: dict[str, list[np.ndarray]] = {"generated": [], "real": [], "real_again": []}
    floor_rng = np.random.default_rng(s.seed + 2)  # its own draws, so --fvd leaves the CLIPSIM clips as they are
    if cfg.fvd and scorer is None:
        raise InputError("--fvd needs a ViCLIP (--viclip, the model folder's viclip/, or the shipped one)")
    start = time.perf_counter()
    for b in range(0, len(plan), cfg.batch_size):
        chunk = plan[b : b + cfg.batch_size]
        generators = [torch.Generator().manual_seed(s.seed + b + k) for k in range(len(chunk))]
        videos = pipe([p for p, *_ in chunk], generator=generators, **pipeline_kwargs(s, height, width)).frames
        for k, ((prompt, split, attrs, stated), video) in enumerate(zip(chunk, videos)):
            frames = to_uint8_frames(video)
            judged = judge_frames(frames)
            fth = faithfulness(judged, stated)
            item = EvalItem(b + k, prompt, split, stated, {a: getattr(judged, a, None) for a in ATTRS}, dict(fth.matches))
            if scorer is not None:
                real = render_clip(sample_scene(rng, attrs=attrs), s.frames, (width, height))
                sims = _clipsim(scorer, [frames, real], prompt)
                item.clipsim, item.clipsim_real = sims
            if cfg.fvd:
                fvd_sets["generated"].append(frames)
                fvd_sets["real"].append(real)
                fvd_sets["real_again"].append(render_clip(sample_scene(floor_rng, attrs=attrs), s.frames, (width, height)))
            report.items.append(item)
            if len(contact) < cfg.contact_rows:
                contact.append((prompt, frames, item.matches))
            if cfg.save_videos:
                write_video(out / "videos" / f"{item.index:03d}-{slugify(prompt)}.mp4", frames, fps=s.fps,
                            overwrite=True, upscale_factor=s.upscale)
        if progress:
            progress(min(b + cfg.batch_size, len(plan)), len(plan))
    report.summary = _summary(report.items)
    if cfg.fvd:
        report.summary["fvd"] = _fvd(scorer, fvd_sets)
    report.summary["seconds"] = time.perf_counter() - start
    report.summary["viclip"] = None if scorer is None else str(scorer.source)
    atomic_write_text(out / "results.json", json.dumps({"config": report.config, "summary": report.summary,
                                                        "items": [asdict(i) for i in report.items]}, indent=1))
    atomic_write_text(out / "table.md", format_table(report.summary) + "\n")
    contact_sheet(contact, out / "contact_sheet.png")
    return report


# --- stories -----------------------------------------------------------------------------------------------


def boundary_measures(parts: Sequence[np.ndarray], scale: float = 1.0) -> list[dict[str, float]]:
    """Jump (model pixels) and relative pixel change at each boundary between consecutive parts.

    Args:
        parts: each clip's frames as they appear in the stitched video (uint8 ``[T, H, W, 3]``).
        scale: video pixels per model pixel (the upscale factor of written videos).
    """
    return [{"jump_px": boundary_jump(a, b) / scale, "pixel_change": change}
            for a, b, change in zip(parts, parts[1:], pixel_changes(parts))]


def clip_verdicts(parts: Sequence[np.ndarray], captions: Sequence[str]) -> list[dict[str, Any]]:
    """The judge's reading of each part against its caption's toy-world attributes."""
    rows = []
    for frames, caption in zip(parts, captions):
        result = judge_frames(frames)
        rows.append({"caption": caption, "color": result.color, "shape": result.shape, "motion": result.motion,
                     "matches": dict(faithfulness(result, caption).matches)})
    return rows


def summarize_story(boundaries: list[dict[str, float]], clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Median jump and pixel change; per-clip motion accuracy; colour and shape kept across the story."""
    motion = [c["matches"]["motion"] for c in clips if "motion" in c["matches"]]
    kept = {}
    for attr in ("color", "shape"):
        verdicts = [c[attr] for c in clips]
        stated = [c["matches"].get(attr) for c in clips if attr in c["matches"]]
        kept[attr] = bool(verdicts and len(set(verdicts)) == 1 and verdicts[0] is not None and all(stated))
    return {
        "median_jump_px": median_finite([b["jump_px"] for b in boundaries]),
        "median_pixel_change": median_finite([b["pixel_change"] for b in boundaries]),
        "motion_accuracy": float(np.mean(motion)) if motion else math.nan,
        "color_kept": kept["color"], "shape_kept": kept["shape"],
    }


def story_folder_measures(folder: str | Path) -> dict[str, Any]:
    """Continuity and per-clip judge verdicts of a written story folder (``vidgen story`` output).

    Raises:
        DataError: not a story folder; VideoError: an unreadable stitched video.
    """
    captions, parts, scale = story_parts(folder)
    boundaries = boundary_measures(parts, scale)
    verdicts = clip_verdicts(parts, captions)
    return {"folder": str(folder), "boundaries": boundaries, "clips": verdicts, **summarize_story(boundaries, verdicts)}


@dataclass
class StoryEvalResult:
    """Per mode (``continuity``, ``independent``) the pooled measures, plus every story's details."""

    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    stories: list[dict[str, Any]] = field(default_factory=list)


def toy_story_scripts(n: int, seed: int, num_clips: int = 3) -> list[list[str]]:
    """``n`` toy-world story scripts: one object (colour, shape, background fixed) whose motion changes clip to clip."""
    return [[canonical_caption(s.attrs) for s in make_story(i, seed=seed, num_clips=num_clips, num_frames=2, size=16)]
            for i in range(n)]


def _pool(stories: list[dict[str, Any]], mode: str) -> dict[str, float]:
    jumps = [b["jump_px"] for s in stories for b in s[mode]["boundaries"] if not math.isnan(b["jump_px"])]
    changes = [b["pixel_change"] for s in stories for b in s[mode]["boundaries"]]
    motion = [c["matches"]["motion"] for s in stories for c in s[mode]["clips"] if "motion" in c["matches"]]
    return {
        "stories": len(stories),
        "boundaries": sum(len(s[mode]["boundaries"]) for s in stories),
        "median_jump_px": median_finite(jumps),
        "mean_jump_px": float(np.mean(jumps)) if jumps else math.nan,
        "jump_found": len(jumps),
        "median_pixel_change": median_finite(changes),
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


def run_story_eval(cfg: EvalConfig, pipe=None, num_clips: int = 3, progress=None) -> StoryEvalResult:
    """Generate ``cfg.n`` three-clip toy stories with continuity and as independent clips; measure both.

    Args:
        cfg: the eval settings (``suite="story"``; its ``story`` section sets the continuity).
        pipe: a loaded pipeline (``None``: load the configured model).
        num_clips: clips per story.
        progress: called with ``(done, total)`` after each story.

    Returns:
        The result (also written as ``results.json`` and ``table.md`` in ``cfg.out``).
    """
    from vidgen.io.files import atomic_write_text
    from vidgen.io.writer import to_uint8_frames
    from vidgen.pipelines.settings import pipeline_kwargs, read_model_defaults
    from vidgen.pipelines.story import StoryPipeline, default_resample

    out = prepare_out(cfg)
    s, st = cfg.sampling, cfg.story
    pipe, model_dir, height, width = load_model(cfg, pipe)
    resample = default_resample(pipe, read_model_defaults(model_dir).story) if st.resample is None else st.resample
    story = StoryPipeline(pipe)
    result = StoryEvalResult()
    scripts = toy_story_scripts(cfg.n, s.seed, num_clips)
    for i, captions in enumerate(scripts):
        entry: dict[str, Any] = {"captions": captions}
        for mode in ("continuity", "independent"):
            made = story(captions, overlap=st.overlap, seed=s.seed + 1000 * i, mode=mode, resample=resample, pin=st.pin,
                         **pipeline_kwargs(s, height, width))
            parts = [to_uint8_frames(c.new_frames) for c in made.clips]
            boundaries = boundary_measures(parts)
            clips = clip_verdicts(parts, captions)
            entry[mode] = {"boundaries": boundaries, "clips": clips, **summarize_story(boundaries, clips)}
        result.stories.append(entry)
        if progress:
            progress(i + 1, len(scripts))
    result.summary = {mode: _pool(result.stories, mode) for mode in ("continuity", "independent")}
    config = {"suite": "story", "n": cfg.n, "model": model_name(cfg, model_dir), "story": {**asdict(st), "resample": resample},
              "sampling": {**asdict(s), "height": height, "width": width}}
    atomic_write_text(out / "results.json", json.dumps({"config": config, "summary": result.summary,
                                                        "stories": result.stories}, indent=1, default=str))
    atomic_write_text(out / "table.md", format_story_table(result.summary) + "\n")
    return result


class _Scorer:
    def __init__(self, scorer, source: Path):
        self.scorer, self.source = scorer, source


def _viclip_scorer(cfg: EvalConfig, model_dir: Path, viclip) -> Optional[_Scorer]:
    from vidgen.errors import ModelLoadError
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.models.viclip_io import default_viclip_path, load_viclip

    if viclip is not None:
        return _Scorer(ViCLIPScorer(viclip), Path("<given>"))
    if cfg.viclip:
        return _Scorer(ViCLIPScorer(load_viclip(cfg.viclip)), Path(cfg.viclip))
    if model_dir is not None and (model_dir / "viclip").exists():
        return _Scorer(ViCLIPScorer(load_viclip(model_dir / "viclip")), model_dir / "viclip")
    try:
        path = default_viclip_path()
    except ModelLoadError:
        return None  # no ViCLIP anywhere: CLIPSIM is reported as missing
    return _Scorer(ViCLIPScorer(load_viclip(path)), path)


def _fvd(scorer: _Scorer, sets: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """ViCLIP FVD of generated clips against real clips of the same attributes, and of a second real set (the floor)."""
    from vidgen.metrics.fvd import ViCLIPFeatures, fvd_of_features

    from vidgen.metrics.fvd import first_frames

    net = ViCLIPFeatures(scorer.scorer.model, scorer.scorer.preprocess.name, str(scorer.source))
    clipped = {name: [c[first_frames(len(c), net.frames)] for c in clips] for name, clips in sets.items()}
    feats = {name: np.concatenate([net(clips[i : i + 16]) for i in range(0, len(clips), 16)]) for name, clips in clipped.items()}
    generated, warnings = fvd_of_features(feats["real"], feats["generated"])
    floor, _ = fvd_of_features(feats["real"], feats["real_again"])
    return {"generated_vs_real": generated, "real_vs_real": floor, "clips": len(sets["generated"]),
            "definition": net.describe(), "warnings": warnings}


def _clipsim(scorer: _Scorer, clips: list[np.ndarray], prompt: str) -> tuple[float, ...]:
    import torch

    s = scorer.scorer
    videos = torch.stack([s.preprocess.transform(c[s.preprocess.frame_indices(len(c))]) for c in clips])
    v = s.embed_videos(videos)
    t = s.embed_texts([prompt])
    return tuple(float(x) for x in (v @ t.T).squeeze(1))
