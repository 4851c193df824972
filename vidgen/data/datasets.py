"""Training datasets of video-text pairs: a map-style one over a clip folder, an iterable one over shards.

Both yield ``{"pixel_values": float32 [T, C, H, W] in [-1, 1], "caption": str,
"key": str}``; :func:`collate` batches them. The caption is replaced by ``""``
with probability ``caption_dropout``, the unconditional input that
classifier-free guidance trains (Ho & Salimans 2022). A corrupt, unreadable or
too-short clip is skipped and counted (``dataset.skipped``), never raised
mid-epoch. Random choices (window, crop, caption dropout) come from a
generator derived from (seed, epoch, index), so a map-style dataset gives the
same item for the same (seed, epoch, index) in any process: resuming a run
replays it exactly.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from vidgen.data.frames import ClipTooShortError, FramePolicy, bytes_as_file, item_rng, key_rng, load_clip
from vidgen.data.readers import RowReport, iter_rows
from vidgen.data.rows import Row
from vidgen.errors import DataError, InputError, VideoError
from vidgen.io.text import read_text

logger = logging.getLogger(__name__)

SKIP_REASONS = ("corrupt", "too_short", "missing_member", "unreadable_shard")
_MAX_WORKERS = 64  # rows of the shared skip counter; workers beyond share the last rows
_LOGGED_SKIPS = 20


class SkipCounter:
    """Counts of skipped samples by reason, shared by the DataLoader's worker processes.

    Each process writes its own row of a shared-memory tensor (the main
    process row 0, worker ``i`` row ``i + 1``), so counts from workers add up
    in the main process without locks.
    """

    def __init__(self) -> None:
        self.table = torch.zeros(_MAX_WORKERS + 1, len(SKIP_REASONS), dtype=torch.int64).share_memory_()
        self._logged = 0

    def add(self, reason: str, key: str, detail: str) -> None:
        """Count one skipped sample (and log the first few)."""
        info = get_worker_info()
        row = 0 if info is None else 1 + info.id % _MAX_WORKERS
        self.table[row, SKIP_REASONS.index(reason)] += 1
        if self._logged < _LOGGED_SKIPS:
            self._logged += 1
            logger.warning("skipped %s (%s): %s", key, reason.replace("_", " "), detail)

    def counts(self) -> dict[str, int]:
        """``{reason: count}`` over all processes."""
        totals = self.table.sum(dim=0).tolist()
        return dict(zip(SKIP_REASONS, (int(t) for t in totals)))

    @property
    def total(self) -> int:
        """Samples skipped so far."""
        return int(self.table.sum())


def _check_dropout(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise InputError(f"caption dropout must be a probability in [0, 1], got {p!r}")


def load_or_skip(path: str | os.PathLike, policy: FramePolicy, rng: np.random.Generator | None, key: str,
                 counter: SkipCounter) -> torch.Tensor | None:
    """:func:`~vidgen.data.frames.load_clip`, or ``None`` with the reason counted when the clip is unusable."""
    try:
        return load_clip(path, policy, rng)
    except ClipTooShortError as exc:
        counter.add("too_short", key, str(exc))
    except VideoError as exc:
        counter.add("corrupt", key, str(exc))
    return None


def _with_caption(pixels: torch.Tensor, caption: str, key: str, dropout: float, rng: np.random.Generator) -> dict[str, Any]:
    if dropout and rng.random() < dropout:
        caption = ""  # the unconditional input classifier-free guidance trains
    return {"pixel_values": pixels, "caption": caption, "key": key}


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: ``pixel_values`` stacked to ``[B, T, C, H, W]``; ``caption`` and ``key`` as lists.

    Raises:
        DataError: an empty batch or items of different shapes.
    """
    if not items:
        raise DataError("cannot collate an empty batch")
    shapes = {tuple(item["pixel_values"].shape) for item in items}
    if len(shapes) > 1:
        raise DataError(f"items of different shapes in one batch: {sorted(shapes)}")
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "caption": [item["caption"] for item in items],
        "key": [item["key"] for item in items],
    }


