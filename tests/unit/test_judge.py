"""The toy-world judge: accuracy on ground truth (raw and after MP4), geometry parity, faithfulness, continuity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vidgen import toyworld as tw
from vidgen.errors import InputError
from vidgen.toyworld.judge import (
    FILL_SPLIT,
    boundary_jump,
    faithfulness,
    judge_accuracy,
    judge_frames,
    judge_video,
)


@pytest.mark.parametrize("size", [32, 48, 64])
def test_judge_reads_ground_truth_raw(size):
    result = judge_accuracy(150, size, seed=size)
    assert result.num_clips == 150
    for name, value in result.accuracy.items():
        assert value >= 0.99, (name, value, result.failures[:5])


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 48, 64])
def test_judge_reads_ground_truth_after_mp4_round_trip(size):
    result = judge_accuracy(100, size, seed=100 + size, mp4=True)
    for name, value in result.accuracy.items():
        assert value >= 0.99, (name, value, result.failures[:5])


def test_judge_reads_upscaled_mp4_files_as_sample_writes_them(tmp_path):
    from vidgen.io import write_video

    for i in range(6):
        sample = tw.make_sample(i, seed=9, size=32, split="all")
        path = write_video(tmp_path / f"{i}.mp4", sample.frames, fps=8, upscale_factor=4, upscale_mode="bicubic")
        result = judge_video(path)
        assert result.attributes() == sample.attrs.as_dict()
        assert result.track.shape == (16, 2) and result.area.shape == (16,)


def _box_blur(frames: np.ndarray, radius: int) -> np.ndarray:
    """A (2r+1)^2 box blur with edge padding: a crude stand-in for a decoder's soft output."""
    x = np.pad(frames.astype(np.float64), ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    k = 2 * radius + 1
    c = x.cumsum(1).cumsum(2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0), (0, 0)))
    s = c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]
    return np.rint(s / k / k).astype(np.uint8)


def test_judge_tolerates_blur_and_noise():
    rng = np.random.default_rng(0)
    wrong = 0
    for i in range(60):
        sample = tw.make_sample(i, seed=21, size=48, split="all")
        frames = _box_blur(sample.frames, 2).astype(np.float64) + rng.normal(0, 6, sample.frames.shape)
        verdict = judge_frames(np.clip(frames, 0, 255).astype(np.uint8)).attributes()
        wrong += verdict != sample.attrs.as_dict()
    assert wrong == 0


def test_track_and_shape_features_match_the_geometry():
    """Parity with the renderer's analytic centre, size and shape constants."""
    for i in range(30):
        sample = tw.make_sample(i, seed=4, size=64, split="all")
        scene, result = sample.scene, judge_frames(sample.frames)
        side = scene.size * 64
        dx, dy = tw.MOTION_VECTORS[scene.attrs.motion]
        k = np.arange(16) / 16
        drop = side / 6 if scene.attrs.shape is tw.Shape.TRIANGLE else 0.0  # a triangle's centroid sits low
        # Pixel centres sit at integer coordinates in the judge, at +0.5 in the renderer's continuous frame.
        np.testing.assert_allclose(result.track[:, 0] + 0.5, (scene.x0 + dx * scene.travel * k) * 64, atol=0.2)
        np.testing.assert_allclose(result.track[:, 1] + 0.5, (scene.y0 + dy * scene.travel * k) * 64 + drop, atol=0.2)
        assert result.size == pytest.approx(scene.size, rel=0.04)
        fill = result.diagnostics["fill_ratio"]
        expected_fill = {tw.Shape.CIRCLE: math.pi / 4, tw.Shape.SQUARE: 1.0, tw.Shape.TRIANGLE: 0.5}[scene.attrs.shape]
        assert fill == pytest.approx(expected_fill, abs=0.08)
        moved = scene.travel * 15 / 16
        assert result.diagnostics["displacement"] == pytest.approx((dx * moved, dy * moved), abs=0.01)
        # Ground truth sits far from every decision boundary; diagnostics are plain JSON.
        assert set(result.confidence) == {"background", "color", "shape", "motion"}
        assert all(0.5 < v <= 1.0 for v in result.confidence.values()), result.confidence
        json.dumps(result.diagnostics)
    assert math.pi / 4 < FILL_SPLIT < 1


