"""The ``vidgen score`` job: videos and captions in, a :class:`ScoreReport` out.

A video that cannot be read (missing, corrupt, too short, no caption) is
recorded with its reason and the run goes on; problems with the run itself (no
videos, no checkpoint, a malformed captions table, an output that exists) stop
it before any work with one clear error.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from vidgen.errors import InputError, VidgenError
from vidgen.metrics.inputs import ScoreItem, collect_items
from vidgen.metrics.reports import ScoreReport, Skipped, VideoScore, write_report

METRICS = ("viclip", "clip", "both")
SUITES = ("vbench",)


@dataclass
class ScoreConfig:
    """Everything ``vidgen score`` needs; every field is a ``key=value`` override."""

    videos: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    captions: Optional[str] = None
    viclip: Optional[str] = None
    viclip_size: Optional[str] = None
    clip: Optional[str] = None
    metric: str = "viclip"
    preprocess: str = "demo"
    clip_frames: int = 16
    batch_size: int = 1
    retrieve: bool = False
    topk: int = 5
    out: Optional[str] = None
    html: Optional[str] = None
    device: str = "auto"
    dtype: str = "fp32"
    overwrite: bool = False
    # VBench's ViCLIP dimensions over a VBench folder ({prompt}-{index}.mp4); `out` is then a results folder
    suite: Optional[str] = None
    name: str = "vidgen"  # VBench result files are {name}_eval_results.json ...
    full_info: Optional[str] = None  # VBench's VBench_full_info.json: standard mode (each dimension over its own prompts)
    # Fréchet video distance between two folders [REAL, GENERATED], through fvd_net (viclip | i3d, the --i3d file)
    fvd: list[str] = field(default_factory=list)
    fvd_net: str = "viclip"
    i3d: Optional[str] = None

    def __post_init__(self) -> None:
        from vidgen.metrics.fvd import NETS
        from vidgen.metrics.preprocess import PRESETS

        if self.metric not in METRICS:
            raise InputError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.preprocess not in PRESETS:
            raise InputError(f"preprocess must be one of {', '.join(PRESETS)}, got {self.preprocess!r}")
        for name in ("batch_size", "topk", "clip_frames"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.metric in ("clip", "both") and not self.clip:
            raise InputError(f"--metric {self.metric} needs --clip DIR (a transformers CLIPModel folder)")
        if self.retrieve and self.metric != "viclip":
            raise InputError("--retrieve ranks texts with ViCLIP; use it with --metric viclip")
        if self.suite is not None:
            if self.suite not in SUITES:
                raise InputError(f"unknown score suite {self.suite!r}; available: {', '.join(SUITES)}")
            if self.metric != "viclip" or self.retrieve or len(self.videos) != 1:
                raise InputError("--suite vbench scores one VBench folder with ViCLIP (no --metric clip or --retrieve)")
            if self.dtype != "fp32":
                raise InputError("--suite vbench scores in fp32, as VBench does (no --dtype)")
            self.preprocess = "vbench"  # the suite is VBench's own path
        if self.fvd:
            if len(self.fvd) != 2:
                raise InputError(f"--fvd takes two folders, REAL and GENERATED, got {len(self.fvd)}")
            if self.fvd_net not in NETS:
                raise InputError(f"fvd_net must be one of {', '.join(NETS)}, got {self.fvd_net!r}")

    @property
    def metric_names(self) -> list[str]:
        return ["viclip", "clip"] if self.metric == "both" else [self.metric]


def _check_outputs(cfg: ScoreConfig) -> None:
    from vidgen.io.files import check_output_path

    for path, allowed in ((cfg.out, (".json", ".csv")), (cfg.html, (".html", ".htm"))):
        if path:
            if Path(path).suffix.lower() not in allowed:
                raise InputError(f"output {path!r} must end in {' or '.join(allowed)}")
            check_output_path(path, cfg.overwrite)


def load_scorers(cfg: ScoreConfig, viclip_model=None):
    """The ViCLIP scorer (when a ViCLIP metric is asked) and the CLIP frame scorer (when ``clip``/``both``).

    Raises:
        ModelLoadError: a checkpoint or folder cannot be loaded.
        InputError: a bad device or dtype.
    """
    from vidgen.metrics.clipsim import CLIPFrameScorer, ViCLIPScorer
    from vidgen.models.viclip_io import load_viclip
    from vidgen.runtime import resolve_device, resolve_dtype

    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    viclip = clip = None
    if "viclip" in cfg.metric_names:
        from vidgen.models.viclip_io import default_viclip_path

        model = viclip_model if viclip_model is not None else load_viclip(cfg.viclip, size=cfg.viclip_size, device=device, dtype=dtype)
        source = "<given>" if viclip_model is not None else str(cfg.viclip or default_viclip_path())
        viclip = ViCLIPScorer(model, cfg.preprocess, device=device, source=source)
    if "clip" in cfg.metric_names:
        clip = CLIPFrameScorer(cfg.clip, device=device, dtype=dtype, num_frames=cfg.clip_frames)
    return viclip, clip


def run_score(
    cfg: ScoreConfig,
    *,
    viclip_model=None,
    progress: bool = False,
    on_scored: Callable[[VideoScore], None] | None = None,
    items: list[ScoreItem] | None = None,
) -> ScoreReport:
    """Score every video of ``cfg`` and write the requested reports.

    Args:
        cfg: the resolved config.
        items: the videos and captions to score, when the caller resolved them (else from ``cfg``).
        viclip_model: an already loaded ViCLIP (``None``: load ``cfg.viclip``,
            or the shipped ``checkpoints/viclip/``).
        progress: show a progress bar (stderr).
        on_scored: called with each video's result as it is scored.

    Returns:
        The report (also written to ``cfg.out`` / ``cfg.html`` when given).

    Raises:
        InputError, DataError, ModelLoadError, OutputError: whole-run problems.
    """
    from tqdm.auto import tqdm

    from vidgen.metrics.preprocess import decode_frames
    from vidgen.metrics.story import is_story_folder, story_continuity
    from vidgen.metrics.retrieval import cosine_matrix, paired_cosine, ranked, recall_at_k, retrieval_probs

    candidates: list[str] = []
    if items is None:
        items, candidates = collect_items(cfg.videos, cfg.prompts, cfg.captions, cfg.retrieve)
    _check_outputs(cfg)
    viclip, clip = load_scorers(cfg, viclip_model)
    definitions = {}
    if viclip:
        definitions["viclip"] = viclip.describe()
    if clip:
        definitions["clip"] = clip.describe()
    report = ScoreReport(cfg.metric_names, definitions)
    video_embeds: list[torch.Tensor] = []

    def prepare(item: ScoreItem) -> tuple[ScoreItem, Optional[VideoScore], Optional[dict], Optional[str]]:
        """Decode and preprocess one video (runs in the prefetch thread); returns its row, inputs, or the reason it was skipped."""
        if item.caption is None and not cfg.retrieve:
            return item, None, None, "no caption (give --prompt, --captions, or a table row)"
        rules = ([viclip.preprocess.frame_indices] if viclip else []) + ([clip.frame_indices] if clip else [])
        try:
            decoded = decode_frames(item.video, *rules)
        except VidgenError as exc:
            return item, None, None, str(exc)
        row = VideoScore(str(item.video), item.caption, caption_source=item.caption_source, note=decoded.note)
        inputs = {}
        picks = iter(decoded.picks)
        if viclip:
            indices, frames = next(picks)
            inputs["viclip"], row.frames["viclip"] = viclip.preprocess.transform(frames), indices
        if clip:
            indices, frames = next(picks)
            inputs["clip"], row.frames["clip"] = clip.transform(frames), indices
        return item, row, inputs, None

    bar = tqdm(total=len(items), disable=not progress, unit="video", desc="scoring", leave=False)
    # One thread decodes the next batch while this one runs the models (decoders and torch release the GIL).
    pool = ThreadPoolExecutor(max_workers=1)
    pending: deque = deque()
    next_item = 0

    def refill() -> None:
        nonlocal next_item
        while next_item < len(items) and len(pending) < 2 * cfg.batch_size:
            pending.append(pool.submit(prepare, items[next_item]))
            next_item += 1

    try:
        refill()
        while pending:
            batch: list[tuple[ScoreItem, VideoScore, dict]] = []
            for _ in range(min(cfg.batch_size, len(pending))):
                item, row, inputs, reason = pending.popleft().result()
                if reason is not None:
                    report.skipped.append(Skipped(str(item.video), reason))
                else:
                    batch.append((item, row, inputs))
                bar.update(1)
            refill()
            if clip:
                for item, row, inputs in batch:
                    row.scores["clip"] = clip.score(inputs["clip"], item.caption)
            if viclip and batch:
                embeds = viclip.embed_videos(torch.stack([inputs["viclip"] for _, _, inputs in batch]))
                video_embeds.append(embeds)
                if not cfg.retrieve:
                    texts = viclip.embed_texts([item.caption for item, _, _ in batch])
                    for (_, row, _), score in zip(batch, paired_cosine(embeds, texts).tolist()):
                        row.scores["viclip"] = score
            for _, row, _ in batch:
                report.rows.append(row)
                if on_scored and not cfg.retrieve:
                    on_scored(row)
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        bar.close()

    if cfg.retrieve and report.rows:
        embeds = torch.cat(video_embeds)
        cos = cosine_matrix(embeds, viclip.embed_texts(candidates))
        v2t = retrieval_probs(cos, dim=1)
        t2v = retrieval_probs(cos, dim=0)
        for i, row in enumerate(report.rows):
            row.ranked_texts = [(candidates[j], float(cos[i, j]), p) for j, p in ranked(v2t[i], cfg.topk)]
            if row.caption in candidates:
                row.scores["viclip"] = float(cos[i, candidates.index(row.caption)])
            if on_scored:
                on_scored(row)
        report.retrieval = {
            "candidates": len(candidates),
            "probability": "softmax(100 * cosine) over candidate texts per video, over videos per text",
            "text_to_video": [
                {"text": text, "videos": [(report.rows[i].video, float(cos[i, j]), p) for i, p in ranked(t2v[:, j], cfg.topk)]}
                for j, text in enumerate(candidates)
            ],
        }
        known = [candidates.index(r.caption) for r in report.rows if r.caption in candidates]
        if report.rows and len(known) == len(report.rows):
            report.retrieval["recall"] = recall_at_k(cos, known)
    stories = [v for v in cfg.videos if is_story_folder(v)]
    if stories:
        report.stories = {str(v): story_continuity(v) for v in stories}
    for path in (cfg.out, cfg.html):
        if path:
            write_report(report, path, overwrite=cfg.overwrite)
    return report


def run_vbench(cfg: ScoreConfig, **kwargs) -> ScoreReport:
    """``--suite vbench``: VBench's ViCLIP dimensions over the folder ``cfg.videos[0]`` (:mod:`vidgen.metrics.vbench`),
    written in VBench's layout into ``cfg.out`` (a folder); the report holds them as set-level numbers.

    Raises:
        InputError, DataError, ModelLoadError, OutputError: whole-run problems.
    """
    import dataclasses
    import logging

    from vidgen.io.files import check_output_path
    from vidgen.metrics import vbench

    out = cfg.out or "vbench_results"
    collected = vbench.collect(cfg.videos[0], cfg.captions, cfg.full_info)
    for path in vbench.output_paths(out, cfg.name):
        check_output_path(path, cfg.overwrite)
    _check_outputs(dataclasses.replace(cfg, out=None))  # the HTML page, before any work
    if collected.missing:
        logging.getLogger("vidgen").warning("%d videos of VBench's prompt list are missing (e.g. %r); the scores are "
                                            "over the rest", len(collected.missing), collected.missing[0])
    report = run_score(dataclasses.replace(cfg, out=None, html=None), items=collected.items, **kwargs)
    report.skipped.extend(Skipped(u.path, u.reason) for u in collected.unmatched)
    if report.rows:
        results = vbench.results({r.video: r.scores["viclip"] for r in report.rows}, collected.dimensions)
        vbench.write(out, cfg.name, collected, results, overwrite=cfg.overwrite)
        report.set_level = {"mode": "standard (VBench's prompt list)" if cfg.full_info else "custom (prompts from the files)",
                            **{dim: results[dim][0] for dim in vbench.DIMENSIONS},
                            **({"missing videos": len(collected.missing)} if collected.missing else {}),
                            **{f"{dim} (normalised)": v for dim, v in vbench.normalized(results).items()},
                            "results": str(Path(out) / f"{cfg.name}_eval_results.json")}
    if cfg.html:
        write_report(report, cfg.html, overwrite=cfg.overwrite)
    return report


def run_fvd(cfg: ScoreConfig, progress: bool = False) -> ScoreReport:
    """FVD between ``cfg.fvd``'s two folders; the report holds it as a set-level number (JSON/HTML as asked).

    Raises:
        InputError, ModelLoadError, OutputError: bad folders, networks or outputs.
    """
    from tqdm.auto import tqdm

    from vidgen.metrics.fvd import compute_fvd, folder_videos, load_features
    from vidgen.runtime import resolve_device, resolve_dtype

    if cfg.out and Path(cfg.out).suffix.lower() != ".json":
        raise InputError(f"--out {cfg.out!r}: an FVD report is a .json file (the HTML page goes to --html)")
    _check_outputs(cfg)
    total = sum(len(folder_videos(f)) for f in cfg.fvd)  # also checks both folders before any model loads
    extractor = load_features(cfg.fvd_net, viclip=cfg.viclip, i3d=cfg.i3d, preprocess=cfg.preprocess,
                              device=resolve_device(cfg.device), dtype=resolve_dtype(cfg.dtype))
    with tqdm(total=total, disable=not progress, unit="video", desc="fvd", leave=False) as bar:
        result = compute_fvd(cfg.fvd[0], cfg.fvd[1], extractor, cfg.batch_size, progress=bar.update)
    report = ScoreReport([], {"fvd": result["definition"]})
    report.set_level = {"FVD": result["fvd"], **{f"{name} videos": s["videos"] for name, s in result["sets"].items()},
                        "fvd": result}
    report.skipped.extend(Skipped(s["video"], s["reason"]) for sets in result["sets"].values() for s in sets["skipped"])
    for path in (cfg.out, cfg.html):
        if path:
            write_report(report, path, overwrite=cfg.overwrite)
    return report
