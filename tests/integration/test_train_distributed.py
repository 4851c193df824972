"""`vidgen train` as two DDP processes on CPU (gloo), the way `torchrun`/`accelerate launch` run it."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_model(tiny_motion_model, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()),
           str(REPO / "tests" / "ddp_helpers.py"), str(tiny_motion_model), str(tmp_path / "run"), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training with 2 processes (MULTI_CPU, gloo backend)") == 1  # said once, by the first
    ranks = sorted((json.loads(p.read_text()) for p in tmp_path.glob("rank-*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert all(r["step"] == 4 and r["samples"] == 8 for r in ranks)  # 4 steps x 1 clip x 2 processes
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each process saw its own shard of the data
    # ...but gradients were averaged, so both processes end with the same weights.
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000004"]


def test_a_lone_process_of_accelerate_launch_cpu_says_how_to_start_several(tiny_motion_model, tmp_path, monkeypatch, capsys):
    """`accelerate launch --cpu --num_processes 2` starts one process (MPI aside), with what its launcher sets."""
    from tests.train_helpers import ClipTensors, collate, tiny_config
    from vidgen.training.loop import train

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    result = train(tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=1"), dataset=ClipTensors(),
                   collate_fn=collate)
    out = capsys.readouterr().out
    assert result.state.samples_seen == 2  # one process's batch: the launch line asked for two
    assert out.startswith("training with 1 process on cpu; `accelerate launch --cpu` starts one process whatever "
                          "--num_processes says: use `torchrun --nproc_per_node N -m vidgen train ...`"), out