def test_judge_reports_nothing_it_cannot_see():
    blank = np.full((8, 32, 32, 3), 128, np.uint8)
    result = judge_frames(blank)
    assert result.background == "gray"
    assert (result.color, result.shape, result.motion, result.size) == (None, None, None, None)
    assert np.isnan(result.track).all() and (result.area == 0).all()
    # A gray object on black has no hue: shape and motion are read, colour is not.
    frames = tw.render_clip(tw.Scene(tw.ToyAttrs("red", "square", "right", "black"), 0.3, 0.3, 0.5, 0.4, (150, 150, 150)), 8, 32)
    result = judge_frames(frames)
    assert (result.color, result.shape, result.motion) == (None, "square", "right")
    # One frame: everything but motion.
    single = tw.make_sample(0, size=32).frames[:1]
    assert judge_frames(single).motion is None and judge_frames(single).shape is not None


def test_judge_accepts_float_and_torch_frames_and_large_videos(bunny):
    import torch

    sample = tw.make_sample(3, size=32)
    expected = judge_frames(sample.frames).attributes()
    assert judge_frames(sample.frames / 255.0).attributes() == expected
    assert judge_frames(torch.from_numpy(sample.frames).float() / 255).attributes() == expected  # a pipeline's output
    # A real 1280x720 video is downscaled before judging and still yields a full-size track.
    result = judge_video(bunny, indices=range(4))
    assert result.diagnostics["downscale"] == 10 and result.track.shape == (4, 2)


def test_bad_frames_raise_input_errors():
    with pytest.raises(InputError, match="shape"):
        judge_frames(np.zeros((4, 32, 32), np.uint8)[None, None])
    with pytest.raises(InputError, match="too small"):
        judge_frames(np.zeros((4, 4, 4, 3), np.uint8))
    with pytest.raises(InputError):
        judge_accuracy(0)


def test_faithfulness_scores_only_the_stated_attributes():
    sample = tw.make_sample(1, seed=2, size=48)
    result = judge_frames(sample.frames)
    attrs = sample.attrs
    full = faithfulness(result, attrs)
    assert full.score == 1.0 and set(full.matches) == set(tw.ATTRIBUTES)
    text = f"a {attrs.color.value} {attrs.shape.value} on {attrs.background.value}"
    partial = faithfulness(result, text)
    assert partial.score == 1.0 and set(partial.matches) == {"color", "shape", "background"}
    other_color = next(c for c in tw.Color if c is not attrs.color)
    wrong = faithfulness(result, {"color": other_color.value, "shape": attrs.shape.value, "motion": None})
    assert wrong.matches == {"color": False, "shape": True} and wrong.score == 0.5
    assert math.isnan(faithfulness(result, "a video").score)
    with pytest.raises(InputError, match="speed"):
        faithfulness(result, {"speed": "fast"})


def test_faithfulness_checks_stated_sizes():
    small = tw.Scene(tw.ToyAttrs("red", "circle", "still", "white"), 0.26, 0.5, 0.5, 0.0, (255, 0, 0))
    large = tw.Scene(tw.ToyAttrs("red", "circle", "still", "white"), 0.39, 0.5, 0.5, 0.0, (255, 0, 0))
    judged_small, judged_large = (judge_frames(tw.render_clip(s, 4, 48)) for s in (small, large))
    assert faithfulness(judged_small, "a small red ball").matches["size"]
    assert not faithfulness(judged_large, "a small red ball").matches["size"]
    assert faithfulness(judged_large, "a big red ball").matches["size"]


def test_boundary_jump_measures_story_continuity():
    jumps, cuts = [], []
    for i in range(10):
        story = tw.make_story(i, num_clips=3, num_frames=12, size=48)
        for a, b in zip(story, story[1:]):
            jumps.append(boundary_jump(a.frames, b.frames))
            # Expected: one frame's step of clip A's motion: B starts where A would have gone next.
            dx, dy = tw.MOTION_VECTORS[a.attrs.motion]
            step = a.scene.travel / 12 * 48
            assert jumps[-1] == pytest.approx(step * math.hypot(dx, dy), abs=0.3)
        other = tw.make_sample(i, seed=99, num_frames=12, size=48)
        cuts.append(boundary_jump(story[0].frames, other.frames))
    assert max(jumps) < 2.5 < np.median(cuts)
    blank = np.zeros((2, 48, 48, 3), np.uint8)
    assert math.isnan(boundary_jump(story[0].frames, blank))
    with pytest.raises(InputError, match="frame size"):
        boundary_jump(story[0].frames, np.zeros((2, 32, 32, 3), np.uint8))
