"""The training data named by a config's ``data`` section, as a dataset and its collate function."""

from __future__ import annotations

from typing import Any, Callable

from vidgen.training.config import DataConfig


def build_dataset(cfg: DataConfig, seed: int) -> tuple[Any, Callable]:
    """Open ``cfg.path`` as the configured source.

    * ``folder``: clip files (captions from ``cfg.rows`` or sidecar ``.txt``), map-style.
    * ``shards``: WebDataset tar shards, streamed forever (each process reads its own shards).
    * ``latents``: a ``vidgen data cache`` folder, map-style; no VAE or text encoding per step.

    Returns:
        ``(dataset, collate_fn)``.

    Raises:
        DataError: the data cannot be opened (missing folder, no clips, no cache).
    """
    from vidgen.data.frames import FramePolicy

    if cfg.source == "latents":
        from vidgen.data.cache import CachedLatentDataset, collate_latents

        return CachedLatentDataset(cfg.path, sample_posterior=cfg.sample_posterior, caption_dropout=cfg.caption_dropout,
                                   seed=seed), collate_latents
    from vidgen.data.datasets import ClipFolderDataset, ShardVideoDataset, collate

    policy = FramePolicy(num_frames=cfg.num_frames, stride=None if cfg.fps else cfg.frame_stride, fps=cfg.fps,
                         height=cfg.height, width=cfg.width, crop=cfg.crop)
    if cfg.source == "folder":
        return ClipFolderDataset(cfg.path, rows=cfg.rows, policy=policy, caption_dropout=cfg.caption_dropout, seed=seed), collate
    return ShardVideoDataset(cfg.path, policy=policy, caption_dropout=cfg.caption_dropout, seed=seed,
                             shuffle_buffer=cfg.shuffle_buffer, repeat=True), collate


def skipped_count(dataset) -> int:
    """How many unusable clips a dataset has skipped so far (0 when it does not count)."""
    skipped = getattr(dataset, "skipped", None)
    if callable(skipped):
        skipped = skipped()
    if isinstance(skipped, dict):
        return int(sum(skipped.values()))
    return int(skipped or 0)
