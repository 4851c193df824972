"""The training config schema: one dataclass per YAML section.

``vidgen train --config configs/train/NAME.yaml key=value ...`` builds a
:class:`TrainConfig` with :func:`vidgen.config.load_config`; the resolved config
is saved in the run folder and inside every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from omegaconf import MISSING

from vidgen.config import number_problem
from vidgen.errors import ConfigError
from vidgen.pipelines.settings import SamplingSettings

DENOISER_SOURCES = ("fresh", "base", "inflate", "adapter")
TRAINABLE = ("all", "temporal", "lora")
LORA_LAYERS = ("all", "spatial", "motion")
DATA_SOURCES = ("folder", "shards", "latents")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
PRECISIONS = ("no", "fp16", "bf16")
TRACKERS = ("tensorboard", "wandb", "none")


def normalize_precision(value) -> str:
    """``no | fp16 | bf16``; YAML reads a bare ``no`` as false, so false/off/none mean ``no`` too.

    Raises:
        ConfigError: any other value.
    """
    text = str(value).strip().lower()
    if text in ("no", "false", "off", "none", "fp32"):
        return "no"
    if text not in PRECISIONS:
        raise ConfigError(f"mixed_precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return text


def _choice(section: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{section}.{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _positive(section: str, name: str, value, allow_zero: bool = False) -> None:
    if value is None or number_problem(value, **({"minimum": 0} if allow_zero else {"above": 0})):
        raise ConfigError(f"{section}.{name} must be {'>= 0' if allow_zero else 'positive'}, got {value!r}")


@dataclass
class ModelConfig:
    """Where the model's parts come from and which of them train."""

    # A folder with vae/, text_encoder/, tokenizer/, scheduler/ (and unet/ for base|inflate|adapter), or for
    # inflate|adapter a Stable Diffusion single-file checkpoint (described by base_config, default SD 1.5's)
    base: str = MISSING
    # fresh: built from kind/preset/unet; base: base's unet/; inflate: base's 2-D unet/ -> UNetMotionModel with new
    # temporal layers; adapter: base's 2-D unet/ + motion_adapter's motion modules (continue AnimateDiff's training)
    denoiser: str = "fresh"
    motion_adapter: Optional[str] = None  # adapter only: a MotionAdapter folder or an original AnimateDiff file
    base_config: Optional[str] = None  # a single-file base's diffusers configs (default: Stable Diffusion 1.5's)
    variant: Optional[str] = None  # weight variant of the base folder (default: the one it holds)
    kind: str = "motion"  # fresh only: motion (UNetMotionModel) | unet3d (UNet3DConditionModel)
    preset: Optional[str] = None  # fresh only: tiny | sd15
    unet: dict = field(default_factory=dict)  # fresh only: constructor overrides
    unet_path: Optional[str] = None  # base|inflate: a unet folder other than {base}/unet
    prediction_type: str = "epsilon"  # epsilon | v_prediction
    # Rescale the noise schedule to zero terminal SNR (Lin et al. 2024), so training's last step is pure noise
    # like sampling's first; without it the model reads layout from the noise and ignores the prompt's motion.
    # None keeps the base scheduler's setting. Needs v_prediction. Exported with the model's scheduler.
    zero_terminal_snr: Optional[bool] = None
    # Divide the base schedule's SNR at every step by snr_shift**2 (vidgen.pipelines.schedulers.shifted_betas):
    # more of training and sampling at the noise levels where a clip's layout and motion are decided.
    # Taken from the plain beta schedule, so a base folder that was already shifted is not shifted again;
    # None keeps the base folder's schedule, 1 the plain one. Exported with the model's scheduler (as trained_betas).
    snr_shift: Optional[float] = None
    trainable: Optional[str] = None  # all | temporal (spatial frozen) | lora; default temporal for adapter, else all
    lora_layers: str = "all"  # lora only: all | spatial (image layers: style) | motion (motion modules: camera, motion)
    lora_rank: int = 16
    lora_alpha: Optional[float] = None  # default: the rank
    gradient_checkpointing: bool = False
    attention: str = "auto"  # auto | sdpa | xformers | math

    def __post_init__(self) -> None:
        if not self.base:
            raise ConfigError("model.base must name a folder with vae/, text_encoder/, tokenizer/ and scheduler/")
        _choice("model", "denoiser", self.denoiser, DENOISER_SOURCES)
        _choice("model", "kind", self.kind, ("motion", "unet3d"))
        _choice("model", "prediction_type", self.prediction_type, ("epsilon", "v_prediction"))
        if self.trainable is None and self.base != MISSING:  # not while the schema's blank default is built
            self.trainable = "temporal" if self.denoiser == "adapter" else "all"
        if self.trainable is not None:
            _choice("model", "trainable", self.trainable, TRAINABLE)
        _choice("model", "lora_layers", self.lora_layers, LORA_LAYERS)
        if (self.denoiser == "adapter") != (self.motion_adapter is not None):
            raise ConfigError("model.denoiser=adapter and model.motion_adapter go together (an SD base plus an "
                              "AnimateDiff motion adapter)")
        if self.base_config is not None and self.denoiser not in ("inflate", "adapter"):
            raise ConfigError("model.base_config describes a single-file base, which model.denoiser=inflate|adapter take")
        if self.zero_terminal_snr and self.prediction_type != "v_prediction":
            raise ConfigError("model.zero_terminal_snr needs model.prediction_type=v_prediction "
                              "(at zero SNR an epsilon prediction says nothing about the clip)")
        _choice("model", "attention", self.attention, ("auto", "sdpa", "xformers", "math"))
        if self.snr_shift is not None and not self.snr_shift > 0:
            raise ConfigError(f"model.snr_shift must be positive (1 keeps the schedule), got {self.snr_shift}")
        _positive("model", "lora_rank", self.lora_rank)


