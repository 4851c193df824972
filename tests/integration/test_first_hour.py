"""A newcomer's first hour: what the default model knows, missing extras, finished runs, --json, vidgen env."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from tests.train_helpers import ClipTensors, collate, tiny_config
from vidgen.cli.main import main

SHIPPED_PROMPT = "a red circle slides to the left on a white background"


@pytest.fixture(scope="module")
def shipped():
    from vidgen.pipelines.loading import load_pipeline

    return load_pipeline(device="cpu")


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "vidgen"]


@pytest.mark.slow
def test_the_default_model_names_the_words_it_does_not_know(shipped, caplog):
    kwargs = dict(num_frames=2, num_inference_steps=1)
    with caplog.at_level(logging.WARNING, logger="vidgen"):
        shipped(SHIPPED_PROMPT, negative_prompt="blurry, low quality", **kwargs)
    assert _warnings(caplog) == []  # a toy-world prompt: nothing to say; a negative prompt may use any words
    with caplog.at_level(logging.WARNING, logger="vidgen"):
        frames = shipped("a majestic eagle flying over snowy mountains at sunset", **kwargs).frames
        shipped("a majestic eagle flying over snowy mountains at sunset", **kwargs)  # said once per prompt
    assert frames.shape[1] == 2  # it still renders
    unknown = [w for w in _warnings(caplog) if "does not know" in w]
    assert len(unknown) == 1
    assert "'majestic', 'eagle', 'flying', 'snowy', 'mountains', 'at', 'sunset'" in unknown[0]
    assert "circle, square or triangle" in unknown[0] and "docs/weights.md" in unknown[0]
    dropped = [w for w in _warnings(caplog) if "dropped" in w]
    assert dropped == ["prompt longer than the text encoder's 32 tokens; dropped: 'sunset'"]


def test_a_model_without_a_vocabulary_gets_only_the_truncation_warning(tiny_motion_model, caplog):
    from vidgen.pipelines.loading import load_pipeline

    pipe = load_pipeline(tiny_motion_model, device="cpu")
    limit = pipe.tokenizer.model_max_length
    words = [f"word{i}" for i in range(limit + 5)]
    with caplog.at_level(logging.WARNING, logger="vidgen"):
        pipe("a majestic eagle", num_frames=2, height=16, width=16, num_inference_steps=1)
        pipe(" ".join(words), num_frames=2, height=16, width=16, num_inference_steps=1)
    messages = _warnings(caplog)
    assert len(messages) == 1 and "dropped:" in messages[0]
    dropped = messages[0].split("dropped: ")[1].strip("'").split()
    assert dropped == words[-len(dropped):] and 5 <= len(dropped) < len(words)


def test_a_missing_extra_is_one_line_naming_the_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5, "lr": 1e-3, "samples_per_s": 3.0}) + "\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    assert main(["train", "plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("vidgen train: error: vidgen train plot needs the optional package 'matplotlib': "
                   'pip install "vidgen[train]" (or pip install matplotlib)')
    assert not (tmp_path / "curves.png").exists()


def test_a_missing_tracker_stops_training_before_any_work(tiny_motion_model, tmp_path, monkeypatch):
    from vidgen.extras import MissingExtraError
    from vidgen.training.loop import train

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "logging.tracker=tensorboard")
    with pytest.raises(MissingExtraError, match=r'logging.tracker=tensorboard .*pip install "vidgen\[train\]"'):
        train(cfg, dataset=ClipTensors(), collate_fn=collate)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_resuming_a_finished_run_recomputes_nothing_and_more_steps_continue_it(tiny_motion_model, tmp_path, capsys):
    from vidgen.training.loop import train

    run = tmp_path / "run"
    opts = ("validation.prompts=[a cat]", "validation.sampling.frames=2", "validation.sampling.height=16",
            "validation.sampling.width=16", "validation.sampling.steps=1")
    first = train(tiny_config(tiny_motion_model, run, "train.max_steps=2", *opts), dataset=ClipTensors(), collate_fn=collate)
    checkpoint = first.checkpoint
    stamp = (checkpoint / "trainer_state.json").stat().st_mtime_ns
    videos = sorted((run / "validation").rglob("*.mp4"))
    again = train(tiny_config(tiny_motion_model, run, "train.max_steps=2", *opts), resume="latest",
                  dataset=ClipTensors(), collate_fn=collate)
    assert again.finished_before and again.state.step == 2 and again.checkpoint == checkpoint
    assert (checkpoint / "trainer_state.json").stat().st_mtime_ns == stamp
    assert sorted((run / "validation").rglob("*.mp4")) == videos  # no validation ran again
    more = train(tiny_config(tiny_motion_model, run, "train.max_steps=3", *opts), resume="latest",
                 dataset=ClipTensors(), collate_fn=collate)
    assert not more.finished_before and more.state.step == 3 and len(more.losses) == 1


def test_json_output_parses_and_holds_the_counts_the_text_says(tmp_path, capsys):
    assert main(["data", "toyworld", "-o", str(tmp_path / "a"), "num_videos=3", "width=16", "height=16", "--no-progress"]) == 0
    text = capsys.readouterr().out.strip().splitlines()
    assert len(text) == 1 and "GenerateSummary(" not in text[0]
    assert main(["data", "toyworld", "-o", str(tmp_path / "b"), "num_videos=3", "width=16", "height=16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert text[0].startswith(f"wrote {summary['num_clips']} clips ({summary['num_degraded']} degraded) from 3 source videos")
    rows = tmp_path / "b" / "rows.jsonl"
    assert main(["data", "filter", str(rows), "-o", str(tmp_path / "f.jsonl"), "--min-aesthetic", "4", "--json"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["rows"]["read"] == summary["num_clips"] and kept["kept"] + sum(kept["dropped"].values()) == summary["num_clips"]
    assert main(["data", "stats", str(rows), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]["valid"] == summary["num_clips"]


@pytest.mark.slow
def test_sample_and_score_json(tiny_motion_model, tmp_path, capsys):
    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import save_viclip

    out = tmp_path / "v.mp4"
    assert main(["sample", "--model", str(tiny_motion_model), "--prompt", "a red circle", "--out", str(out), "--frames", "4",
                 "--height", "16", "--width", "16", "--steps", "1", "--json"]) == 0
    captured = capsys.readouterr()
    sample = json.loads(captured.out)
    assert sample["count"] == 1 and sample["videos"] == [str(out)]
    viclip = save_viclip(ViCLIP(get_config("tiny")), tmp_path / "viclip")
    assert main(["score", str(out), "--viclip", str(viclip), "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["scored"] == 1 and score["summary"]["viclip"]["count"] == 1
    assert np.isfinite(score["summary"]["viclip"]["mean"])


def test_vidgen_env_lists_what_importlib_metadata_reports(capsys):
    from importlib import metadata

    import vidgen

    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Copy and paste this into your bug report:")
    assert f"- vidgen: {vidgen.__version__}" in text
    for dist, label in (("torch", "torch"), ("diffusers", "diffusers"), ("transformers", "transformers"),
                        ("accelerate", "accelerate"), ("av", "PyAV")):
        assert f"- {label}: {metadata.version(dist)}" in text
    assert "- xformers:" in text and "- CUDA:" in text and "- shipped weights index sha256:" in text
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["diffusers"] == metadata.version("diffusers") and len(report["shipped weights index sha256"]) == 64


def test_a_damaged_checkpoint_is_one_line_when_resuming(tiny_motion_model, tmp_path):
    from vidgen.errors import ModelLoadError
    from vidgen.training.loop import train

    run = tmp_path / "run"
    (run / "checkpoint-000002").mkdir(parents=True)
    (run / "checkpoint-000002" / "trainer_state.json").write_text("{")
    with pytest.raises(ModelLoadError, match="cannot read .*trainer_state.json"):
        train(tiny_config(tiny_motion_model, run, "train.max_steps=2"), resume="latest", dataset=ClipTensors(),
              collate_fn=collate)
