"""The ``vidgen sample`` job: prompts in, video files out, each with its resolved config beside it."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from vidgen.errors import InputError, OutputError
from vidgen.pipelines.settings import SamplingSettings
from vidgen.pipelines.weights import WeightsSettings

FORMATS = ("mp4", "gif")


@dataclass
class SampleConfig:
    """Everything ``vidgen sample`` needs; every field is a ``key=value`` override (``sampling.steps=30``)."""

    prompts: list[str] = field(default_factory=list)
    prompts_file: Optional[str] = None
    model: Optional[str] = None
    out: str = "outputs"
    num_videos: int = 1
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "fp32"
    attention: str = "auto"
    compile: bool = False  # torch.compile the denoiser
    format: str = "mp4"
    upscale_mode: str = "nearest"
    decode_chunk_size: int = 16
    overwrite: bool = False
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    weights: WeightsSettings = field(default_factory=WeightsSettings)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        for name in ("num_videos", "batch_size", "decode_chunk_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class SampleJob:
    """One video to render: its prompt, seed and destination."""

    index: int
    prompt: str
    seed: int
    path: Path


def read_prompts_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line; blank lines and ``#`` comments skipped) or a jsonl of ``{"prompt": ...}``.

    Raises:
        InputError: the file is missing, or a jsonl row has no usable prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file not found: {str(path)!r}")
    prompts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{str(path)!r} line {lineno}: not valid JSON ({exc.msg})") from None
            text = row.get("prompt", row.get("caption")) if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{str(path)!r} line {lineno}: no 'prompt' (or 'caption') text")
            line = text.strip()
        prompts.append(line)
    return prompts


def slugify(text: str, max_len: int = 48) -> str:
    """A filename-safe short form of a prompt."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:max_len].rstrip("-")) or "video"


def output_format(cfg: SampleConfig) -> str:
    """The container to write: the suffix of ``cfg.out`` when it names a file, else ``cfg.format``."""
    suffix = Path(cfg.out).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else cfg.format


def plan_jobs(cfg: SampleConfig) -> list[SampleJob]:
    """Resolve prompts and output paths; check every destination before any work starts.

    A single video goes to ``cfg.out`` when it ends in ``.mp4``/``.gif``;
    otherwise ``cfg.out`` is a folder and files are named
    ``{index:03d}-{prompt-slug}-s{seed}.{format}``. Copy ``j`` of each prompt
    uses seed ``cfg.sampling.seed + j``.

    Raises:
        InputError: no prompts, or an empty prompt.
        OutputError: a destination exists without ``overwrite`` or is not writable.
    """
    from vidgen.io.files import check_output_path

    prompts = list(cfg.prompts)
    if cfg.prompts_file:
        prompts += read_prompts_file(cfg.prompts_file)
    if not prompts:
        raise InputError("no prompt given (use --prompt TEXT or --prompts-file FILE)")
    for i, p in enumerate(prompts):
        if not p or not p.strip():
            raise InputError(f"prompt {i + 1} is empty")
    out = Path(cfg.out)
    single_file = out.suffix.lower() in (".mp4", ".gif")
    total = len(prompts) * cfg.num_videos
    if single_file and total > 1:
        raise InputError(f"--out {cfg.out!r} names one file but {total} videos were asked for; give a folder")
    jobs = []
    for i, prompt in enumerate(prompts):
        for j in range(cfg.num_videos):
            index = i * cfg.num_videos + j
            seed = cfg.sampling.seed + j
            path = out if single_file else out / f"{index:03d}-{slugify(prompt)}-s{seed}.{output_format(cfg)}"
            jobs.append(SampleJob(index=index, prompt=prompt.strip(), seed=seed, path=path))
    seen = set()
    for job in jobs:
        if job.path in seen:
            raise OutputError(f"two videos would be written to {str(job.path)!r}")
        seen.add(job.path)
        check_output_path(job.path, cfg.overwrite)
        check_output_path(sidecar_path(job.path), cfg.overwrite)
    return jobs


def sidecar_path(video: Path) -> Path:
    """Where a video's resolved config is written: ``name.mp4`` -> ``name.yaml``."""
    return video.with_suffix(".yaml")


def run_sample(
    cfg: SampleConfig,
    pipe=None,
    on_written: Callable[[SampleJob], None] | None = None,
    progress: bool = False,
) -> list[Path]:
    """Render every prompt of ``cfg`` to a video file.

    Args:
        cfg: the resolved sampling config.
        pipe: an already loaded pipeline (``None``: load ``cfg.model``).
        on_written: called after each file is written (the CLI prints the path).
        progress: show a progress bar over denoising steps.

    Returns:
        The written video paths, in prompt order.

    Raises:
        InputError, OutputError, ModelLoadError: as raised by the steps.
    """
    import torch

    from vidgen.config import to_yaml
    from vidgen.io.files import atomic_write_text
    from vidgen.io.writer import write_video
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.memory import check_sampling_size, model_geometry
    from vidgen.pipelines.settings import pipeline_kwargs

    jobs = plan_jobs(cfg)
    if cfg.attention == "xformers":
        from vidgen.extras import require

        require("xformers", "--attention xformers", "gpu")  # before the model loads
    cfg = dataclasses.replace(cfg, format=output_format(cfg))
    s = cfg.sampling
    check_sampling_size(s, model_geometry(cfg.model, cfg.weights, pipe), batch=min(cfg.batch_size, len(jobs)),
                        upscale_mode=cfg.upscale_mode, decode_chunk_size=cfg.decode_chunk_size, dtype=cfg.dtype,
                        device=cfg.device)  # before the model loads
    if pipe is None:
        pipe = load_pipeline(cfg.model, device=cfg.device, dtype=cfg.dtype, scheduler=s.scheduler, attention=cfg.attention,
                             weights=cfg.weights, compile=cfg.compile)
    height, width = s.height or pipe.default_size[0], s.width or pipe.default_size[1]
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    written = []
    for start in range(0, len(jobs), cfg.batch_size):
        chunk = jobs[start : start + cfg.batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in chunk]
        result = pipe(prompt=[job.prompt for job in chunk], generator=generators, decode_chunk_size=cfg.decode_chunk_size,
                      output_type="np", **pipeline_kwargs(s, height, width))
        for job, frames in zip(chunk, result.frames):
            write_video(job.path, frames, fps=s.fps, format=cfg.format, overwrite=cfg.overwrite,
                        upscale_factor=s.upscale, upscale_mode=cfg.upscale_mode)
            resolved = dataclasses.replace(cfg, prompts=[job.prompt], prompts_file=None, num_videos=1, out=str(job.path),
                                           sampling=dataclasses.replace(s, seed=job.seed, height=height, width=width))
            try:
                atomic_write_text(sidecar_path(job.path), to_yaml(resolved), overwrite=cfg.overwrite)
            except OutputError:
                job.path.unlink(missing_ok=True)
                raise
            written.append(job.path)
            if on_written:
                on_written(job)
    return written
