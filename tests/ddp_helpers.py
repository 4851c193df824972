"""A two-process training run for tests/integration/test_train_distributed.py (run under torchrun)."""

from __future__ import annotations

import json
import os
import sys

import torch

from tests.train_helpers import ClipTensors, collate, tiny_config
from vidgen.training.loop import train

if __name__ == "__main__":
    base, out, report_dir, *overrides = sys.argv[1:]
    captured = {}

    def remember(state, loss):
        captured["loss"] = loss

    cfg = tiny_config(base, out, "train.max_steps=4", "checkpoint.every=2", "data.batch_size=1", *overrides)
    result = train(cfg, dataset=ClipTensors(n=8), collate_fn=collate, on_step=remember)
    # This process's own copy of the weights (not the checkpoint, which only rank 0 writes).
    checksum = float(sum(v.double().abs().sum() for v in result.model.state_dict().values()))
    # One file per rank: two processes printing to one shared stdout can interleave their lines.
    rank = int(os.environ["RANK"])
    report = {"rank": rank, "world": int(os.environ["WORLD_SIZE"]), "step": result.state.step,
              "samples": result.state.samples_seen, "losses": result.losses, "checksum": checksum,
              "threads": torch.get_num_threads()}
    with open(os.path.join(report_dir, f"rank-{rank}.json"), "w") as f:
        json.dump(report, f)
