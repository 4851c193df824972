"""A ViCLIP feature loss on the denoiser's clean prediction: LPIPS's recipe with the video CLIP as the network.

The latent MSE weighs every latent value alike, and a detail that decides what a caption names can
be a small share of it: on the toy world, a square and a circle of the same size and place differ by
7% of the object's latent energy, about as much as a one-pixel shift, while in the toy ViCLIP's
patch tokens they differ by 17-21% (1.5x a one-pixel shift; benchmarks/RESULTS.md, 2026-12-02).
This loss decodes the clean prediction implied by the denoiser's output and the clean clip through
the frozen VAE, runs both through the frozen ViCLIP video tower and compares every block's patch
tokens, each unit-normalised over channels (Zhang et al. 2018, "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric"), so what the video CLIP tells apart weighs more.

Only clips noised to an SNR of at least ``min_snr`` take part: at lower SNR the clean prediction is
a blurred mean of many clips by design, and pulling its features towards one clip's would bias it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidgen.errors import ConfigError
from vidgen.training.objective import clean_from_output, snr


class ViCLIPFeatureLoss(torch.nn.Module):
    """Per-clip feature distance between predicted and real clean latents, through a frozen VAE and ViCLIP.

    Args:
        viclip: a :class:`vidgen.models.viclip.ViCLIP` (frozen here).
        vae: the diffusers ``AutoencoderKL`` the latents belong to (frozen).
        mean, std: the ViCLIP's input normalisation of ``[0, 1]`` RGB (its preprocessing preset's).
    """

    def __init__(self, viclip, vae, mean, std):
        super().__init__()
        self.viclip = viclip.eval().requires_grad_(False)
        self.vae = vae
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)

    def video(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C, F, h, w]`` -> the ViCLIP's normalised input ``[B, T, 3, S, S]`` (differentiable).

        Frames are decoded one by one through the VAE, cropped to the centre square, resized to the
        ViCLIP's side and, for clips longer or shorter than its frame count, taken at segment middles.
        A single frame stays a single frame (the ViCLIP reads images too).
        """
        b, c, f = latents.shape[:3]
        vae = self.vae
        z = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, *latents.shape[3:]) / vae.config.scaling_factor
        if getattr(vae.config, "shift_factor", None):
            z = z + vae.config.shift_factor
        frames = vae.decode(z.to(next(vae.parameters()).dtype)).sample.float()  # [B*F, 3, H, W] in about [-1, 1]
        h, w = frames.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        frames = frames[..., top : top + side, left : left + side]
        size = self.viclip.config.image_size
        if side != size:
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        video = frames.reshape(b, f, 3, size, size)
        t = self.viclip.config.num_frames
        if f not in (1, t):
            index = ((torch.arange(t, dtype=torch.float64) + 0.5) * f / t).floor().long()
            video = video[:, index]
        return ((video.clamp(-1, 1) + 1) / 2 - self.mean) / self.std

    def features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Each ViCLIP block's patch tokens ``[B, N, width]``, unit-normalised over channels."""
        states = self.viclip.vision_encoder.layer_states(self.video(latents))
        return [F.normalize(s[:, 1:].float(), dim=-1, eps=1e-6) for s in states]

    def forward(self, predicted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Per-clip distance ``[B]``: squared token difference summed over channels, averaged over tokens and blocks.

        Gradients reach ``predicted`` only; ``clean`` is the real clip's latents.
        """
        with torch.no_grad():
            real = self.features(clean)
        fake = self.features(predicted)
        per_block = [(p - r).pow(2).sum(-1).mean(-1) for p, r in zip(fake, real)]
        return torch.stack(per_block).mean(0)


def build_feature_loss(path: str, preset: str, vae, device) -> ViCLIPFeatureLoss:
    """Load the ViCLIP at ``path`` frozen, with the normalisation of the preprocessing ``preset`` (``demo``/``vbench``).

    Raises:
        ConfigError: an unknown preset.
        ModelLoadError: the ViCLIP cannot be loaded.
    """
    from vidgen.metrics.preprocess import PRESETS
    from vidgen.models.viclip_io import load_viclip

    if preset not in PRESETS:
        raise ConfigError(f"train.feature_loss_preprocess must be one of {', '.join(PRESETS)}, got {preset!r}")
    viclip = load_viclip(path, device=device)
    return ViCLIPFeatureLoss(viclip, vae, PRESETS[preset].mean, PRESETS[preset].std).to(device)


def feature_loss_term(loss_fn: ViCLIPFeatureLoss, scheduler, noisy: torch.Tensor, output: torch.Tensor,
                      latents: torch.Tensor, timesteps: torch.Tensor, min_snr: float,
                      context: torch.Tensor | None = None) -> torch.Tensor | None:
    """The batch's feature loss: summed over the clips at SNR >= ``min_snr``, divided by the batch size.

    Frames given clean as context (``context``, ``[B, F]`` bool) enter the prediction as they are.
    Returns ``None`` when no clip qualifies (nothing to decode).
    """
    chosen = snr(scheduler, timesteps) >= min_snr
    if not bool(chosen.any()):
        return None
    idx = chosen.nonzero().flatten()
    predicted = clean_from_output(scheduler, noisy[idx], output[idx], timesteps[idx])
    clean = latents[idx].float()
    if context is not None:
        known = context[idx].to(predicted.device)[:, None, :, None, None]
        predicted = torch.where(known, clean, predicted)
    return loss_fn(predicted, clean).sum() / latents.shape[0]