@dataclass
class DataConfig:
    """The training clips and how they become batches."""

    source: str = "folder"  # folder (clip files) | shards (WebDataset tars) | latents (vidgen data cache output)
    path: str = MISSING  # clip folder, shard pattern/list, or cache folder
    rows: Optional[str] = None  # folder: InternVid rows giving each clip's caption (else sidecar .txt files)
    num_frames: int = 16
    frame_stride: int = 1
    fps: Optional[float] = None  # resample clips to this rate instead of a fixed stride
    height: int = 256
    width: int = 256
    crop: str = "center"  # center | random
    caption_dropout: float = 0.1  # fraction of captions replaced by "" (classifier-free guidance)
    image_ratio: float = 0.0  # fraction of batches trained as single-frame images (joint image-video)
    batch_size: int = 1
    num_workers: int = 0
    shuffle_buffer: int = 256  # shards: shuffle buffer size
    sample_posterior: bool = True  # latents: draw from the VAE posterior rather than taking its mean
    cached_text: bool = True  # latents: use the cached text states; false re-encodes the captions each step with
    #                           model.base's text encoder (after changing text encoders, without rebuilding the cache)

    def __post_init__(self) -> None:
        _choice("data", "source", self.source, DATA_SOURCES)
        if not self.path:
            raise ConfigError("data.path must name the training data")
        _choice("data", "crop", self.crop, ("center", "random"))
        for name in ("num_frames", "frame_stride", "height", "width", "batch_size"):
            _positive("data", name, getattr(self, name))
        _positive("data", "num_workers", self.num_workers, allow_zero=True)
        for name in ("caption_dropout", "image_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.{name} must lie in [0, 1], got {value}")


