"""scripts/latent_probe.py: a probe that reads an attribute from latent frames, on cached and generated latents."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from vidgen.cli.main import main as vidgen_main


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "latent_probe.py"
    spec = importlib.util.spec_from_file_location("latent_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_learns_a_readable_pattern_and_not_an_unreadable_one():
    """Class 1 frames carry a bright 2x2 block at a random place: readable. Random labels: chance on held-back clips."""
    probe_mod = _script()
    gen = torch.Generator().manual_seed(0)
    n, frames = 240, 2
    latents = torch.randn(n, frames, 4, 8, 8, generator=gen) * 0.3
    labels = torch.randint(0, 2, (n,), generator=gen)
    for i in torch.nonzero(labels).flatten().tolist():
        y, x = torch.randint(0, 7, (2,), generator=gen).tolist()
        latents[i, :, 0, y : y + 2, x : x + 2] += 2.0
    _, readable = probe_mod.train_probe(latents, labels, 2, epochs=8, seed=0, batch_size=32)
    assert min(readable.values()) > 0.9, readable
    shuffled = labels[torch.randperm(n, generator=gen)]
    _, unreadable = probe_mod.train_probe(latents, shuffled, 2, epochs=8, seed=0, batch_size=32)
    assert sum(unreadable.values()) / 2 < 0.8, unreadable


def test_latent_probe_end_to_end_on_a_tiny_toy_cache(tiny_motion_model, tmp_path, capsys):
    toy, rows, clips, shards, cache = (tmp_path / n for n in ("toy", "aes.jsonl", "clips", "shards", "cache"))
    for args in (("data", "toyworld", "-o", toy, "--no-progress", "num_videos=6", "width=16", "height=16", "min_frames=4",
                  "max_frames=4", "seed=3"),
                 ("data", "filter", toy / "rows.jsonl", "-o", rows),
                 ("data", "clips", rows, "--sources", toy, "-o", clips),
                 ("data", "shard", rows, "--clips", clips, "-o", shards),
                 ("data", "cache", shards, "-o", cache, "--model", tiny_motion_model, "--frames", 4, "--size", 16)):
        assert vidgen_main([str(a) for a in args]) == 0, args
    probe_mod = _script()
    out = tmp_path / "probe.json"
    argv = ["--cache", str(cache), "--model", str(tiny_motion_model), "--per-value", "2", "--epochs", "1", "--steps", "2",
            "--trajectory", "--out", str(out)]
    assert probe_mod.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["values"] == ["circle", "square", "triangle"]
    for value, row in report["per_value"].items():
        assert row["n"] == 2 and 0 <= row["probe_accuracy"] <= 1 and 0 <= row["judge_accuracy"] <= 1
        assert sum(row["probe_mean"]) == pytest.approx(1, abs=1e-3)
    assert [r["step"] for r in report["trajectory"]] == [0, 1]
    assert "| circle | 2 |" in capsys.readouterr().out
    # Bad input: one line, exit 2, nothing overwritten.
    before = out.read_text()
    assert probe_mod.main(argv) == 2  # exists, no --overwrite
    assert probe_mod.main(["--cache", str(tmp_path / "missing"), "--model", str(tiny_motion_model)]) == 2
    assert probe_mod.main(["--cache", str(cache), "--model", str(tiny_motion_model), "--attribute", "motion"]) == 2
    assert out.read_text() == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("latent_probe: error:") for line in err), err
