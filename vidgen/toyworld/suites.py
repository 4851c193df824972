"""``vidgen eval --suite toyworld``: how faithfully a model renders toy-world prompts.

N prompts are drawn from the attribute combinations seen in training and from
the held-out ones, sampled with the model, read back by the deterministic judge
(colour, shape, motion, background), and scored with the toy ViCLIP against
real clips of the same attributes. The result is a table (per-attribute
accuracy, seen vs held-out, CLIPSIM of generated vs real clips), a JSON file
with every prompt's verdict, and a contact sheet.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from vidgen.errors import InputError

ATTRS = ("color", "shape", "motion", "background")


@dataclass
class EvalConfig:
    """``vidgen eval`` settings (sampling settings default to the model folder's ``sample_defaults.yaml``)."""

    suite: str = "toyworld"  # toyworld | story
    story: Optional[str] = None  # measure an existing story folder instead of generating
    model: Optional[str] = None
    viclip: Optional[str] = None  # default: {model}/viclip, else checkpoints/viclip
    n: Optional[int] = None  # prompts (toyworld, default 120) or stories (story, default 30)
    held_out_fraction: float = 0.5
    captions: str = "canonical"  # canonical (every attribute stated) | varied (the training templates)
    seed: int = 0
    frames: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    guidance_interval: Optional[list[float]] = None  # None: the model folder's (sample_defaults.yaml), else every step
    scheduler: Optional[str] = None
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "fp32"
    out: str = "eval/toyworld"
    save_videos: bool = False
    contact_rows: int = 24
    overwrite: bool = False
    overlap: int = 2  # story suite: latent frames each clip shares with the previous one
    resample: Optional[int] = None  # story suite: RePaint rounds per step (vidgen story --resample); default from the model folder, else 0
    pin: Optional[str] = None  # story suite: noised | clean (vidgen story --pin); default from the model folder, else noised

    def __post_init__(self) -> None:
        if self.suite not in ("toyworld", "story"):
            raise InputError(f"unknown eval suite {self.suite!r}; available: toyworld, story")
        from vidgen.pipelines.text_to_video import check_guidance_interval

        check_guidance_interval(self.guidance_interval)
        if self.n is None:
            self.n = 120 if self.suite == "toyworld" else 30
        if self.n < 1 or self.batch_size < 1:
            raise InputError(f"n and batch_size must be positive, got {self.n} and {self.batch_size}")
        if not 0.0 <= self.held_out_fraction <= 1.0:
            raise InputError(f"held_out_fraction must lie in [0, 1], got {self.held_out_fraction}")
        if self.captions not in ("canonical", "varied"):
            raise InputError(f"captions must be canonical or varied, got {self.captions!r}")
        if self.overlap < 0 or (self.resample or 0) < 0:
            raise InputError(f"overlap and resample must be >= 0, got {self.overlap} and {self.resample}")
        if self.pin not in (None, "noised", "clean"):
            raise InputError(f"pin must be noised or clean, got {self.pin!r}")


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
    from vidgen.toyworld import all_attrs, canonical_caption, make_caption, sample_scene

    rng = np.random.default_rng(cfg.seed)
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


def run_toyworld_eval(cfg: EvalConfig, pipe=None, viclip=None, progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Sample, judge and score ``cfg.n`` toy-world prompts; write results to ``cfg.out``.

    Args:
        cfg: the eval settings.
        pipe: a loaded pipeline (``None``: load ``cfg.model`` or the shipped model).
        viclip: a loaded ViCLIP (``None``: from ``cfg.viclip``, the model folder, or
            ``checkpoints/viclip``; skipped with CLIPSIM reported as missing if none exists).
        progress: called with ``(done, total)`` after each batch.

    Returns:
        The report (also written as ``results.json``, ``table.md`` and ``contact_sheet.png``).
    """
    import torch

    from vidgen.toyworld import render_clip, sample_scene
    from vidgen.io.files import atomic_write_text
    from vidgen.io.writer import to_uint8_frames, write_video
    from vidgen.toyworld.judge import faithfulness, judge_frames
    from vidgen.pipelines.sample import slugify

    out = prepare_out(cfg)
    settings = eval_settings(cfg, pipe)
    pipe, model_dir, defaults = settings.pipe, settings.model_dir, settings.defaults
    frames_n, steps, guidance, scheduler = settings.frames, settings.steps, settings.guidance, settings.scheduler
    height, width = settings.height, settings.width
    scorer = _viclip_scorer(cfg, model_dir, viclip)

    plan = eval_prompts(cfg)
    report = EvalReport(config={**asdict(cfg), "model": str(model_dir), "frames": frames_n, "steps": steps,
                                "guidance": guidance, "guidance_interval": settings.guidance_interval,
                                "scheduler": scheduler, "height": height, "width": width})
    contact = []
    rng = np.random.default_rng(cfg.seed + 1)
    start = time.perf_counter()
    for b in range(0, len(plan), cfg.batch_size):
        chunk = plan[b : b + cfg.batch_size]
        generators = [torch.Generator().manual_seed(cfg.seed + b + k) for k in range(len(chunk))]
        videos = pipe([p for p, *_ in chunk], num_frames=frames_n, height=height, width=width, num_inference_steps=steps,
                      guidance_scale=guidance, guidance_interval=settings.guidance_interval, generator=generators).frames
        for k, ((prompt, split, attrs, stated), video) in enumerate(zip(chunk, videos)):
            frames = to_uint8_frames(video)
            judged = judge_frames(frames)
            fth = faithfulness(judged, stated)
            item = EvalItem(b + k, prompt, split, stated, {a: getattr(judged, a, None) for a in ATTRS}, dict(fth.matches))
            if scorer is not None:
                real = render_clip(sample_scene(rng, attrs=attrs), frames_n, (width, height))
                sims = _clipsim(scorer, [frames, real], prompt)
                item.clipsim, item.clipsim_real = sims
            report.items.append(item)
            if len(contact) < cfg.contact_rows:
                contact.append((prompt, frames, item.matches))
            if cfg.save_videos:
                write_video(out / "videos" / f"{item.index:03d}-{slugify(prompt)}.mp4", frames, fps=defaults.fps,
                            overwrite=True, upscale_factor=defaults.upscale)
        if progress:
            progress(min(b + cfg.batch_size, len(plan)), len(plan))
    report.summary = _summary(report.items)
    report.summary["seconds"] = time.perf_counter() - start
    report.summary["viclip"] = None if scorer is None else str(scorer.source)
    atomic_write_text(out / "results.json", json.dumps({"config": report.config, "summary": report.summary,
                                                        "items": [asdict(i) for i in report.items]}, indent=1))
    atomic_write_text(out / "table.md", format_table(report.summary) + "\n")
    contact_sheet(contact, out / "contact_sheet.png")
    return report


@dataclass
class EvalSettings:
    """A loaded model and the sampling settings an eval uses (flags over the model's defaults)."""

    pipe: Any
    model_dir: Path
    defaults: Any  # the model folder's SampleConfig
    frames: int
    steps: int
    guidance: float
    scheduler: Optional[str]
    height: int
    width: int
    guidance_interval: Optional[list[float]] = None


def prepare_out(cfg: EvalConfig) -> Path:
    """The results folder, refusing to replace earlier results without ``overwrite``."""
    from vidgen.errors import OutputError
    from vidgen.io.files import ensure_writable_dir

    out = ensure_writable_dir(cfg.out)
    if (out / "results.json").exists() and not cfg.overwrite:
        raise OutputError(f"{str(out / 'results.json')!r} exists (pass --overwrite to replace it)")
    return out


def eval_settings(cfg: EvalConfig, pipe=None) -> EvalSettings:
    """Load the model (unless given) and resolve frames/steps/guidance/scheduler/size."""
    from vidgen.config import load_config
    from vidgen.pipelines.loading import default_model_dir, load_pipeline
    from vidgen.pipelines.sample import SampleConfig, model_sample_defaults

    model_dir = Path(cfg.model) if cfg.model else default_model_dir()
    defaults = load_config(SampleConfig, files=[model_sample_defaults(model_dir, SampleConfig)])
    scheduler = cfg.scheduler or defaults.scheduler
    if pipe is None:
        pipe = load_pipeline(model_dir, device=cfg.device, dtype=cfg.dtype, scheduler=scheduler)
    return EvalSettings(
        pipe=pipe, model_dir=model_dir, defaults=defaults, frames=cfg.frames or defaults.frames,
        steps=cfg.steps or defaults.steps, guidance=cfg.guidance if cfg.guidance is not None else defaults.guidance,
        scheduler=scheduler, height=cfg.height or defaults.height or pipe.default_size[0],
        width=cfg.width or defaults.width or pipe.default_size[1],
        guidance_interval=cfg.guidance_interval if cfg.guidance_interval is not None else defaults.guidance_interval,
    )


class _Scorer:
    def __init__(self, scorer, source: Path):
        self.scorer, self.source = scorer, source


def _viclip_scorer(cfg: EvalConfig, model_dir: Path, viclip) -> Optional[_Scorer]:
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.models.viclip_io import default_viclip_path, load_viclip

    from vidgen.errors import ModelLoadError

    if viclip is not None:
        return _Scorer(ViCLIPScorer(viclip), Path("<given>"))
    if cfg.viclip:
        return _Scorer(ViCLIPScorer(load_viclip(cfg.viclip)), Path(cfg.viclip))
    if (model_dir / "viclip").exists():
        return _Scorer(ViCLIPScorer(load_viclip(model_dir / "viclip")), model_dir / "viclip")
    try:
        path = default_viclip_path()
    except ModelLoadError:
        return None  # no ViCLIP anywhere: CLIPSIM is reported as missing
    return _Scorer(ViCLIPScorer(load_viclip(path)), path)


def _clipsim(scorer: _Scorer, clips: list[np.ndarray], prompt: str) -> tuple[float, ...]:
    import torch

    s = scorer.scorer
    videos = torch.stack([s.preprocess.transform(c[s.preprocess.frame_indices(len(c))]) for c in clips])
    v = s.embed_videos(videos)
    t = s.embed_texts([prompt])
    return tuple(float(x) for x in (v @ t.T).squeeze(1))
