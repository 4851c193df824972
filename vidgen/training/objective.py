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


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform integer timesteps in ``[0, num_train_timesteps)``."""
    return torch.randint(0, num_train_timesteps, (batch,), generator=generator).to(device)


def target_for(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the denoiser must predict: the noise (epsilon) or v = alpha_t * eps - sigma_t * x0 (Salimans & Ho 2022).

    Raises:
        ConfigError: an unsupported ``prediction_type`` in the scheduler config.
    """
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ConfigError(f"prediction_type {kind!r} is not supported for training; use one of {', '.join(PREDICTION_TYPES)}")


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


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per video, optionally weighted per video, averaged over the batch."""
    per_video = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    if weights is not None:
        per_video = per_video * weights.to(per_video.device)
    return per_video.mean()