def folder_items(root: str | os.PathLike, rows: str | os.PathLike | Iterable[Row] | None = None,
                 report: RowReport | None = None) -> tuple[list[tuple[str, Path, str]], int]:
    """``(key, clip path, caption)`` for a clip folder, and how many clips are missing.

    With ``rows`` (a rows file or rows), each row's clip is ``root/{clip_name}``
    and the caption is the row's. Without, every video file under ``root``
    (recursively, as video2dataset's ``files`` layout) with a same-named
    ``.txt`` beside it is an item.

    Raises:
        DataError: ``root`` is not a folder, or a caption file is not UTF-8.
    """
    from vidgen.io.video import is_video_file

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"clip folder not found: {str(root)!r}")
    items: list[tuple[str, Path, str]] = []
    missing = 0
    if rows is not None:
        source = iter_rows(rows, report=report) if isinstance(rows, (str, os.PathLike)) else rows
        for row in source:
            path = root / row.clip_name
            if path.is_file():
                items.append((row.key, path, row.caption))
            else:
                missing += 1
        return items, missing
    for path in sorted(p for p in root.rglob("*") if p.is_file() and is_video_file(p)):
        sidecar = path.with_suffix(".txt")
        if sidecar.is_file():
            key = str(path.relative_to(root).with_suffix("")).replace(os.sep, "/")
            items.append((key, path, read_text(sidecar).strip()))
        else:
            missing += 1
    return items, missing


