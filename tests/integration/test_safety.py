"""Nothing lost: folder replacement, export targets, resumed metrics, story overwrites, damaged weights."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from vidgen.cli.main import main
from vidgen.errors import InputError, ModelLoadError, OutputError
from vidgen.io.files import atomic_folder, atomic_write_text


def test_atomic_folder_keeps_the_old_version_when_the_body_fails(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model_index.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_folder(out, overwrite=True) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in out.iterdir()) == ["model_index.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or backup folder left behind


def test_atomic_folder_refuses_to_replace_what_it_did_not_write(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="does not look like"):
        with atomic_folder(home, overwrite=True, replaceable=lambda p: (p / "model_index.json").is_file()):
            pass
    assert (home / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        with atomic_folder(tmp_path / "file", overwrite=True):
            pass


def test_written_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "hi")
        with atomic_folder(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("y")
            os.chmod(tmp / "x", 0o600)  # as some libraries write
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "folder" / "x").stat().st_mode) == 0o644


def test_resumed_runs_drop_metric_rows_logged_after_the_checkpoint(tmp_path):
    from vidgen.training.checkpoint import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 1.0 / s} for s in (50, 100, 150, 200)] + [{"step": 100, "viclip": 0.3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert truncate_metrics(path, 100) == 2
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [50, 100, 100]
    assert truncate_metrics(tmp_path / "missing.jsonl", 5) == 0


def test_damaged_or_mismatched_weights_are_a_model_load_error(tmp_path):
    from safetensors.torch import save_file

    from vidgen.training.checkpoint import load_weights_into

    module = torch.nn.Linear(3, 2)
    part = tmp_path / "unet"
    part.mkdir()
    save_file({"weight": torch.zeros(4, 4), "bias": torch.zeros(2)}, str(part / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_weights_into(module, part)
    (part / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_weights_into(module, part)


def test_story_overlap_must_fit_every_clip_that_is_continued():
    from vidgen.pipelines.story import StoryPipeline, StorySegment

    segments = [StorySegment("a", num_frames=2), StorySegment("b", num_frames=8)]
    with pytest.raises(InputError, match="clip 2 cannot continue it"):
        StoryPipeline(None)._check(segments, 8, 3, "continuity")
    StoryPipeline(None)._check([StorySegment("a", num_frames=3), segments[1]], 8, 3, "continuity")  # all 3 frames shared


@pytest.mark.slow
def test_story_checks_outputs_before_generating_and_overwrite_drops_stale_clips(tiny_motion_model, tmp_path, capsys):
    out = tmp_path / "story"
    base = ["story", "--model", str(tiny_motion_model), "--frames-per-clip", "4", "--overlap", "1", "--steps", "2",
            "--out", str(out), "sampling.height=16", "sampling.width=16"]
    assert main(base + ["--prompt", "a", "--prompt", "b", "--prompt", "c"]) == 0
    before = (out / "story.mp4").stat().st_mtime_ns
    assert main(base + ["--prompt", "a", "--prompt", "b", "--fps", "0"]) == 2
    assert "argument --fps: must be a finite number > 0, got 0" in capsys.readouterr().err
    assert main(base + ["--prompt", "a", "--prompt", "b"]) == 2
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert (out / "story.mp4").stat().st_mtime_ns == before
    assert main(base + ["--prompt", "a", "--prompt", "b", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("clip_*.mp4")) == ["clip_000.mp4", "clip_001.mp4"]


def test_export_refuses_to_write_into_its_own_run(tmp_path):
    from vidgen.training.export import export_model

    run = tmp_path / "run"
    ckpt = run / "checkpoint-000010"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (run / "config.yaml").write_text("output_dir: run\n")
    for out in (run, run / "model", ckpt):
        with pytest.raises(OutputError, match="overlaps the run folder"):
            export_model(run, out, overwrite=True)
    assert (ckpt / "trainer_state.json").is_file()


def test_a_fresh_run_refuses_a_folder_holding_checkpoints(tmp_path):
    from vidgen.config import load_config
    from vidgen.errors import ConfigError
    from vidgen.training.config import TrainConfig
    from vidgen.training.loop import train

    run = tmp_path / "run"
    (run / "checkpoint-000010").mkdir(parents=True)
    (run / "checkpoint-000010" / "trainer_state.json").write_text("{}")
    cfg = load_config(TrainConfig, overrides={"output_dir": str(run), "model": {"base": str(tmp_path / "base")},
                                            "data": {"path": str(tmp_path / "data")},
                                            "logging": {"tracker": "none"}})
    with pytest.raises(ConfigError, match="--resume latest"):
        train(cfg)
    assert (run / "checkpoint-000010" / "trainer_state.json").is_file()