@dataclass
class OptimConfig:
    """AdamW with warm-up and a decay schedule."""

    lr: float = 1e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "cosine"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0  # 0 disables clipping

    def __post_init__(self) -> None:
        _positive("optim", "lr", self.lr)
        _positive("optim", "eps", self.eps)
        _positive("optim", "weight_decay", self.weight_decay, allow_zero=True)
        if len(self.betas) != 2 or any(number_problem(b, minimum=0) or b >= 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        _choice("optim", "schedule", self.schedule, LR_SCHEDULES)
        _positive("optim", "warmup_steps", self.warmup_steps, allow_zero=True)
        _positive("optim", "max_grad_norm", self.max_grad_norm, allow_zero=True)


@dataclass
class TrainLoopConfig:
    """Steps, precision, noise and the safety nets."""

    max_steps: int = 1000
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    offset_noise: float = 0.0
    snr_gamma: Optional[float] = None  # Min-SNR weighting; 5.0 is the paper's choice
    # Continuation training: with probability context_prob a clip's first 1..context_frames
    # latent frames are given clean (not noised) and left out of the loss, so the denoiser
    # learns to continue known frames as the caption says (image-to-video style).
    context_prob: float = 0.0
    context_frames: int = 1
    # Order from the caption: with probability reverse_prob a clip noised to an SNR at or below
    # reverse_max_snr is shown to the denoiser in reverse frame order while the target stays the
    # clip as it is, so where the noise barely shows which way things move the caption has to
    # decide (otherwise the sampler's first steps fix the direction from the initial noise). With
    # v-prediction, Min-SNR weights (snr_gamma) all but silence these low-SNR clips: leave it null.
    reverse_prob: float = 0.0
    reverse_max_snr: float = 0.01
    # Timesteps drawn in training: uniform in [min_timestep, max_timestep) (null: num_train_timesteps), as
    # kohya's trainers name it. A narrow low range fine-tunes the detail levels of a trained model.
    min_timestep: int = 0
    max_timestep: Optional[int] = None
    ema_decay: Optional[float] = 0.9999  # null disables EMA
    ema_update_after: int = 0
    nan_max_skips: int = 20  # stop after this many non-finite losses
    log_every: int = 10

    def __post_init__(self) -> None:
        _positive("train", "max_steps", self.max_steps)
        if number_problem(self.seed, integer=True, minimum=0, maximum=2**32 - 1):
            # accelerate's set_seed seeds numpy's global generator too, which takes 32 bits
            raise ConfigError(f"train.seed must be an integer from 0 to 2**32-1, got {self.seed!r}")
        _positive("train", "grad_accum", self.grad_accum)
        self.mixed_precision = normalize_precision(self.mixed_precision)
        _positive("train", "nan_max_skips", self.nan_max_skips, allow_zero=True)
        _positive("train", "log_every", self.log_every)
        if not 0.0 <= self.context_prob <= 1.0:
            raise ConfigError(f"train.context_prob must lie in [0, 1], got {self.context_prob}")
        _positive("train", "context_frames", self.context_frames)
        if not 0.0 <= self.reverse_prob <= 1.0:
            raise ConfigError(f"train.reverse_prob must lie in [0, 1], got {self.reverse_prob}")
        if not 0.0 < self.reverse_max_snr <= 1.0:
            # Above SNR 1 the clip is plainly visible: reversing it would teach the model to reorder what it sees.
            raise ConfigError(f"train.reverse_max_snr must lie in (0, 1], got {self.reverse_max_snr}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must lie in (0, 1) or be null, got {self.ema_decay}")
        if self.min_timestep < 0 or (self.max_timestep is not None and self.max_timestep <= self.min_timestep):
            raise ConfigError(f"train.min_timestep/max_timestep must satisfy 0 <= min < max, got {self.min_timestep} "
                              f"and {self.max_timestep}")


@dataclass
class CheckpointConfig:
    every: int = 500  # steps between checkpoints (one is always written at the end)
    keep_last: int = 3

    def __post_init__(self) -> None:
        _positive("checkpoint", "every", self.every)
        _positive("checkpoint", "keep_last", self.keep_last)


@dataclass
class ValidationConfig:
    """Videos sampled during training, scored and logged."""

    every: int = 0  # steps between validations; 0: only at the end when prompts are given
    prompts: list[str] = field(default_factory=list)
    use_ema: bool = True
    viclip: Optional[str] = None  # ViCLIP checkpoint: the samples' CLIPSIM is logged when set
    scorers: list[str] = field(default_factory=list)  # further scorers by name, as the caller of train() provides them
    sampling: SamplingSettings = field(default_factory=SamplingSettings)  # also the exported model's sample defaults

    def __post_init__(self) -> None:
        _positive("validation", "every", self.every, allow_zero=True)


@dataclass
class LoggingConfig:
    tracker: str = "tensorboard"
    progress: bool = True

    def __post_init__(self) -> None:
        _choice("logging", "tracker", self.tracker, TRACKERS)


@dataclass
class TrainConfig:
    """A whole training run."""

    # Keys of configs saved before they moved (checkpoints keep their config): read as their new place.
    RENAMED: ClassVar[dict[str, Any]] = {
        **{f"validation.{old}": f"validation.sampling.{new}" for old, new in (
            ("num_frames", "frames"), ("height", "height"), ("width", "width"), ("steps", "steps"),
            ("guidance", "guidance"), ("guidance_interval", "guidance_interval"), ("scheduler", "scheduler"),
            ("seed", "seed"), ("fps", "fps"), ("upscale", "upscale"))},
        "validation.judge": ("validation.scorers", lambda on: ["judge"] if on else []),
    }
    # Options of experiments that were not shipped, at the values that left them off.
    REMOVED: ClassVar[dict[str, Any]] = {
        "train.self_input_prob": 0.0, "train.self_input_gap": 40, "train.feature_loss_weight": 0.0,
        "train.feature_loss_viclip": None, "train.feature_loss_min_snr": 0.1, "train.feature_loss_preprocess": "demo",
    }

    output_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
