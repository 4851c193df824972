"""The generic trainers on real data (a folder of captioned MP4 clips), through `vidgen train vae|viclip`, and their
plug-in points: named data sources and named validation scorers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.train_helpers import ClipTensors, collate, tiny_config
from vidgen.cli.main import main
from vidgen.errors import ConfigError


def _clip_folder(root, n: int, seed: int, corrupt: int = 0):
    """``n`` MP4 clips of a moving bar (its colour and direction vary) with sidecar captions; ``corrupt`` broken ones."""
    from vidgen.io.writer import write_video

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        colour, step = rng.integers(40, 255, 3), int(rng.choice([-2, 2]))
        frames = np.zeros((8, 24, 24, 3), np.uint8)
        for t in range(8):
            x = (4 + step * t) % 20
            frames[t, :, x : x + 4] = colour
        write_video(root / f"clip{i:02d}.mp4", frames, fps=8)
        (root / f"clip{i:02d}.txt").write_text(f"a bar of colour {colour.tolist()} moving {'right' if step > 0 else 'left'}")
    for i in range(corrupt):
        (root / f"broken{i}.mp4").write_bytes(b"\x00" * 100)
        (root / f"broken{i}.txt").write_text("a broken clip")
    return root


TINY_VICLIP = ["size=tiny", "model.image_size=16", "model.num_frames=4", "model.patch_size=8", "steps=3", "batch_size=4",
               "log_every=1", "mixed_precision=no"]


@pytest.mark.slow
def test_viclip_trains_on_a_clip_folder_and_reports_held_out_recall(tmp_path, capsys):
    from vidgen.models.viclip_io import load_viclip

    clips = _clip_folder(tmp_path / "clips", 6, seed=0, corrupt=1)
    held = _clip_folder(tmp_path / "held", 4, seed=1)
    out = tmp_path / "run"
    assert main(["train", "viclip", "data.source=folder", f"data.path={clips}", f"data.eval_path={held}",
                 f"output_dir={out}", "eval_clips=4", *TINY_VICLIP]) == 0
    assert "wrote" in capsys.readouterr().out
    report = json.loads((out / "viclip_report.json").read_text())
    assert 0.0 <= report["t2v_recall@1"] <= 1.0 and np.isfinite(report["clipsim_real"])
    assert load_viclip(out / "viclip").config.num_frames == 4
    # Without a held-out folder there is no retrieval report, and training still runs.
    assert main(["train", "viclip", f"data.path={clips}", f"output_dir={tmp_path / 'plain'}", *TINY_VICLIP]) == 0
    assert "t2v_recall@1" not in json.loads((tmp_path / "plain" / "viclip_report.json").read_text())


def test_the_folder_stream_is_reproducible_and_skips_unreadable_clips(tmp_path):
    from vidgen.metrics.preprocess import get_preprocess
    from vidgen.training.viclip import FolderPairs

    clips = _clip_folder(tmp_path / "clips", 5, seed=0, corrupt=2)
    pre = get_preprocess("demo", 4, 16)
    a, b = FolderPairs(str(clips), None, pre, seed=3), FolderPairs(str(clips), None, pre, seed=3)
    first, again = a.batch(1, 4), b.batch(1, 4)
    assert first.videos.shape == (4, 4, 3, 16, 16) and first.captions == again.captions
    assert "a broken clip" not in first.captions + a.batch(0, 4).captions + a.batch(2, 4).captions
    assert a.skipped > 0
    assert a.eval_pairs(4) is None


def test_vae_trains_on_a_video_folder(tmp_path, capsys):
    from diffusers import AutoencoderKL

    clips = _clip_folder(tmp_path / "clips", 3, seed=0)
    out = tmp_path / "run"
    assert main(["train", "vae", "data.source=folder", f"data.path={clips}", "data.size=16", f"output_dir={out}",
                 "model.block_out_channels=[32,32]", "steps=2", "batch_size=4", "log_every=1", "mixed_precision=no",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["folder"] == f"{out}/vae"
    assert report["scaling_factor"] > 0
    assert AutoencoderKL.from_pretrained(str(out / "vae")).config.scaling_factor == pytest.approx(report["scaling_factor"], rel=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["train", "vae", "data.source=webcam", "output_dir=x"], "data.source must be one of folder, toyworld, got 'webcam'"),
    (["train", "viclip", "data.source=folder", "output_dir=x"], "data.source=folder (the default) needs data.path"),
    (["train", "viclip", "data.source=toyworld", "data.stream.render=3", "output_dir=x"], "data.stream: unknown config key 'render'"),
    (["train", "vae"], "give a config"),
])
def test_bad_trainer_settings_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_validation_scorers_are_named_and_checked_before_training(tiny_motion_model, tmp_path):
    from vidgen.training.loop import train

    seen = []

    def count_frames(clips, prompts):
        seen.append((len(clips), list(prompts)))
        return {"frames_per_video": float(np.mean([len(c) for c in clips]))}

    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=1", "validation.prompts=[a cat, a dog]",
                      "validation.scorers=[frames]", "validation.sampling.frames=3", "validation.sampling.height=16",
                      "validation.sampling.width=16", "validation.sampling.steps=1")
    with pytest.raises(ConfigError, match="validation.scorers names 'frames', which no scorer provides"):
        train(cfg, dataset=ClipTensors(), collate_fn=collate)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    result = train(cfg, dataset=ClipTensors(), collate_fn=collate, scorers={"frames": count_frames})
    assert seen == [(2, ["a cat", "a dog"])] and result.validation["frames_per_video"] == 3.0


def test_train_subcommands_parse_as_subcommands(tmp_path, capsys):
    assert main(["train", "plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert main(["train", "plot"]) == 2  # RUN is required by the plot parser itself
    assert "the following arguments are required: RUN" in capsys.readouterr().err
