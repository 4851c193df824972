"""The ``vidgen sample`` job: prompts in, video files out, each with its resolved config beside it."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from vidgen.errors import InputError, OutputError

FORMATS = ("mp4", "gif")
MODEL_SAMPLE_DEFAULTS = "sample_defaults.yaml"  # optional layer a model folder can ship


def model_sample_defaults(model_dir: str | Path, settings) -> dict:
    """The model folder's ``sample_defaults.yaml`` restricted to the fields of the dataclass ``settings``
    (or to the key names ``settings`` lists).

    One file serves ``vidgen sample``, ``story`` and ``eval``: each takes the keys it knows
    (a story-only key such as ``pin`` is not an unknown key to ``sample``). ``{}`` when absent.
    """
    import yaml

    path = Path(model_dir) / MODEL_SAMPLE_DEFAULTS
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of sampling settings")
    from vidgen.pipelines.story import STORY_SETTINGS

    known = {f.name for f in dataclasses.fields(SampleConfig)} | set(STORY_SETTINGS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{path}: unknown sampling setting(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    names = {f.name for f in dataclasses.fields(settings)} if dataclasses.is_dataclass(settings) else set(settings)
    return {k: v for k, v in data.items() if k in names}


@dataclass
class SampleConfig:
    """Everything ``vidgen sample`` needs; every field is a ``key=value`` override."""

    prompts: list[str] = field(default_factory=list)
    prompts_file: Optional[str] = None
    model: Optional[str] = None
    out: str = "outputs"
    frames: int = 16
    fps: float = 8.0
    height: Optional[int] = None
    width: Optional[int] = None
    steps: int = 25
    guidance: float = 7.5
    guidance_interval: Optional[list[float]] = None  # [lo, hi] timesteps where guidance runs; None: every step
    seed: int = 0
    scheduler: Optional[str] = None
    negative_prompt: str = ""
    num_videos: int = 1
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "fp32"
    attention: str = "auto"
    format: str = "mp4"
    upscale: int = 1
    upscale_mode: str = "nearest"
    decode_chunk_size: int = 16
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        for name in ("frames", "steps", "num_videos", "batch_size", "upscale", "decode_chunk_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.fps <= 0:
            raise InputError(f"fps must be positive, got {self.fps}")
        if self.guidance < 0:
            raise InputError(f"guidance must be >= 0, got {self.guidance}")
        from vidgen.pipelines.text_to_video import check_guidance_interval

        check_guidance_interval(self.guidance_interval)


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
    uses seed ``cfg.seed + j``.

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
            seed = cfg.seed + j
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

    jobs = plan_jobs(cfg)
    cfg = dataclasses.replace(cfg, format=output_format(cfg))
    if pipe is None:
        pipe = load_pipeline(cfg.model, device=cfg.device, dtype=cfg.dtype, scheduler=cfg.scheduler, attention=cfg.attention)
    height, width = cfg.height, cfg.width
    if height is None or width is None:
        dh, dw = pipe.default_size
        height, width = height or dh, width or dw
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    written = []
    for start in range(0, len(jobs), cfg.batch_size):
        chunk = jobs[start : start + cfg.batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in chunk]
        result = pipe(
            prompt=[job.prompt for job in chunk],
            negative_prompt=cfg.negative_prompt or None,
            num_frames=cfg.frames,
            height=height,
            width=width,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance,
            guidance_interval=cfg.guidance_interval,
            generator=generators,
            decode_chunk_size=cfg.decode_chunk_size,
            output_type="np",
        )
        for job, frames in zip(chunk, result.frames):
            write_video(job.path, frames, fps=cfg.fps, format=cfg.format, overwrite=cfg.overwrite,
                        upscale_factor=cfg.upscale, upscale_mode=cfg.upscale_mode)
            resolved = dataclasses.replace(cfg, prompts=[job.prompt], prompts_file=None, seed=job.seed,
                                           num_videos=1, height=height, width=width, out=str(job.path))
            try:
                atomic_write_text(sidecar_path(job.path), to_yaml(resolved), overwrite=cfg.overwrite)
            except OutputError:
                job.path.unlink(missing_ok=True)
                raise
            written.append(job.path)
            if on_written:
                on_written(job)
    return written
