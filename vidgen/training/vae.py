"""Training a small image VAE (``diffusers.AutoencoderKL``) for a latent video model.

For a world with no pretrained VAE to borrow, train one on its frames: reconstruction (MSE) plus a small KL term (the recipe of Rombach
et al. 2022 without the perceptual and adversarial terms, which flat synthetic
frames do not need). After training the latent scale is measured so that scaled
latents have unit variance, as the diffusion model expects.

Frames come from a source: ``data.source: folder`` samples frames of the video
files under ``data.path``; other sources are named frame sources the caller
passes in (``train_vae(cfg, sources={name: factory})``; ``vidgen train vae`` passes the ones it knows).

    vidgen train vae --config configs/toy/vae.yaml
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Mapping, Optional, Protocol

import numpy as np
import torch
from omegaconf import MISSING

from vidgen.errors import ConfigError, DataError
from vidgen.training.config import normalize_precision


@dataclass
class VAEModelConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32


@dataclass
class VAEDataConfig:
    source: str = "folder"  # folder: video files under `path` | a named frame source given to train_vae
    path: Optional[str] = None
    size: int = 32
    frames_per_clip: int = 4  # frames taken from each clip into a batch
    seed: int = 0
    stream: dict = field(default_factory=dict)  # settings of a named source (its own schema)


@dataclass
class VAETrainConfig:
    """``vidgen train vae`` settings."""

    # Keys of configs written before the data source became a choice (they configured the source).
    RENAMED: ClassVar[dict[str, str]] = {"eval_clips": "data.stream.eval_clips"}

    output_dir: str = MISSING  # the trained VAE is written to {output_dir}/vae
    model: VAEModelConfig = field(default_factory=VAEModelConfig)
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    steps: int = 2000
    batch_size: int = 32  # frames per step
    lr: float = 1e-3
    warmup_steps: int = 100
    kl_weight: float = 1e-6
    mixed_precision: str = "bf16"  # no | bf16 (CPU autocast) | fp16 (CUDA)
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0:
            raise ConfigError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        self.mixed_precision = normalize_precision(self.mixed_precision)


class FrameSource(Protocol):
    """What ``train_vae`` reads: endless batches of RGB frames, and optionally its own report on a trained VAE."""

    def batches(self, batch_size: int, start: int) -> Iterator[np.ndarray]:
        """``uint8 [B, H, W, 3]`` batches, the first from position ``start`` of the source."""
        ...

    def report(self, vae) -> dict[str, float]:
        """Measures of the trained ``vae`` on this source's frames (``{}`` when it has none)."""
        ...


FrameSourceFactory = Callable[["VAEDataConfig"], FrameSource]


class FolderFrames:
    """Frames of the video files under a folder, drawn at random (``frames_per_clip`` from each clip)."""

    def __init__(self, cfg: VAEDataConfig):
        self.cfg = cfg

    def batches(self, batch_size: int, start: int) -> Iterator[np.ndarray]:
        return _folder_frames(self.cfg, batch_size, self.cfg.seed + start)

    def report(self, vae) -> dict[str, float]:
        return {}


def _folder_frames(cfg: VAEDataConfig, batch: int, seed: int) -> Iterator[np.ndarray]:
    from vidgen.errors import VideoError
    from vidgen.io.video import is_video_file, probe, read_frames

    files = sorted(p for p in Path(cfg.path).rglob("*") if p.is_file() and is_video_file(p))
    if not files:
        raise DataError(f"no video files under {cfg.path!r}")
    rng = np.random.default_rng(seed)
    while True:
        frames = []
        while len(frames) < batch:
            path = files[rng.integers(len(files))]
            try:
                n = probe(path).num_frames
                idx = sorted(rng.choice(n, size=min(n, cfg.frames_per_clip), replace=False).tolist())
                frames.extend(read_frames(path, idx, size=(cfg.size, cfg.size)))
            except VideoError:
                continue  # an unreadable clip: take another
        yield np.stack(frames[:batch])


def make_frame_source(cfg: VAEDataConfig, sources: Mapping[str, FrameSourceFactory] | None = None) -> FrameSource:
    """The frame source ``cfg.source`` names: ``folder`` or one of ``sources``.

    Raises:
        ConfigError: an unknown source name.
    """
    factories: dict[str, FrameSourceFactory] = {"folder": FolderFrames, **(sources or {})}
    if cfg.source not in factories:
        raise ConfigError(f"data.source must be one of {', '.join(factories)}, got {cfg.source!r}")
    if cfg.source == "folder" and not cfg.path:
        raise ConfigError(f"data.source=folder (the default) needs data.path, a folder of videos; the sources here: "
                          f"{', '.join(factories)}")
    return factories[cfg.source](cfg)


def frame_batches(source: FrameSource, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
    """Batches ``[B, 3, H, W]`` in [-1, 1] from ``source``."""
    for frames in source.batches(batch_size, start):
        yield torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def build_vae(cfg: VAEModelConfig):
    """A fresh ``AutoencoderKL`` with a downsampling factor of ``2 ** (len(block_out_channels) - 1)``."""
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups,
    )


@torch.no_grad()
def latent_scale(vae, batches: Iterator[torch.Tensor], num_batches: int = 8) -> float:
    """1 / std of posterior-mean latents: the factor that gives the diffusion model unit-variance inputs."""
    values = [vae.encode(next(batches)).latent_dist.mean.flatten() for _ in range(num_batches)]
    return float(1.0 / torch.cat(values).std())


def train_vae(cfg: VAETrainConfig, progress: bool = True,
              sources: Mapping[str, FrameSourceFactory] | None = None) -> dict[str, float]:
    """Train the VAE and save it to ``{output_dir}/vae`` with its measured ``scaling_factor``.

    Args:
        cfg: the settings.
        progress: show a progress bar.
        sources: named frame sources besides ``folder`` (``{name: factory(data config)}``).

    Returns:
        The final report: loss, scale, seconds, and the source's own measures of the trained VAE.
    """
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    from vidgen.io.files import atomic_write_text

    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision=fp16 needs a CUDA GPU; use bf16 or no")
    source = make_frame_source(cfg.data, sources)
    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae = build_vae(cfg.model).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "vae_metrics.jsonl"
    batches = frame_batches(source, cfg.batch_size)
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="vae", disable=not progress, dynamic_ncols=True)
    for step in bar:
        x = next(batches).to(device)
        with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            posterior = vae.encode(x).latent_dist
            rec = vae.decode(posterior.sample()).sample
        rec_loss = (rec.float() - x).pow(2).mean()
        kl = posterior.kl().float().mean() / x[0].numel()  # per-pixel, like the reconstruction term
        loss = rec_loss + cfg.kl_weight * kl * x[0].numel()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            record = {"step": step + 1, "loss": loss.item(), "rec_mse": rec_loss.item(), "kl": kl.item(),
                      "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - start}
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(mse=f"{rec_loss.item():.5f}")
    vae.eval()
    vae.to("cpu", torch.float32)
    scale = latent_scale(vae, frame_batches(source, cfg.batch_size, start=(cfg.steps + 1) * cfg.batch_size))
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    report = {"final_rec_mse": rec_loss.item(), "scaling_factor": scale, "seconds": time.perf_counter() - start}
    report.update(source.report(vae))
    atomic_write_text(out / "vae_report.json", json.dumps(report, indent=1))
    return report
