"""The denoising objective: noise, timesteps, targets and loss weights for one batch.

All randomness comes from an explicit ``torch.Generator`` so that a resumed run
draws exactly the noise the uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch

from vidgen.errors import ConfigError

PREDICTION_TYPES = ("epsilon", "v_prediction")


def step_generator(seed: int, step: int, process_index: int = 0) -> torch.Generator:
    """A generator for one optimisation step, independent of everything drawn before it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + process_index * 104_729) % (2**63 - 1))


def sample_noise(latents: torch.Tensor, generator: torch.Generator, offset_noise: float = 0.0) -> torch.Tensor:
    """Gaussian noise shaped like ``latents`` ``[B, C, F, h, w]``.

    With ``offset_noise > 0`` a per-video, per-channel constant is added (Guttenberg
    2023, "Diffusion with offset noise"), which lets the model learn overall
    brightness changes that plain noise leaves nearly untouched.
    """
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device, latents.dtype)
    if offset_noise > 0:
        b, c = latents.shape[:2]
        shift = torch.randn((b, c) + (1,) * (latents.ndim - 2), generator=generator, dtype=torch.float32)
        noise = noise + offset_noise * shift.to(latents.device, latents.dtype)
    return noise


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator, device, low: int = 0,
                     high: int | None = None) -> torch.Tensor:
    """Uniform integer timesteps in ``[low, high)`` (``high`` defaults to ``num_train_timesteps``).

    Raises:
        ConfigError: a range outside ``[0, num_train_timesteps]`` or an empty one.
    """
    high = num_train_timesteps if high is None else high
    if not 0 <= low < high <= num_train_timesteps:
        raise ConfigError(f"timestep range [{low}, {high}) does not fit the scheduler's {num_train_timesteps} timesteps")
    return torch.randint(low, high, (batch,), generator=generator).to(device)


def prediction_type(scheduler) -> str:
    """The scheduler's ``prediction_type``, one training supports.

    Raises:
        ConfigError: any other (e.g. ``sample``).
    """
    kind = scheduler.config.prediction_type
    if kind not in PREDICTION_TYPES:
        raise ConfigError(f"prediction_type {kind!r} is not supported for training; use one of {', '.join(PREDICTION_TYPES)}")
    return kind


def target_for(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the denoiser must predict: the noise (epsilon) or v = alpha_t * eps - sigma_t * x0 (Salimans & Ho 2022).

    Raises:
        ConfigError: an unsupported ``prediction_type`` in the scheduler config.
    """
    if prediction_type(scheduler) == "epsilon":
        return noise
    return scheduler.get_velocity(latents, noise, timesteps)


def snr(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at each timestep."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas_cumprod / (1.0 - alphas_cumprod)


def loss_weights(scheduler, timesteps: torch.Tensor, snr_gamma: float | None) -> torch.Tensor | None:
    """Min-SNR-gamma weights (Hang et al. 2023): min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v.

    Returns ``None`` when ``snr_gamma`` is not set (plain MSE).
    """
    if not snr_gamma:
        return None
    s = snr(scheduler, timesteps)
    clipped = torch.clamp(s, max=snr_gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (s + 1.0)
    return clipped / s.clamp(min=1e-8)


def context_mask(batch: int, num_frames: int, prob: float, max_frames: int, generator: torch.Generator) -> torch.Tensor | None:
    """Which latent frames are given clean as context: ``[B, F]`` bool, or ``None`` when none are.

    Each clip, with probability ``prob``, gets its first ``k`` frames as context,
    ``k`` uniform in ``1 .. min(max_frames, F - 1)`` (at least one frame is always
    left to denoise). Nothing is drawn from ``generator`` when ``prob`` is 0 or the
    clips are single frames, so runs without context keep their random stream.
    """
    if prob <= 0 or num_frames < 2:
        return None
    chosen = torch.rand(batch, generator=generator) < prob
    k = torch.randint(1, min(max_frames, num_frames - 1) + 1, (batch,), generator=generator)
    mask = (torch.arange(num_frames)[None, :] < k[:, None]) & chosen[:, None]
    return mask if bool(mask.any()) else None


def reverse_mask(scheduler, timesteps: torch.Tensor, num_frames: int, prob: float, max_snr: float,
                 generator: torch.Generator, context: torch.Tensor | None = None) -> torch.Tensor | None:
    """Which clips are shown in reverse frame order: ``[B]`` bool, or ``None`` when none are.

    Each clip noised to an SNR of at most ``max_snr`` is chosen with probability
    ``prob``; clips with context frames never are (their clean frames fix the
    order). Nothing is drawn from ``generator`` when ``prob`` is 0 or the clips
    are single frames (image batches).
    """
    if prob <= 0 or num_frames < 2:
        return None
    chosen = torch.rand(timesteps.shape[0], generator=generator).to(timesteps.device) < prob
    chosen &= snr(scheduler, timesteps) <= max_snr
    if context is not None:
        chosen &= ~context.any(dim=1).to(chosen.device)
    return chosen if bool(chosen.any()) else None


def reverse_order(noisy: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``noisy`` ``[B, C, F, h, w]`` with the clips marked in ``mask`` ``[B]`` in reverse frame order."""
    if mask is None:
        return noisy
    return torch.where(mask[:, None, None, None, None], noisy.flip(2), noisy)


def target_from_input(scheduler, noisy: torch.Tensor, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The target whose implied clean prediction from ``noisy`` is ``latents``, whatever ``noisy`` was made from.

    For a ``noisy`` made by ``add_noise(latents, noise, t)`` this equals
    :func:`target_for`; for a reordered input it asks for the clip in its own
    order: epsilon = (x_t - alpha_t * x0) / sigma_t, v = (alpha_t * x_t - x0) / sigma_t.

    Raises:
        ConfigError: an unsupported ``prediction_type`` in the scheduler config.
    """
    a = scheduler.alphas_cumprod.to(noisy.device)[timesteps].float()
    shape = (-1,) + (1,) * (noisy.dim() - 1)
    alpha, sigma = a.sqrt().view(shape), (1.0 - a).sqrt().clamp(min=1e-8).view(shape)
    if prediction_type(scheduler) == "epsilon":
        return (noisy.float() - alpha * latents.float()) / sigma
    return (alpha * noisy.float() - latents.float()) / sigma


def with_context(noisy: torch.Tensor, latents: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``noisy`` ``[B, C, F, h, w]`` with the frames marked in ``mask`` ``[B, F]`` replaced by the clean ``latents``."""
    if mask is None:
        return noisy
    keep = mask[:, None, :, None, None].to(noisy.device)
    return torch.where(keep, latents.to(noisy.dtype), noisy)


def diffusion_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, context: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error per video, optionally weighted per video, averaged over the batch.

    ``context`` (``[B, F]`` bool, see :func:`context_mask`) leaves the frames given
    clean out of each video's mean.
    """
    err = (pred.float() - target.float()).pow(2)
    if context is None:
        per_video = err.flatten(1).mean(dim=1)
    else:
        # Mean over each video's denoised frames only (every video keeps at least one).
        denoised = (~context).to(err.device, err.dtype)[:, None, :, None, None].expand_as(err)
        per_video = (err * denoised).flatten(1).sum(dim=1) / denoised.flatten(1).sum(dim=1)
    if weights is not None:
        per_video = per_video * weights.to(per_video.device)
    return per_video.mean()
