"""The whole InternVid path, from the command line, on toy-world data:
toyworld -> filter -> clips -> shard -> cache -> train on latents -> export -> sample."""

from __future__ import annotations

import pytest

import json

from vidgen.cli.main import main
from vidgen.io import probe


def cli(*args) -> None:
    rc = main([str(a) for a in args])
    assert rc == 0, args


@pytest.mark.slow
def test_rows_to_a_trained_model_folder(tiny_motion_model, tmp_path):
    toy, rows, clips, shards, cache = (tmp_path / n for n in ("toy", "aes.jsonl", "clips", "shards", "cache"))
    cli("data", "toyworld", "-o", toy, "--no-progress", "num_videos=4", "width=16", "height=16", "min_frames=6", "max_frames=8",
        "degraded_fraction=0.3", "seed=1")
    all_rows = (toy / "rows.jsonl").read_text().splitlines()
    cli("data", "filter", toy / "rows.jsonl", "-o", rows, "--min-aesthetic", 4)
    kept = rows.read_text().splitlines()
    assert 0 < len(kept) < len(all_rows)  # the degraded (low-aesthetic) clips are gone
    assert all(json.loads(r)["Aesthetic_Score"] >= 4 for r in kept)
    cli("data", "clips", rows, "--sources", toy, "-o", clips)
    cut = sorted(clips.glob("*.mp4"))
    assert len(cut) == len(kept)
    first = json.loads(kept[0])
    assert probe(clips / f"{first['YoutubeID']}_{first['Start_timestamp']}_{first['End_timestamp']}.mp4").num_frames == first["toy_num_frames"]
    cli("data", "shard", rows, "--clips", clips, "-o", shards, "--max-count", 4)
    assert len(list(shards.glob("*.tar"))) == -(-len(kept) // 4)
    cli("data", "cache", shards, "-o", cache, "--model", tiny_motion_model, "--frames", 4, "--size", 16)
    run = tmp_path / "run"
    cli("train", f"model.base={tiny_motion_model}", "model.denoiser=base", "data.source=latents", f"data.path={cache}",
        f"output_dir={run}", "train.max_steps=2", "data.batch_size=2", "logging.tracker=none", "logging.progress=false",
        "validation.sampling.frames=4", "validation.sampling.height=16", "validation.sampling.width=16",
        "validation.sampling.steps=2")
    cli("export", run, "--out", tmp_path / "model")
    cli("sample", "--model", tmp_path / "model", "--prompt", first["Caption"], "--out", tmp_path / "out.mp4", "--no-progress")
    assert probe(tmp_path / "out.mp4").num_frames == 4
