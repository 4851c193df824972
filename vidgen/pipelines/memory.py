"""What a sampling size costs in memory, checked before any model loads.

``--frames 32 --height 2048 --width 2048`` or ``--upscale 1000`` would otherwise run until an
allocation of many GiB fails with the allocator's traceback, after minutes of loading and
denoising. :func:`check_sampling_size` reads the model's configs (no weights), estimates the
largest of the three peaks a video goes through (the denoiser's activations, VAE decoding, the
written and upscaled video) and refuses, naming the estimate and the memory there is, when it
cannot fit. ``vidgen sample``, ``story``, ``eval`` and training validation all call it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidgen.errors import InputError
from vidgen.io.files import read_json_object

if TYPE_CHECKING:
    from vidgen.pipelines.settings import SamplingSettings
    from vidgen.pipelines.weights import WeightsSettings

GIB = 2**30
# Activations per latent value, in units of the denoiser's first-level channel count: measured on the shipped
# UNetMotionModel (27 at 512x512, 8 frames, with guidance; feed-forward, attention and skip tensors of the
# first level), rounded down so that sizes which fit are never refused.
DENOISER_TENSORS = 24
# Activations per decoded pixel of a chunk, in units of the VAE's first-level channel count (measured: 5.75;
# the last up-block's tensors and the upsampled one before it).
VAE_TENSORS = 5
# Copies of the decoded video in float32 while it is scaled, clamped and moved to numpy (measured: 2).
DECODED_COPIES = 2


@dataclass(frozen=True)
class ModelGeometry:
    """The sizes of a text-to-video model that decide its memory, read from its configs.

    Attributes:
        vae_factor: pixels per latent cell along each side.
        vae_channels: channels of the VAE decoder's full-resolution level.
        latent_channels: channels of a latent.
        denoiser_channels: channels of the denoiser's first (full latent resolution) level.
        default_size: ``(height, width)`` the model samples when none is asked.
        train_timesteps: the scheduler's training timesteps (most denoising steps it can take), if known.
        max_frames: the frames the denoiser takes at once (its motion modules' length), if it has a limit: a
            longer video is denoised in context windows of at most this many frames.
    """

    vae_factor: int
    vae_channels: int
    latent_channels: int
    denoiser_channels: int
    default_size: tuple[int, int]
    train_timesteps: int | None = None
    max_frames: int | None = None


def geometry_from_configs(vae: dict[str, Any], unet: dict[str, Any], scheduler: dict[str, Any] | None = None,
                          motion: dict[str, Any] | None = None) -> ModelGeometry:
    """:class:`ModelGeometry` from the VAE's, the denoiser's (and the scheduler's, and a separate motion adapter's)
    ``config`` mappings."""
    vae_blocks = list(vae.get("block_out_channels") or [128])
    factor = 2 ** (len(vae_blocks) - 1)
    size = unet.get("sample_size") or 32
    h, w = (size, size) if isinstance(size, int) else size
    steps = (scheduler or {}).get("num_train_timesteps")
    frames = (motion or unet).get("motion_max_seq_length")
    return ModelGeometry(vae_factor=factor, vae_channels=int(vae_blocks[0]), latent_channels=int(vae.get("latent_channels", 4)),
                         denoiser_channels=int((unet.get("block_out_channels") or [320])[0]),
                         default_size=(int(h) * factor, int(w) * factor),
                         train_timesteps=int(steps) if isinstance(steps, int) else None,
                         max_frames=int(frames) if isinstance(frames, int) else None)


def read_geometry(model: str | os.PathLike | None, weights: "WeightsSettings | None" = None) -> ModelGeometry | None:
    """The geometry of a model folder, or of ``--base`` (its folder, or the configs describing a single file);
    ``None`` when the configs are not there to read (the loader then says what is wrong)."""
    motion = None
    if weights is not None and weights.assembled:
        motion = read_json_object(Path(weights.motion_adapter) / "config.json")  # an original motion-module file has none
        base = Path(weights.base)
        if base.is_file():
            from vidgen.pipelines.weights import SD15_CONFIG_DIR

            base = Path(weights.base_config) if weights.base_config else SD15_CONFIG_DIR
        folder = base
    elif model is not None:
        folder = Path(model)
    else:
        return None
    vae, unet = read_json_object(folder / "vae" / "config.json"), read_json_object(folder / "unet" / "config.json")
    if vae is None or unet is None:
        return None
    return geometry_from_configs(vae, unet, read_json_object(folder / "scheduler" / "scheduler_config.json"), motion)


def model_geometry(model: str | os.PathLike | None, weights: "WeightsSettings | None" = None, pipe=None) -> ModelGeometry | None:
    """The geometry of the model a job samples with: a loaded ``pipe``'s, else the configs of its folder, its
    ``--base``, or the shipped model's."""
    if pipe is not None:
        return geometry_of(pipe.vae, pipe.unet, pipe.scheduler)
    if model is None and not (weights is not None and weights.assembled):
        from vidgen.pipelines.loading import DEFAULT_MODEL_DIR

        model = DEFAULT_MODEL_DIR
    return read_geometry(model, weights)


def geometry_of(vae, unet, scheduler=None) -> ModelGeometry:
    """:class:`ModelGeometry` of loaded modules (a pipeline's, or the ones a training run builds)."""
    return geometry_from_configs(dict(vae.config), dict(unet.config), dict(scheduler.config) if scheduler is not None else None)


def memory_needed(geometry: ModelGeometry, frames: int, height: int, width: int, *, batch: int = 1, guidance: bool = True,
                  upscale: int = 1, upscale_mode: str = "nearest", written_frames: int | None = None,
                  decode_chunk_size: int = 16, dtype_bytes: int = 4, window: int | None = None) -> dict[str, int]:
    """Estimated peak bytes of each stage of sampling ``batch`` videos of ``frames`` at ``height`` x ``width``.

    Args:
        geometry: the model's sizes.
        guidance: classifier-free guidance doubles the denoiser's batch.
        upscale, upscale_mode: the enlargement of written videos.
        written_frames: frames of the longest written video (a stitched story), default ``frames``.
        decode_chunk_size: frames the VAE decodes at once.
        dtype_bytes: bytes per value of the weights' dtype (4 for fp32, 2 for fp16/bf16).
        window: frames the denoiser sees at once (a long video's context windows), default all of them.

    Returns:
        ``{"denoise": bytes, "decode": bytes, "write": bytes}``.
    """
    at_once = min(frames, window or frames)
    latent_values = batch * (2 if guidance else 1) * at_once * (height // geometry.vae_factor) * (width // geometry.vae_factor)
    pixels = height * width
    chunk = min(decode_chunk_size, batch * frames)
    return {
        "denoise": latent_values * geometry.denoiser_channels * DENOISER_TENSORS * dtype_bytes,
        "decode": chunk * pixels * geometry.vae_channels * VAE_TENSORS * dtype_bytes + batch * frames * pixels * 12 * DECODED_COPIES,
        "write": write_bytes(frames, height, width, batch=batch, upscale=upscale, upscale_mode=upscale_mode,
                             written_frames=written_frames),
    }


def write_bytes(frames: int, height: int, width: int, *, batch: int = 1, upscale: int = 1, upscale_mode: str = "nearest",
                written_frames: int | None = None) -> int:
    """Estimated peak bytes while videos are written: every video of the batch in float32, and the one being written
    in uint8 and enlarged (bicubic enlarges through float32 copies)."""
    pixels = height * width
    written = written_frames or frames
    upscaled = written * pixels * upscale**2 * 3 if upscale > 1 else 0
    return batch * frames * pixels * 12 + written * pixels * 3 + upscaled * (1 if upscale_mode == "nearest" else 13)


STAGES = {"denoise": "in the denoiser", "decode": "to decode the frames", "write": "to write the video"}


def check_sampling_size(
    settings: "SamplingSettings",
    geometry: ModelGeometry | None,
    *,
    batch: int = 1,
    written_frames: int | None = None,
    frames: int | None = None,
    upscale_mode: str = "nearest",
    decode_chunk_size: int = 16,
    dtype: str = "fp32",
    device: str = "auto",
    available: int | None = None,
) -> tuple[int, int]:
    """Refuse, before the model loads, a size the model cannot take or the machine cannot hold.

    Args:
        settings: the sampling settings (frames, size, steps, guidance, upscale).
        geometry: the model's sizes (:func:`read_geometry`); ``None`` checks what needs no model.
        batch: videos denoised together.
        written_frames: frames of the longest written video (a stitched story).
        frames: frames denoised at once, when not ``settings.frames`` (a story clip of its own length).
        upscale_mode, decode_chunk_size, dtype: as the job samples and writes.
        device: where the denoiser and VAE run; on a GPU they are checked against its free memory.
        available: bytes of memory available (default: :func:`vidgen.runtime.available_memory`).

    Returns:
        The ``(height, width)`` that will be sampled.

    Raises:
        InputError: a size not divisible by the VAE factor, more steps than the scheduler has timesteps,
            or a size whose estimated memory exceeds what is available, with the estimate.
    """
    from vidgen.runtime import available_memory, gpu_free_memory

    s = settings
    frames = frames or s.frames
    default = geometry.default_size if geometry is not None else (None, None)
    height, width = s.height or default[0], s.width or default[1]
    if geometry is not None:
        for name, value in (("height", height), ("width", width)):
            if value % geometry.vae_factor:
                raise InputError(f"sampling.{name}={value} is not divisible by the VAE factor {geometry.vae_factor}")
        if geometry.train_timesteps is not None and s.steps > geometry.train_timesteps:
            raise InputError(f"sampling.steps={s.steps} is more than the {geometry.train_timesteps} timesteps the "
                             "model's scheduler was trained with")
    if height is None or width is None:
        return height, width  # sizes only the loaded model knows; its own checks apply
    upscale = s.upscale
    what = f"sampling.frames={frames}, height={height}, width={width}" + (f" (a batch of {batch})" if batch > 1 else "")
    written = written_frames or frames
    if geometry is None:  # without the model's sizes, only what the written video itself needs
        need = {"write": write_bytes(frames, height, width, batch=batch, upscale=upscale, upscale_mode=upscale_mode,
                                     written_frames=written)}
    else:
        need = memory_needed(geometry, frames, height, width, batch=batch, guidance=s.guidance > 1, upscale=upscale,
                             upscale_mode=upscale_mode, written_frames=written, decode_chunk_size=decode_chunk_size,
                             dtype_bytes=2 if dtype in ("fp16", "bf16") else 4,
                             window=s.context_length or geometry.max_frames)  # as the pipeline windows a long video
    gpu = gpu_free_memory(device) if device.startswith("cuda") or device == "auto" else None
    # On a GPU the denoiser and the VAE hold their activations there; the decoded frames come back to the host.
    places = {stage: "gpu" if gpu is not None and stage != "write" else "host" for stage in need}
    for place in ("gpu", "host"):
        stages = {stage: need[stage] for stage in need if places[stage] == place}
        if not stages:
            continue
        have = gpu if place == "gpu" else available if available is not None else available_memory()
        stage, peak = max(stages.items(), key=lambda item: item[1])
        if have is None or peak <= have:
            continue
        if stage == "write" and upscale > 1:
            what = (f"sampling.upscale={upscale} ({written} frames of {height}x{width} written as "
                    f"{height * upscale}x{width * upscale})")
        where = "the GPU has" if place == "gpu" else "this machine has"
        raise InputError(f"{what} needs about {peak / GIB:.1f} GiB of memory {STAGES[stage]}; {where} "
                         f"{have / GIB:.1f} GiB available")
    return height, width
