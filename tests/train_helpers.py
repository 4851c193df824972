"""A tiny in-memory video-text dataset and config builder for training tests (also run as a script)."""

from __future__ import annotations

import sys

import torch


class ClipTensors(torch.utils.data.Dataset):
    """``n`` random clips ``[T, 3, H, W]`` in [-1, 1] with captions; clip ``nan_index`` is all NaN."""

    def __init__(self, n: int = 4, frames: int = 4, size: int = 16, nan_index: int | None = None, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, frames, 3, size, size, generator=g) * 2 - 1
        if nan_index is not None:
            self.x[nan_index] = float("nan")
        self.captions = [f"clip number {i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "caption": self.captions[i], "key": str(i)}


def collate(items: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([i["pixel_values"] for i in items]),
        "caption": [i["caption"] for i in items],
        "key": [i["key"] for i in items],
    }


def tiny_config(base, out, *overrides: str):
    from vidgen.config import load_config
    from vidgen.training.config import TrainConfig

    return load_config(TrainConfig, overrides=[
        f"model.base={base}", "model.denoiser=base", "data.path=in-memory", f"output_dir={out}",
        "data.batch_size=2", "optim.lr=1e-3", "optim.warmup_steps=2", "logging.tracker=none", "logging.progress=false",
        "train.log_every=1", *overrides,
    ])


if __name__ == "__main__":
    # python tests/train_helpers.py BASE OUT key=value... : a training run a test can SIGKILL.
    from vidgen.training.loop import train

    base, out, *rest = sys.argv[1:]
    resume = None
    if rest and rest[0] == "--resume":
        resume, rest = "latest", rest[1:]
    train(tiny_config(base, out, *rest), resume=resume, dataset=ClipTensors(), collate_fn=collate)
