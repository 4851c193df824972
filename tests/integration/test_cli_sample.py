"""``vidgen sample`` end to end: files come out right; every bad input is one line and exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from vidgen.cli.main import main
from vidgen.config import load_config
from vidgen.io import probe, read_frames
from vidgen.pipelines.sample import SampleConfig

FAST = ["--steps", "3", "--no-progress"]


def run_cli(*args):
    return main(["sample", *map(str, args)])


def test_writes_mp4_with_asked_frames_size_and_fps(tiny_model, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = run_cli("--model", tiny_model, "--prompt", "a red circle moves left", "--out", out,
                 "--frames", 7, "--height", 16, "--width", 24, "--fps", 12, *FAST)
    assert rc == 0
    assert f"wrote {out}" in capsys.readouterr().out
    info = probe(out)
    assert (info.num_frames, info.width, info.height, info.fps, info.codec) == (7, 24, 16, 12.0, "h264")
    assert read_frames(out).shape == (7, 16, 24, 3)
    resolved = load_config(SampleConfig, files=[out.with_suffix(".yaml")])
    assert resolved.prompts == ["a red circle moves left"] and resolved.sampling.frames == 7 and resolved.sampling.seed == 0


@pytest.mark.slow
def test_same_seed_gives_the_same_video(tiny_motion_model, tmp_path):
    common = ["--model", tiny_motion_model, "--prompt", "a blue square", "--frames", 4, "--height", 16, "--width", 16, "--seed", 5, *FAST]
    assert run_cli(*common, "--out", tmp_path / "a.mp4") == 0
    assert run_cli(*common, "--out", tmp_path / "b.mp4") == 0
    assert run_cli(*common, "--out", tmp_path / "c.mp4", "sampling.seed=6") == 0
    a, b, c = (read_frames(tmp_path / f"{n}.mp4") for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_folder_output_prompts_file_copies_gif_and_upscale(tiny_motion_model, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na red circle\n\na green triangle moves up\n")
    out = tmp_path / "videos"
    rc = run_cli("--model", tiny_motion_model, "--prompts-file", prompts, "--out", out, "--num-videos", 2,
                 "--batch-size", 3, "--format", "gif", "--frames", 3, "--height", 16, "--width", 16, "--upscale", 2, *FAST)
    assert rc == 0
    names = sorted(p.name for p in out.glob("*.gif"))
    assert names == ["000-a-red-circle-s0.gif", "001-a-red-circle-s1.gif",
                     "002-a-green-triangle-moves-up-s0.gif", "003-a-green-triangle-moves-up-s1.gif"]
    assert len(list(out.glob("*.yaml"))) == 4
    from PIL import Image

    with Image.open(out / names[0]) as im:
        assert im.size == (32, 32)
    assert capsys.readouterr().out.count("wrote ") == 4


def test_config_file_and_jsonl_prompts(tiny_motion_model, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("sampling:\n  frames: 2\n  height: 16\n  width: 16\n  steps: 2\n  scheduler: unipc\n  guidance: 3.0\n")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a purple circle"}) + "\n")
    out = tmp_path / "one.mp4"
    assert run_cli("--model", tiny_motion_model, "--config", cfg, "--prompts-file", prompts, "--out", out, "--no-progress") == 0
    assert probe(out).num_frames == 2
    assert load_config(SampleConfig, files=[out.with_suffix(".yaml")]).sampling.scheduler == "unipc"


@pytest.mark.slow
def test_model_folder_defaults_layer(tiny_motion_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_motion_model, model)
    (model / "sample_defaults.yaml").write_text("frames: 3\nheight: 16\nwidth: 16\nsteps: 2\n")
    out = tmp_path / "d.mp4"
    assert run_cli("--model", model, "--prompt", "x", "--out", out, "--no-progress") == 0
    assert probe(out).num_frames == 3
    assert run_cli("--model", model, "--prompt", "x", "--out", out, "--frames", 5, "--overwrite", "--no-progress") == 0
    assert probe(out).num_frames == 5
    # A guidance interval from the folder reaches the sidecar; the flag replaces it.
    (model / "sample_defaults.yaml").write_text("frames: 3\nheight: 16\nwidth: 16\nsteps: 2\nguidance_interval: [200, 1000]\n")
    assert run_cli("--model", model, "--prompt", "x", "--out", out, "--overwrite", "--no-progress") == 0
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["sampling"]["guidance_interval"] == [200, 1000]
    assert run_cli("--model", model, "--prompt", "x", "--out", out, "--overwrite", "--no-progress",
                   "--guidance-interval", 0, 1000) == 0
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["sampling"]["guidance_interval"] == [0, 1000]


def _bad_model_folders(tiny_motion_model, tmp_path):
    malformed = tmp_path / "malformed"
    shutil.copytree(tiny_motion_model, malformed)
    (malformed / "model_index.json").write_text("{")
    return {"missing": tmp_path / "nowhere", "malformed": malformed}


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("missing model", [], "model folder not found"),
        ("malformed model", [], "malformed"),
        ("empty prompt", ["--prompt", "   "], "prompt 1 is empty"),
        ("no prompt", [], "no prompt given"),
        ("size", ["--prompt", "x", "--height", 15], "height=15 is not divisible by the VAE factor 2"),
        ("context", ["--prompt", "x", "--frames", 40, "--context-length", 40], "context_length=40 exceeds this model's limit of 32 frames"),
        ("overlap", ["--prompt", "x", "--frames", 40, "--context-length", 8, "--context-overlap", 8],
         "context_overlap=8 must be smaller than the context window of 8 frames"),
        ("travel order", ["--prompt-travel", "0: a", "12: b", "6: c", "--frames", 16], "keyframes out of order: frame 6 comes after frame 12"),
        ("travel past", ["--prompt-travel", "0: a", "16: b", "--frames", 16], "keyframe at frame 16 is past the video's 16 frames"),
        ("travel start", ["--prompt-travel", "4: a", "--frames", 16], "must start at frame 0"),
        ("travel form", ["--prompt-travel", "a red circle", "--frames", 16], "is not 'FRAME: prompt'"),
        ("travel and prompt", ["--prompt", "x", "--prompt-travel", "0: a"], "give --prompt-travel or --prompt/--prompts-file, not both"),
        ("free init", ["--prompt", "x", "--free-init-iters", -1], "--free-init-iters: must be an integer >= 0, got -1"),
        ("scheduler", ["--prompt", "x", "--scheduler", "warp"], "unknown scheduler 'warp'"),
        ("config key", ["--prompt", "x", "stesp=3"], "unknown config key 'stesp'.*did you mean 'sampling.steps'"),
        ("config type", ["--prompt", "x", "sampling.frames=many"], "bad value for key 'sampling.frames'"),
        ("device", ["--prompt", "x", "--device", "tpu"], "unknown device 'tpu'"),
        ("guidance interval", ["--prompt", "x", "--guidance-interval", 500, 100], "guidance_interval must satisfy"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tiny_motion_model, tmp_path, capsys, case, extra, message):
    import re

    models = _bad_model_folders(tiny_motion_model, tmp_path)
    model = {"missing model": models["missing"], "malformed model": models["malformed"]}.get(case, tiny_motion_model)
    prompt = [] if case in ("no prompt", "empty prompt") or extra else ["--prompt", "x"]
    out = tmp_path / "out"
    rc = run_cli("--model", model, *prompt, *extra, "--out", out, *FAST)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("vidgen sample: error: ")
    assert re.search(message, err), err
    assert not out.exists() or not any(out.iterdir())


def test_a_prompts_file_that_is_not_utf8_is_one_line(tiny_motion_model, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    data = "a red circle\na café sign\n".encode("latin-1")  # é as the single byte 0xE9
    prompts.write_bytes(data)
    assert run_cli("--model", tiny_motion_model, "--prompts-file", prompts, "--out", tmp_path / "out", *FAST) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vidgen sample: error: "), err
    assert str(prompts) in err and f"byte offset {data.index(0xE9)}" in err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tiny_motion_model, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"precious")
    rc = run_cli("--model", tiny_motion_model, "--prompt", "x", "--out", out, *FAST)
    assert rc == 2 and "exists (pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_unwritable_output_directory(tiny_motion_model, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    rc = run_cli("--model", tiny_motion_model, "--prompt", "x", "--out", blocker / "sub" / "v.mp4", *FAST)
    err = capsys.readouterr().err
    assert rc == 2 and "cannot create output folder" in err and len(err.strip().splitlines()) == 1


def test_one_file_for_several_videos_is_refused(tiny_motion_model, tmp_path, capsys):
    rc = run_cli("--model", tiny_motion_model, "--prompt", "a", "--prompt", "b", "--out", tmp_path / "v.mp4", *FAST)
    assert rc == 2 and "names one file but 2 videos" in capsys.readouterr().err


def test_console_help_reads_well():
    for args in (["--help"], ["sample", "--help"]):
        done = subprocess.run([sys.executable, "-m", "vidgen", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        assert "usage: vidgen" in done.stdout
    assert "--negative-prompt" in done.stdout and "--scheduler" in done.stdout


@pytest.mark.slow
def test_console_script_bad_input_has_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vidgen", "sample", "--model", str(tmp_path / "none"), "--prompt", "x"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"vidgen sample: error: model folder not found: '{tmp_path / 'none'}'"]