class ClipFolderDataset(Dataset):
    """Map-style video-text dataset over a folder of clip files.

    Args:
        root: the clip folder.
        rows: a rows file (or rows) naming the clips (``{clip_name}``) and
            their captions; ``None`` pairs each video file with its ``.txt``.
        policy: frames, size and crop.
        caption_dropout: probability of an empty caption (for CFG).
        seed: base seed of the per-item random choices.
        max_substitutions: when a clip cannot be used, the next indices are
            tried (deterministically) up to this many times.

    Raises:
        DataError: no usable clips found.
    """

    def __init__(self, root: str | os.PathLike, rows: str | os.PathLike | Iterable[Row] | None = None, *,
                 policy: FramePolicy | None = None, caption_dropout: float = 0.0, seed: int = 0,
                 max_substitutions: int = 16):
        _check_dropout(caption_dropout)
        self.policy = policy or FramePolicy()
        self.caption_dropout = caption_dropout
        self.seed = seed
        self.epoch = 0
        self.max_substitutions = max_substitutions
        self.rows_report = RowReport()
        self.items, self.missing = folder_items(root, rows, self.rows_report)
        if not self.items:
            raise DataError(f"no clips with captions found in {str(root)!r} ({self.missing} missing)")
        self.skip_counter = SkipCounter()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random choices ``__getitem__`` makes."""
        self.epoch = int(epoch)

    @property
    def skipped(self) -> dict[str, int]:
        """Clips skipped so far, by reason (summed over DataLoader workers)."""
        return self.skip_counter.counts()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        attempts = min(self.max_substitutions, len(self) - 1) + 1
        for attempt in range(attempts):
            key, path, caption = self.items[(index + attempt) % len(self)]
            rng = item_rng(self.seed, self.epoch, index, attempt)
            pixels = load_or_skip(path, self.policy, rng, key, self.skip_counter)
            if pixels is not None:
                return _with_caption(pixels, caption, key, self.caption_dropout, rng)
        raise DataError(f"{attempts} clips in a row from index {index} are unusable; "
                        f"skipped so far: {self.skipped}")


class ShardVideoDataset(IterableDataset):
    """Iterable video-text dataset streamed from WebDataset shards (this project's or video2dataset's).

    Shards are shuffled per epoch (from ``seed`` and the epoch), split across
    nodes (``RANK``/``WORLD_SIZE`` or ``torch.distributed``) and DataLoader
    workers, and samples pass through a shuffle buffer. Each sample's random
    choices come from (seed, epoch, its key), so they do not depend on which
    worker decodes it.

    Under ``accelerate`` with several processes, each rank already reads its
    own shards: iterate the DataLoader directly (moving batches to
    ``accelerator.device``) rather than passing it to ``accelerator.prepare``,
    which would split the stream a second time. Ranks may hold different
    numbers of samples; with ``repeat=True`` the stream never ends and the
    training loop counts steps, so no rank waits for another at an epoch's end.

    Args:
        urls: shards: paths, folders, globs, brace patterns or fsspec URLs
            (see :func:`~vidgen.data.shards.expand_urls`).
        policy: frames, size and crop.
        caption_dropout: probability of an empty caption (for CFG).
        seed: base seed of shard order, shuffle buffer and per-sample choices.
        shuffle_buffer: samples held for shuffling (0: stream order).
        shuffle_shards: shuffle the shard order each epoch.
        split_by_node: give each distributed rank its own slice of shards.
        repeat: start over (with a new shard order) when the shards run out,
            for step-counted training.

    Raises:
        DataError: no shards found.
        MissingExtraError: webdataset is not installed.
    """

    def __init__(self, urls: str | os.PathLike | Sequence[str | os.PathLike], *, policy: FramePolicy | None = None,
                 caption_dropout: float = 0.0, seed: int = 0, shuffle_buffer: int = 0, shuffle_shards: bool = True,
                 split_by_node: bool = True, repeat: bool = False):
        from vidgen.extras import require
        from vidgen.data.shards import expand_urls

        require("webdataset", "reading WebDataset shards")
        _check_dropout(caption_dropout)
        if shuffle_buffer < 0:
            raise InputError(f"shuffle buffer must be >= 0, got {shuffle_buffer}")
        self.urls = expand_urls(urls)
        if not self.urls:
            raise DataError(f"no shards in {urls!r}")
        self.policy = policy or FramePolicy()
        self.caption_dropout = caption_dropout
        self.seed = seed
        self.epoch = 0
        self.shuffle_buffer = shuffle_buffer
        self.shuffle_shards = shuffle_shards
        self.split_by_node = split_by_node
        self.repeat = repeat
        self.skip_counter = SkipCounter()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (shard order, shuffle and per-sample choices)."""
        self.epoch = int(epoch)

    @property
    def skipped(self) -> dict[str, int]:
        """Samples skipped so far, by reason (summed over DataLoader workers)."""
        return self.skip_counter.counts()

    def _handler(self, exc: Exception) -> bool:
        self.skip_counter.add("unreadable_shard", "shard", str(exc.args[0]) if exc.args else type(exc).__name__)
        return True

    def shard_order(self, cycle: int = 0) -> list[str]:
        """The shard order of this epoch (and of its ``cycle``-th pass with ``repeat``), before splitting."""
        urls = list(self.urls)
        if self.shuffle_shards:
            random.Random(hash((self.seed, self.epoch, cycle))).shuffle(urls)
        return urls

    def decode(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """One raw shard sample to an item, or ``None`` (counted) when it cannot be used."""
        from vidgen.data.shards import sample_caption, sample_video

        key = str(sample.get("__key__", "?"))
        video, caption = sample_video(sample), sample_caption(sample)
        if video is None or caption is None:
            lacking = "video" if video is None else "caption"
            self.skip_counter.add("missing_member", key, f"no {lacking} member in {sample.get('__url__', '?')}")
            return None
        rng = key_rng(self.seed, self.epoch, key)
        with bytes_as_file(video[1], "." + video[0]) as path:
            pixels = load_or_skip(path, self.policy, rng, key, self.skip_counter)
        if pixels is None:
            return None
        return _with_caption(pixels, caption, key, self.caption_dropout, rng)

    def _my_shards(self, cycle: int) -> list[str]:
        import webdataset as wds

        urls: Iterable[str] = self.shard_order(cycle)
        if self.split_by_node:
            urls = wds.split_by_node(urls)
        return list(wds.split_by_worker(urls))

    def raw_samples(self) -> Iterator[dict[str, Any]]:
        """This process's raw samples (its node's and worker's shards), shuffled when asked."""
        import webdataset as wds

        from vidgen.data.shards import iter_samples

        def stream() -> Iterator[dict[str, Any]]:
            cycle = 0
            while True:
                urls = self._my_shards(cycle)
                if not urls:
                    return  # more workers than shards: this one has none (repeating would spin)
                yield from iter_samples(urls, self._handler)
                if not self.repeat:
                    return
                cycle += 1

        samples = stream()
        if self.shuffle_buffer > 1:
            rank, _, worker, _ = wds.utils.pytorch_worker_info()
            rng = random.Random(hash((self.seed, self.epoch, rank, worker)))
            samples = wds.shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100), rng=rng)(samples)
        return samples

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for sample in self.raw_samples():
            item = self.decode(sample)
            if item is not None:
                yield item
