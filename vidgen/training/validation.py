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
                          guidance_scale=v.guidance, guidance_interval=v.guidance_interval,
                          generator=torch.Generator().manual_seed(v.seed + i)).frames[0]
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
    """ViCLIP CLIPSIM and toy-world judge scores of validation videos, as configured.

    Returns:
        ``clipsim`` (mean ViCLIP cosine of each video with its prompt) when
        ``validation.viclip`` is set; ``judge_<attribute>`` (fraction of videos
        whose judged attribute matches the prompt, over prompts that state it)
        and ``judge_all`` when ``validation.judge`` is on.
    """
    from vidgen.io.writer import to_uint8_frames

    scores: dict[str, float] = {}
    if not videos:
        return scores
    clips = [to_uint8_frames(frames) for _, frames, _ in videos]
    prompts = [prompt for prompt, _, _ in videos]
    if cfg.validation.viclip:
        from vidgen.metrics.clipsim import ViCLIPScorer
        from vidgen.models.viclip_io import load_viclip

        scorer = ViCLIPScorer(load_viclip(cfg.validation.viclip))
        pre = scorer.preprocess
        embeds = scorer.embed_videos(torch.stack([pre.transform(c[pre.frame_indices(len(c))]) for c in clips]))
        texts = scorer.embed_texts(prompts)
        scores["clipsim"] = float((embeds * texts).sum(dim=1).mean())
    if cfg.validation.judge:
        from vidgen.metrics.judge import faithfulness, judge_frames

        results = [faithfulness(judge_frames(c), p).matches for c, p in zip(clips, prompts)]
        for attr in ("color", "shape", "motion", "background"):
            stated = [m[attr] for m in results if attr in m]
            if stated:
                scores[f"judge_{attr}"] = float(np.mean(stated))
        scores["judge_all"] = float(np.mean([all(m.values()) for m in results]))
    return scores
