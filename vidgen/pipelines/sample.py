"""The ``vidgen sample`` job: prompts in, video files out, each with its resolved config beside it."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from vidgen.errors import InputError, OutputError
from vidgen.io.text import json_value, read_text
from vidgen.pipelines.settings import SamplingSettings
from vidgen.pipelines.weights import WeightsSettings

FORMATS = ("mp4", "gif")


@dataclass
class SampleConfig:
    """Everything ``vidgen sample`` needs; every field is a ``key=value`` override (``sampling.steps=30``)."""

    prompts: list[str] = field(default_factory=list)
    prompts_file: Optional[str] = None
    # prompt travel: "FRAME: prompt" keyframes of one continuous video, or one .jsonl/.yaml file of them
    prompt_travel: list[str] = field(default_factory=list)
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


@dataclass(slots=True)
class SampleJob:
    """One video to render: its prompt, seed and destination; ``done`` when a run before this one finished it."""

    index: int
    prompt: str
    seed: int
    folder: Path
    name: str  # the file name in ``folder`` (a Path per job costs seconds per million prompts; see ``path``)
    done: bool = False
    travel: Optional[dict[int, str]] = None  # prompt travel keyframes {frame: prompt}; `prompt` is the first one

    @property
    def path(self) -> Path:
        """The video file."""
        return self.folder / self.name


def read_prompts_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line; blank lines and ``#`` comments skipped) or a jsonl of ``{"prompt": ...}``.

    Raises:
        InputError: the file is missing, or a jsonl row has no usable prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file not found: {str(path)!r}")
    prompts = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if path.suffix == ".jsonl":
            row = json_value(line, f"{str(path)!r} line {lineno}", InputError)
            text = row.get("prompt", row.get("caption")) if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{str(path)!r} line {lineno}: no 'prompt' (or 'caption') text")
            line = text.strip()
        prompts.append(line)
    return prompts


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_len: int = 48) -> str:
    """A filename-safe short form of a prompt."""
    slug = _NOT_SLUG.sub("-", text.lower()).strip("-")
    return (slug[:max_len].rstrip("-")) or "video"


def output_format(cfg: SampleConfig) -> str:
    """The container to write: the suffix of ``cfg.out`` when it names a file, else ``cfg.format``."""
    suffix = Path(cfg.out).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else cfg.format


def plan_jobs(cfg: SampleConfig) -> list[SampleJob]:
    """Resolve prompts and output paths; check every destination before any work starts.

    A single video goes to ``cfg.out`` when it ends in ``.mp4``/``.gif``;
    otherwise ``cfg.out`` is a folder and files are named
    ``{index:03d}-{prompt-slug}-s{seed}.{format}`` (with prompt travel, the first keyframe's prompt). Copy ``j`` of each prompt
    uses seed ``cfg.sampling.seed + j``.

    In a folder, a video whose ``.yaml`` sidecar is there too was finished by an
    earlier run of the command: its job is marked ``done`` (and redone only with
    ``overwrite``), so a killed run picks up where it stopped. A video without its
    sidecar, or a sidecar without its video, is unfinished and written again. A
    single file that exists is refused without ``overwrite``.

    Raises:
        InputError: no prompts, or an empty prompt.
        OutputError: a destination exists without ``overwrite``, is a folder, or is not writable;
            or the finished videos were made with other settings (another command's).
    """
    from vidgen.io.files import check_output_path, ensure_writable_dir

    travel = None
    prompts = list(cfg.prompts)
    if cfg.prompt_travel:
        from vidgen.pipelines.long_video import check_keyframes, parse_keyframes

        if prompts or cfg.prompts_file:
            raise InputError("give --prompt-travel or --prompt/--prompts-file, not both")
        keyframes = parse_keyframes(cfg.prompt_travel)
        check_keyframes(keyframes, cfg.sampling.frames)
        travel = {k.frame: k.prompt for k in keyframes}
        prompts = [keyframes[0].prompt]
        # as the sidecars record them, so a resumed run compares like with like (a file's keyframes too)
        cfg = dataclasses.replace(cfg, prompt_travel=travel_items(travel))
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
    if single_file:
        path = check_output_path(out, cfg.overwrite)
        check_output_path(sidecar_path(out), cfg.overwrite)
        return [SampleJob(index=0, prompt=prompts[0].strip(), seed=cfg.sampling.seed, folder=path.parent, name=path.name,
                          travel=travel)]
    # One listing of the folder, not a look per file: a million prompts plan in seconds.
    ensure_writable_dir(out)
    with os.scandir(out) as entries:
        existing = {entry.name: entry.is_dir() for entry in entries}
    fmt = output_format(cfg)
    jobs = []
    for i, prompt in enumerate(prompts):
        prompt = prompt.strip()
        slug = slugify(prompt)
        for j in range(cfg.num_videos):
            index = i * cfg.num_videos + j
            seed = cfg.sampling.seed + j
            stem = f"{index:03d}-{slug}-s{seed}"
            video = f"{stem}.{fmt}"
            done = False
            if existing:
                video_is_dir, sidecar_is_dir = existing.get(video), existing.get(f"{stem}.yaml")
                if video_is_dir or sidecar_is_dir:
                    name = video if video_is_dir else f"{stem}.yaml"
                    raise OutputError(f"output path {str(out / name)!r} is a folder, not a file")
                done = not cfg.overwrite and video_is_dir is not None and sidecar_is_dir is not None
            jobs.append(SampleJob(index, prompt, seed, out, video, done, travel))
    first_done = next((job for job in jobs if job.done), None)
    if first_done is not None:
        _check_same_settings(cfg, sidecar_path(first_done.path))
    return jobs


# Fields that say how a run went, not what its videos are: a resumed run may change them.
_RUN_FIELDS = ("prompts", "prompts_file", "out", "num_videos", "batch_size", "device", "attention", "compile",
               "decode_chunk_size", "overwrite")


def _check_same_settings(cfg: SampleConfig, sidecar: Path) -> None:
    """Refuse to resume into videos another command made: a finished video's settings must be this config's.

    One sidecar stands for all: one command gives every video the same settings but prompt and seed.

    Raises:
        OutputError: the sidecar records other settings (or cannot be read).
    """
    import yaml

    from vidgen.config import to_yaml

    def recipe(settings: dict) -> dict:
        flat = {}
        for key, value in settings.items():
            if key in _RUN_FIELDS:
                continue
            if isinstance(value, dict):
                flat.update({f"{key}.{sub}": v for sub, v in value.items()})
            else:
                flat[key] = value
        flat.pop("sampling.seed", None)
        # the model's own size and context windows, when the command leaves them open
        for name in ("height", "width", "context_length", "context_overlap"):
            if getattr(cfg.sampling, name) is None:
                flat.pop(f"sampling.{name}", None)
        return flat

    wanted = recipe(yaml.safe_load(to_yaml(dataclasses.replace(cfg, format=output_format(cfg)))))
    try:
        found = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        found = str(exc)
    if not isinstance(found, dict):
        raise OutputError(f"{str(sidecar)!r} is not a settings file vidgen wrote; pass --overwrite to redo the videos, "
                          "or give another --out")
    found = {**recipe(yaml.safe_load(to_yaml(SampleConfig()))), **recipe(found)}  # settings added since: their defaults
    changed = [f"{key} {found.get(key)!r} -> {value!r}" for key, value in wanted.items() if found.get(key) != value]
    if changed:
        raise OutputError(f"the videos in {str(sidecar.parent)!r} were made with other settings ({', '.join(changed[:3])}); "
                          "pass --overwrite to redo them, or give another --out")


def travel_items(travel: dict[int, str]) -> list[str]:
    """Keyframes as ``"FRAME: prompt"`` strings, the form ``--prompt-travel`` takes and sidecars record."""
    return [f"{frame}: {prompt}" for frame, prompt in travel.items()]


def sidecar_path(video: Path) -> Path:
    """Where a video's resolved config is written: ``name.mp4`` -> ``name.yaml``."""
    return video.with_suffix(".yaml")


def run_sample(
    cfg: SampleConfig,
    pipe=None,
    on_written: Callable[[SampleJob], None] | None = None,
    progress: bool = False,
    jobs: list[SampleJob] | None = None,
) -> list[Path]:
    """Render every prompt of ``cfg`` to a video file, skipping the videos an earlier run finished.

    Each video and its ``.yaml`` sidecar are written to temporary names and renamed
    into place together, the sidecar last, so a video is never seen without its settings
    (see :func:`plan_jobs` for what counts as finished).

    Args:
        cfg: the resolved sampling config.
        pipe: an already loaded pipeline (``None``: load ``cfg.model``, unless every video is done).
        on_written: called after each file is written (the CLI prints the path).
        progress: show a progress bar over denoising steps.
        jobs: the plan :func:`plan_jobs` made for ``cfg`` (``None``: plan here).

    Returns:
        The video paths written by this call, in prompt order.

    Raises:
        InputError, OutputError, ModelLoadError: as raised by the steps.
    """
    import torch

    from vidgen.config import to_yaml
    from vidgen.io.files import atomic_outputs, remove_temporaries
    from vidgen.io.writer import encode_video
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.memory import check_sampling_size, model_geometry
    from vidgen.pipelines.settings import pipeline_kwargs

    jobs = plan_jobs(cfg) if jobs is None else jobs
    todo = [job for job in jobs if not job.done]
    if not todo:
        return []
    single_file = Path(cfg.out).suffix.lower() in (".mp4", ".gif")
    # A killed run leaves temporaries beside the files it was writing: clear those of this plan's files.
    owners = {name for job in jobs for name in (job.name, job.name.rsplit(".", 1)[0] + ".yaml")}
    remove_temporaries(todo[0].folder, owners)
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
    context = pipe.context_settings(s.frames, s.context_length, s.context_overlap)
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    written = []
    batch_size = 1 if todo[0].travel else cfg.batch_size  # prompt travel makes one video per call
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in chunk]
        prompt = chunk[0].travel or [job.prompt for job in chunk]
        result = pipe(prompt=prompt, generator=generators, decode_chunk_size=cfg.decode_chunk_size,
                      output_type="np", **pipeline_kwargs(s, height, width))
        for job, frames in zip(chunk, result.frames):
            resolved = dataclasses.replace(cfg, prompts=[] if job.travel else [job.prompt], prompts_file=None, num_videos=1,
                                           out=str(job.path), prompt_travel=travel_items(job.travel or {}),
                                           sampling=dataclasses.replace(s, seed=job.seed, height=height, width=width,
                                                                        context_length=context[0], context_overlap=context[1]))
            # In a folder, a file of a job not done is the half of an unfinished one: ours to replace.
            with atomic_outputs([job.path, sidecar_path(job.path)], overwrite=cfg.overwrite or not single_file) as (video, sidecar):
                encode_video(video, frames, fps=s.fps, format=cfg.format, upscale_factor=s.upscale,
                             upscale_mode=cfg.upscale_mode, name=job.path)
                sidecar.write_text(to_yaml(resolved), encoding="utf-8")
            written.append(job.path)
            if on_written:
                on_written(job)
    return written
