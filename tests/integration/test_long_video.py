"""Long videos: context windows, noise rescheduling, prompt travel, FreeInit, story --continuous, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from vidgen.cli.main import main
from vidgen.errors import InputError
from vidgen.io import probe
from vidgen.pipelines.loading import load_pipeline
from vidgen.pipelines.long_video import (Keyframe, check_keyframes, context_windows, free_init_noise, keyframe_mix,
                                         low_pass_filter, parse_keyframes, reschedule_noise, window_fusion_weights)

SMALL = dict(height=16, width=16, num_inference_steps=3, guidance_scale=2.0, output_type="np")
SCHEDULERS = ("ddim", "euler", "dpm++", "heun", "unipc", "ddpm")


@pytest.fixture
def pipe(tiny_model):
    pipe = load_pipeline(tiny_model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def frames(pipe, prompt="a red circle moves right", seed=0, **kwargs):
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **{**SMALL, **kwargs}).frames


@pytest.mark.parametrize("num_frames, length, overlap", [(8, 8, 2), (9, 8, 2), (64, 8, 2), (64, 8, 4), (30, 16, 7),
                                                         (17, 4, 0), (5, 8, 2), (40, 8, 7)])
def test_windows_cover_every_frame_with_weights_that_sum_to_one(num_frames, length, overlap):
    windows = context_windows(num_frames, length, overlap)
    weights = window_fusion_weights(windows, num_frames)
    total = torch.zeros(num_frames, dtype=torch.float64)
    for window, w in zip(windows, weights):
        assert len(window) == min(length, num_frames) and window.start >= 0 and window.stop <= num_frames
        assert (w > 0).all()
        total[window.start : window.stop] += w.double()
    torch.testing.assert_close(total, torch.ones(num_frames, dtype=torch.float64), rtol=0, atol=1e-6)
    starts = [w.start for w in windows]
    assert starts[0] == 0 and windows[-1].stop == num_frames
    assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap frames


def test_noise_rescheduling_keeps_the_first_window_and_reuses_its_noise():
    noise = torch.randn(2, 4, 29, 3, 3, generator=torch.Generator().manual_seed(0))
    out = reschedule_noise(noise, length=8, overlap=2, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    assert torch.equal(out[:, :, :8], noise[:, :, :8])
    for b in range(2):
        first = {tuple(noise[b, :, f].flatten().tolist()) for f in range(8)}
        for f in range(8, 29):
            assert tuple(out[b, :, f].flatten().tolist()) in first  # a re-use of a first-window frame's noise
        # each run of stride frames is a permutation of the run `length` frames before it
        run, source = out[b, :, 8:14], out[b, :, 0:6]
        assert sorted(run.sum(dim=(0, 2, 3)).tolist()) == pytest.approx(sorted(source.sum(dim=(0, 2, 3)).tolist()))
    assert not torch.equal(out[0, :, 8:], out[1, :, 8:])  # each video shuffles with its own generator
    assert torch.equal(reschedule_noise(noise[:, :, :8], 8, 2), noise[:, :, :8])


def test_one_window_gives_the_single_window_frames_bit_for_bit(pipe):
    reference = frames(pipe, num_frames=6, context_length=6)
    for kwargs in ({}, {"context_length": 16}, {"context_length": 6, "context_overlap": 5, "free_noise": False}):
        assert np.array_equal(frames(pipe, num_frames=6, **kwargs), reference), kwargs


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_long_video_runs_windows_with_every_scheduler(tiny_motion_model, scheduler):
    pipe = load_pipeline(tiny_motion_model, device="cpu", scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: calls.append(args[0].shape[2]) if args else
                                               calls.append(kwargs["sample"].shape[2]), with_kwargs=True)
    try:
        out = frames(pipe, num_frames=14, context_length=6, context_overlap=2)
    finally:
        hook.remove()
    assert out.shape == (1, 14, 16, 16, 3) and np.isfinite(out).all()
    assert set(calls) == {6}  # the denoiser never sees more than the window
    assert len(calls) % 3 == 0  # three windows (0-5, 4-9, 8-13) per denoiser evaluation


def test_windows_work_for_both_denoisers_and_differ_from_one_window(pipe):
    long = frames(pipe, num_frames=12, context_length=6, context_overlap=2)
    whole = frames(pipe, num_frames=12, context_length=12)
    assert long.shape == whole.shape == (1, 12, 16, 16, 3)
    assert np.isfinite(long).all() and not np.array_equal(long, whole)
    again = frames(pipe, num_frames=12, context_length=6, context_overlap=2)
    assert np.array_equal(long, again)  # reproducible


def test_windows_each_keep_their_own_feature_cache(tiny_motion_model):
    pipe = load_pipeline(tiny_motion_model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    pipe("x", num_frames=10, context_length=6, context_overlap=2, cache="deep:3", **{**SMALL, "num_inference_steps": 6})
    # two windows, 6 steps each: full calls at steps 0 and 3 of each window
    assert pipe.cache_stats.full == 4 and pipe.cache_stats.cached == 8


def test_prompt_travel_with_one_keyframe_equals_the_plain_prompt(pipe):
    for n in (6, 14):
        plain = frames(pipe, "a red circle moves right", num_frames=n, context_length=6)
        travel = frames(pipe, {0: "a red circle moves right"}, num_frames=n, context_length=6)
        assert np.array_equal(plain, travel)


def test_prompt_travel_mixes_keyframes_by_the_frames_each_window_holds(pipe):
    assert keyframe_mix([Keyframe(0, "a"), Keyframe(8, "b")], range(6, 12)) == [(0, 2 / 6), (1, 4 / 6)]
    assert keyframe_mix([Keyframe(0, "a"), Keyframe(8, "b")], range(0, 6)) == [(0, 1.0)]
    two = frames(pipe, {0: "a red circle moves right", 8: "a blue square moves up"}, num_frames=14, context_length=6)
    first = frames(pipe, "a red circle moves right", num_frames=14, context_length=6)
    assert np.isfinite(two).all() and not np.array_equal(two, first)
    # the first window holds only the first keyframe, but the fused steps feed its frames from the second too
    assert np.abs(two[:, :2] - first[:, :2]).mean() < np.abs(two[:, -4:] - first[:, -4:]).mean()


def test_keyframes_from_strings_and_files(tmp_path):
    assert parse_keyframes(["0: a red circle", " 16 :  moves   up "]) == [Keyframe(0, "a red circle"), Keyframe(16, "moves up")]
    (tmp_path / "t.jsonl").write_text('\ufeff{"frame": 0, "prompt": "a"}\n\n{"frame": 8, "prompt": "b"}\n', encoding="utf-8")
    (tmp_path / "t.yaml").write_text("0: a\n8: b\n")
    (tmp_path / "l.yaml").write_text("- {frame: 0, prompt: a}\n- {frame: 8, prompt: b}\n")
    for name in ("t.jsonl", "t.yaml", "l.yaml"):
        assert parse_keyframes([str(tmp_path / name)]) == [Keyframe(0, "a"), Keyframe(8, "b")]
    for bad, message in (({0: ""}, "the prompt is empty"), ({-1: "a"}, "whole number >= 0"), (["0 a"], "is not 'FRAME: prompt'"),
                         ([str(tmp_path / "none.yaml")], "prompt travel file not found")):
        with pytest.raises(InputError, match=message):
            parse_keyframes(bad)
    for keyframes, message in (([Keyframe(0, "a"), Keyframe(0, "b")], "out of order"), ([Keyframe(3, "a")], "start at frame 0"),
                               ([Keyframe(0, "a"), Keyframe(9, "b")], "past the video's 9 frames")):
        with pytest.raises(InputError, match=message):
            check_keyframes(keyframes, 9)


def test_free_init_keeps_low_frequencies_of_the_result_and_high_ones_of_fresh_noise():
    g = torch.Generator().manual_seed(0)
    result, noise, fresh = (torch.randn(1, 4, 8, 6, 6, generator=g) for _ in range(3))
    ones, zeros = torch.ones(8, 6, 6), torch.zeros(8, 6, 6)
    diffused = 0.5**0.5 * result + 0.5**0.5 * noise
    torch.testing.assert_close(free_init_noise(result, noise, fresh, 0.5, ones), diffused, rtol=0, atol=1e-5)
    torch.testing.assert_close(free_init_noise(result, noise, fresh, 0.5, zeros), fresh, rtol=0, atol=1e-5)
    mask = low_pass_filter((8, 6, 6))
    assert mask.shape == (8, 6, 6) and mask.max() == 1.0 and mask[4, 3, 3] == 1.0  # the zero frequency passes
    assert mask[0, 0, 0] < 0.1  # the highest frequencies do not


def test_free_init_zero_rounds_is_a_no_op_and_rounds_change_the_video(pipe):
    plain = frames(pipe, num_frames=6)
    assert np.array_equal(frames(pipe, num_frames=6, free_init_iters=0), plain)
    again = frames(pipe, num_frames=6, free_init_iters=1)
    assert np.isfinite(again).all() and not np.array_equal(again, plain)
    assert np.array_equal(frames(pipe, num_frames=6, free_init_iters=1), again)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_frames=40, context_length=40), "context_length=40 exceeds this model's limit of 32 frames"),
    (dict(num_frames=20, context_length=8, context_overlap=8), "context_overlap=8 must be smaller than the context window"),
    (dict(num_frames=20, context_length=0), "context_length must be a positive integer"),
    (dict(num_frames=8, free_init_iters=-1), "free_init_iters must be a non-negative integer"),
    (dict(prompt={0: "a", 8: "b"}, num_frames=8), "keyframe at frame 8 is past the video's 8 frames"),
    (dict(prompt={0: "a", 6: "b", 4: "c"}, num_frames=8), "out of order: frame 4 comes after frame 6"),
    (dict(prompt={0: "a", 4: "b"}, negative_prompt=["x", "y"], num_frames=8), "prompt travel takes one negative_prompt"),
])
def test_bad_long_video_arguments_raise_input_error(tiny_motion_model, kwargs, message):
    pipe = load_pipeline(tiny_motion_model, device="cpu")
    kwargs = {"prompt": "x", **kwargs}
    with pytest.raises(InputError, match=message):
        pipe(**{**SMALL, **kwargs})


def test_sample_prompt_travel_from_the_cli_saves_its_settings(tiny_motion_model, tmp_path):
    script = tmp_path / "keys.yaml"
    script.write_text("0: a red circle moves right\n6: a red circle moves up\n")
    out = tmp_path / "travel.mp4"
    rc = main(["sample", "--model", str(tiny_motion_model), "--prompt-travel", str(script), "--frames", "12",
               "--context-length", "6", "--context-overlap", "2", "--free-init-iters", "1", "--no-free-noise",
               "--steps", "2", "--no-progress", "--out", str(out), "sampling.height=16", "sampling.width=16"])
    assert rc == 0 and probe(out).num_frames == 12
    saved = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert saved["prompts"] == [] and saved["prompt_travel"] == ["0: a red circle moves right", "6: a red circle moves up"]
    assert {k: saved["sampling"][k] for k in ("context_length", "context_overlap", "free_noise", "free_init_iters")} == \
        {"context_length": 6, "context_overlap": 2, "free_noise": False, "free_init_iters": 1}
    # the saved settings make the same video again
    again = tmp_path / "again.mp4"
    assert main(["sample", "--config", str(out.with_suffix(".yaml")), "--out", str(again), "--no-progress"]) == 0
    from vidgen.io.video import read_frames

    assert np.array_equal(read_frames(out), read_frames(again))


def test_continuous_story_is_one_video_with_each_caption_timed_to_its_frames(tiny_motion_model, tmp_path, capsys):
    script = tmp_path / "story.jsonl"
    script.write_text('{"caption": "a red circle moves right"}\n{"caption": "a red circle moves up", "frames": 4}\n'
                      '{"caption": "a red circle moves left"}\n')
    out = tmp_path / "story"
    command = ["story", "--model", str(tiny_motion_model), "--script", str(script), "--continuous", "--frames-per-clip", "6",
               "--context-length", "6", "--steps", "2", "--fps", "4", "--out", str(out), "sampling.height=16",
               "sampling.width=16"]
    assert main(command) == 0
    assert probe(out / "story.mp4").num_frames == 16
    assert [probe(out / f"clip_00{i}.mp4").num_frames for i in range(3)] == [6, 4, 6]
    doc = json.loads((out / "story.jsonl").read_text())
    assert [item.get("start") for item in doc[1::2]] == [0.0, 1.5, 2.5]
    vtt = (out / "story.vtt").read_text()
    assert "00:00:01.500 --> 00:00:02.500\na red circle moves up" in vtt
    settings = json.loads((out / "settings.json").read_text())
    assert settings["mode"] == "continuous" and settings["keyframes"] == [0, 6, 10] and settings["context_length"] == 6
    # the same command again finds the story finished; other context settings are another story
    before = (out / "story.mp4").stat().st_mtime_ns
    assert main(command) == 0 and (out / "story.mp4").stat().st_mtime_ns == before
    assert main([*command, "--context-length", "4"]) == 2


def test_continuous_story_refuses_per_clip_guidance(tiny_motion_model, tmp_path, capsys):
    script = tmp_path / "story.jsonl"
    script.write_text('{"caption": "a"}\n{"caption": "b", "guidance": 9}\n')
    rc = main(["story", "--model", str(tiny_motion_model), "--script", str(script), "--continuous", "--steps", "2",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "one negative prompt and one guidance" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
