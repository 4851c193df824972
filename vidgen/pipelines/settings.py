"""Sampling settings: one schema for every job that samples videos, and a model folder's defaults.

``vidgen sample``, ``story``, ``eval`` and training validation all embed a
:class:`SamplingSettings` as their ``sampling:`` section (``sampling.steps=30`` on
the command line), and ``vidgen export`` writes one as the model folder's
``sample_defaults.yaml``. Adding a setting means adding a field here, its
pipeline argument in :func:`pipeline_kwargs` and its flag in
:func:`vidgen.cli.common.add_sampling_args`.

Settings are layered: built-in defaults, then the model folder's
``sample_defaults.yaml`` (:func:`load_job_config`), then config files, flags and
``key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, TypeVar

from vidgen.config import check_seed
from vidgen.errors import InputError

T = TypeVar("T")

MODEL_SAMPLE_DEFAULTS = "sample_defaults.yaml"  # optional layer a model folder can ship
MODES = ("continuity", "independent")
PINS = ("noised", "clean")


def check_guidance_interval(interval) -> tuple[float, float] | None:
    """``None`` or ``(lo, hi)`` with ``0 <= lo <= hi``, as floats.

    Raises:
        InputError: anything else.
    """
    if interval is None:
        return None
    if not isinstance(interval, (list, tuple)):
        raise InputError(f"guidance_interval must be two timesteps [lo, hi], got {interval!r}")
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise InputError(f"guidance_interval must be two timesteps [lo, hi], got {interval!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi < lo:
        raise InputError(f"guidance_interval must satisfy 0 <= lo <= hi, got {interval!r}")
    return lo, hi


@dataclass
class SamplingSettings:
    """How videos are sampled: the ``sampling:`` section of sample, story, eval and validation configs."""

    frames: int = 16
    height: Optional[int] = None  # None: the model's own size
    width: Optional[int] = None
    steps: int = 25
    scheduler: Optional[str] = None  # a short name (vidgen.pipelines.schedulers); None: the model folder's own
    guidance: float = 7.5  # classifier-free guidance scale; 1 turns it off
    # [lo, hi] timesteps where guidance runs (Kynkaanniemi et al. 2024); the other steps run the prompt alone. None: every step
    guidance_interval: Optional[list[float]] = None
    negative_prompt: str = ""
    seed: int = 0
    fps: float = 8.0  # frame rate of written videos
    upscale: int = 1  # written videos are enlarged this many times (small models)
    # feature caching of the denoiser's deep blocks across steps (vidgen.pipelines.caching): none | deep:K | adaptive:T
    cache: Optional[str] = None
    # long videos (vidgen.pipelines.long_video): frames the denoiser sees at once (None: its frame limit) and
    # frames neighbouring windows share (None: a quarter of the window)
    context_length: Optional[int] = None
    context_overlap: Optional[int] = None
    free_noise: bool = True  # reschedule the noise of frames past the first window (FreeNoise)
    free_init_iters: int = 0  # FreeInit rounds (0: off)

    def __post_init__(self) -> None:
        from vidgen.pipelines.caching import parse_cache_spec

        parse_cache_spec(self.cache)
        if self.context_length is not None or self.context_overlap is not None:
            from vidgen.pipelines.long_video import resolve_context

            try:  # the model's limit is checked once it is loaded
                resolve_context(self.frames, self.context_length, self.context_overlap, None)
            except InputError as exc:
                raise InputError(f"sampling.{exc}") from None
        if self.free_init_iters < 0:
            raise InputError(f"sampling.free_init_iters must be >= 0, got {self.free_init_iters}")
        for name in ("frames", "steps", "upscale"):
            if getattr(self, name) < 1:
                raise InputError(f"sampling.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"sampling.{name} must be positive, got {value}")
        check_seed("sampling.seed", self.seed)
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"sampling.fps must be a positive number, got {self.fps}")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise InputError(f"sampling.guidance must be a number >= 0, got {self.guidance}")
        if self.scheduler is not None:
            from vidgen.pipelines.schedulers import scheduler_names

            if self.scheduler.lower() not in scheduler_names():
                raise InputError(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(scheduler_names())}")
        check_guidance_interval(self.guidance_interval)


@dataclass
class StorySettings:
    """How a story's clips continue one another: the ``story:`` section of story configs."""

    overlap: int = 2  # latent frames each clip shares with the previous one
    mode: str = "continuity"  # continuity | independent (every clip on its own: the baseline)
    shared_noise: bool = True  # the shared frames start from the noise that made them
    # RePaint resampling rounds per step; None: the model folder's default when its scheduler allows it, else 0
    resample: Optional[int] = None
    pin: str = "noised"  # noised (RePaint, any model) | clean (models trained with context frames)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"story.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.pin not in PINS:
            raise InputError(f"story.pin must be one of {', '.join(PINS)}, got {self.pin!r}")
        for name in ("overlap", "resample"):
            if (getattr(self, name) or 0) < 0:
                raise InputError(f"story.{name} must be >= 0, got {getattr(self, name)}")


