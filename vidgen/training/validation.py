"""Validation during training: sample the configured prompts (with EMA weights), write MP4s, score them.

Scores come from scorers: ``clipsim`` (ViCLIP, when ``validation.viclip`` is set) and any
named in ``validation.scorers``, which the caller of :func:`~vidgen.training.loop.train`
provides (``vidgen train`` passes the ones it knows). A scorer takes the
videos (``uint8 [F, H, W, 3]`` each) and their prompts and returns named numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from vidgen.errors import ConfigError
from vidgen.training.config import TrainConfig

VideoScorer = Callable[[Sequence[np.ndarray], Sequence[str]], dict[str, float]]


def check_scorers(cfg: TrainConfig, scorers: Mapping[str, VideoScorer]) -> None:
    """Fail before training when ``validation.scorers`` names a scorer nobody provides.

    Raises:
        ConfigError: naming the unknown scorer and the available ones.
    """
    unknown = [name for name in cfg.validation.scorers if name not in scorers]
    if unknown:
        available = ", ".join(sorted(scorers)) or "none"
        raise ConfigError(f"validation.scorers names {', '.join(map(repr, unknown))}, which no scorer provides "
                          f"(available: {available})")


def sample_validation_videos(cfg: TrainConfig, models, unet, step: int) -> list[tuple[str, np.ndarray, Path]]:
    """Sample every validation prompt with ``unet`` as it is now; write each to an MP4.

    Returns:
        ``(prompt, frames [F, H, W, 3] float in [0, 1], path)`` per prompt.
    """
    from vidgen.io.writer import write_video
    from vidgen.pipelines.sample import slugify
    from vidgen.pipelines.schedulers import make_scheduler
    from vidgen.pipelines.settings import pipeline_kwargs
    from vidgen.pipelines.text_to_video import TextToVideoPipeline

    v, s = cfg.validation, cfg.validation.sampling
    scheduler = make_scheduler(s.scheduler, models.sampling_scheduler.config) if s.scheduler else models.sampling_scheduler
    pipe = TextToVideoPipeline(vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer,
                               unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    out_dir = Path(cfg.output_dir) / "validation" / f"step-{step:06d}"
    results = []
    was_training = unet.training
    unet.eval()
    try:
        for i, prompt in enumerate(v.prompts):
            frames = pipe(prompt, generator=torch.Generator().manual_seed(s.seed + i), **pipeline_kwargs(s)).frames[0]
            path = write_video(out_dir / f"{i:03d}-{slugify(prompt)}.mp4", frames, fps=s.fps, overwrite=True,
                               upscale_factor=s.upscale)
            results.append((prompt, frames, path))
    finally:
        unet.train(was_training)
    return results


def run_validation(cfg: TrainConfig, models, unet, ema, params, step: int,
                   scorers: Mapping[str, VideoScorer] | None = None) -> dict[str, Any]:
    """Sample (with EMA weights when configured), write videos, and score them.

    Returns:
        Scores: ``num_videos`` and, where configured, ``clipsim`` (ViCLIP) and each named scorer's numbers.
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
    scores.update(score_videos(cfg, videos, scorers or {}))
    return scores


def clipsim_scorer(viclip: str) -> VideoScorer:
    """ViCLIP CLIPSIM as a scorer: ``clipsim`` is the mean cosine of each video with its prompt."""
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.models.viclip_io import load_viclip

    scorer = ViCLIPScorer(load_viclip(viclip))

    def score(clips: Sequence[np.ndarray], prompts: Sequence[str]) -> dict[str, float]:
        pre = scorer.preprocess
        embeds = scorer.embed_videos(torch.stack([pre.transform(c[pre.frame_indices(len(c))]) for c in clips]))
        texts = scorer.embed_texts(list(prompts))
        return {"clipsim": float((embeds * texts).sum(dim=1).mean())}

    return score


def score_videos(cfg: TrainConfig, videos: list[tuple[str, np.ndarray, Path]],
                 scorers: Mapping[str, VideoScorer]) -> dict[str, float]:
    """The configured scores of validation videos: ``clipsim`` when ``validation.viclip`` is set, then
    every scorer ``validation.scorers`` names (looked up in ``scorers``)."""
    from vidgen.io.writer import to_uint8_frames

    scores: dict[str, float] = {}
    if not videos:
        return scores
    clips = [to_uint8_frames(frames) for _, frames, _ in videos]
    prompts = [prompt for prompt, _, _ in videos]
    chosen = ([clipsim_scorer(cfg.validation.viclip)] if cfg.validation.viclip else []) + \
        [scorers[name] for name in cfg.validation.scorers]
    for scorer in chosen:
        scores.update(scorer(clips, prompts))
    return scores