def pipeline_kwargs(s: SamplingSettings, height: int | None = None, width: int | None = None) -> dict[str, Any]:
    """The :class:`~vidgen.pipelines.TextToVideoPipeline` arguments that ``s`` sets (size given or ``s``'s own)."""
    return dict(num_frames=s.frames, height=height or s.height, width=width or s.width, num_inference_steps=s.steps,
                guidance_scale=s.guidance, guidance_interval=s.guidance_interval,
                negative_prompt=s.negative_prompt or None, cache=s.cache, **long_video_settings(s))


def long_video_settings(s: SamplingSettings) -> dict[str, Any]:
    """The long-video settings ``s`` sets (context windows, FreeNoise, FreeInit), as a story's ``settings.json``
    records them (unset ones left out)."""
    values = dict(context_length=s.context_length, context_overlap=s.context_overlap, free_noise=s.free_noise,
                  free_init_iters=s.free_init_iters)
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class ModelDefaults:
    """A model folder's ``sample_defaults.yaml``: sampling settings, and story settings under ``story:``."""

    sampling: dict[str, Any] = field(default_factory=dict)
    story: dict[str, Any] = field(default_factory=dict)


def read_model_defaults(model_dir: str | Path | None) -> ModelDefaults:
    """The model folder's ``sample_defaults.yaml`` (empty when it has none, or for no folder).

    Raises:
        InputError: the file is not YAML, not a mapping, or holds a key that is not a setting.
    """
    import yaml

    path = Path(model_dir) / MODEL_SAMPLE_DEFAULTS if model_dir is not None else None
    if path is None or not path.is_file():
        return ModelDefaults()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    story = data.pop("story", {}) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(story, dict):
        raise InputError(f"{path}: expected a mapping of sampling settings (story settings under 'story:')")
    legacy = sorted(set(data) & {f.name for f in dataclasses.fields(StorySettings)})
    if legacy:  # folders exported before story settings had their own section
        import logging

        logging.getLogger("vidgen").warning("%s: story settings %s belong under 'story:'; read as such", path,
                                            ", ".join(legacy))
        story = {**{k: data.pop(k) for k in legacy}, **story}
    for section, schema, values in (("", SamplingSettings, data), ("story.", StorySettings, story)):
        known = {f.name for f in dataclasses.fields(schema)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{path}: unknown setting(s) {', '.join(repr(section + k) for k in unknown)}; "
                             f"known: {', '.join(section + k for k in sorted(known))}")
    return ModelDefaults(sampling=data, story=story)


def write_model_defaults(folder: str | Path, sampling: SamplingSettings, story: Mapping[str, Any] | None = None) -> Path:
    """Write ``sampling`` (and ``story`` settings) as ``folder``'s ``sample_defaults.yaml``.

    Unset (``None``) values, the seed and an empty negative prompt are left out: they are the
    user's choice per video, not the model's.
    """
    import yaml

    data = {k: v for k, v in dataclasses.asdict(sampling).items()
            if v is not None and k != "seed" and not (k == "negative_prompt" and not v)}
    if story:
        data["story"] = dict(story)
    path = Path(folder) / MODEL_SAMPLE_DEFAULTS
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def model_defaults_layer(schema: type, defaults: ModelDefaults) -> dict[str, Any]:
    """The config layer a model folder's defaults make for ``schema`` (a job config with ``sampling``,
    and perhaps ``story``, sections). ``story.resample`` is left out: it applies only with a scheduler
    that resamples (:func:`vidgen.pipelines.story.default_resample`)."""
    names = {f.name for f in dataclasses.fields(schema)}
    layer: dict[str, Any] = {}
    if "sampling" in names and defaults.sampling:
        layer["sampling"] = dict(defaults.sampling)
    story = {k: v for k, v in defaults.story.items() if k != "resample"}
    if "story" in names and story:
        layer["story"] = story
    return layer


def load_job_config(schema: type[T], files: Sequence[Any] = (), overrides: Mapping[str, Any] | Sequence[str] = ()) -> T:
    """A job config (``schema`` has a ``model`` field and a ``sampling`` section) with the model folder's defaults
    layered between the built-in defaults and ``files``/``overrides``; ``model`` is resolved to a folder
    (the shipped model when none is given), unless the config's ``weights`` section assembles the model
    from a base and a motion adapter.

    Raises:
        ConfigError, InputError: a bad layer; ModelLoadError: no model folder.
    """
    from vidgen.config import load_config, parse_overrides
    from vidgen.pipelines.loading import default_model_dir

    overrides = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    first = load_config(schema, files=files, overrides=overrides)
    weights = getattr(first, "weights", None)
    if weights is not None and weights.assembled:  # --base SD --motion-adapter MA: no model folder, no folder defaults
        if first.model:
            raise InputError("give either a model folder (--model) or --base with --motion-adapter, not both")
        return first
    model_dir = Path(first.model) if first.model else default_model_dir()
    layer = model_defaults_layer(schema, read_model_defaults(model_dir))
    return load_config(schema, files=[layer, *files], overrides={**overrides, "model": str(model_dir)})
