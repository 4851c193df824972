"""Feature caching across denoising steps (``--cache deep:K | adaptive:T``) on both denoiser families."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vidgen.errors import InputError
from vidgen.pipelines.caching import CacheSpec, FeatureCache, parse_cache_spec
from vidgen.pipelines.loading import load_pipeline

KW = dict(num_frames=4, height=16, width=16, num_inference_steps=6, guidance_scale=5.0)


def gens(n=2, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


@pytest.fixture
def pipe(tiny_model):
    return load_pipeline(tiny_model, device="cpu")


def frames(pipe, cache=None, **kwargs):
    return pipe(["a red circle", "a blue square"], generator=gens(), cache=cache, **{**KW, **kwargs}).frames


def test_recomputing_every_step_is_bit_identical_to_no_cache(pipe):
    reference = frames(pipe)
    np.testing.assert_array_equal(frames(pipe, "deep:1"), reference)
    assert pipe.cache_stats.full == KW["num_inference_steps"] and pipe.cache_stats.cached == 0
    np.testing.assert_array_equal(frames(pipe, "adaptive:0"), reference)  # any change forces a full call


def test_deep_cache_reuses_features_every_k_steps_and_stays_close(pipe):
    reference = frames(pipe)
    cached = frames(pipe, "deep:3")
    assert pipe.cache_stats.full_calls == [0, 3]
    assert pipe.cache_stats.cached == 4
    assert not np.array_equal(cached, reference)  # features were reused
    assert np.abs(cached - reference).mean() < 0.05


def test_the_cache_is_reset_between_videos(pipe):
    first = frames(pipe, "deep:4")
    second = frames(pipe, "deep:4")
    np.testing.assert_array_equal(first, second)  # nothing of the first video carried into the second
    assert pipe.cache_stats.full_calls[0] == 0


def test_cached_calls_batch_both_guidance_branches(pipe):
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        frames(pipe, "deep:2")
    finally:
        hook.remove()
    assert batches == [4] * KW["num_inference_steps"]  # 2 videos x (unconditional + conditional) every step


def test_outside_the_guidance_interval_cached_calls_take_the_conditional_half(pipe):
    """Steps outside the interval run the prompt alone; their cached features are the conditional half."""
    pipe.scheduler.set_timesteps(KW["num_inference_steps"])
    timesteps = [int(t) for t in pipe.scheduler.timesteps]
    interval = (timesteps[2], 1000)  # guided for the first three steps, then the prompt alone
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        cached = frames(pipe, "deep:2", guidance_interval=interval)
    finally:
        hook.remove()
    assert batches == [4, 4, 4, 2, 2, 2]
    assert pipe.cache_stats.full_calls == [0, 2, 4]  # call 3 runs the prompt alone from call 2's guided features
    reference = frames(pipe, guidance_interval=interval)
    assert np.isfinite(cached).all() and np.abs(cached - reference).mean() < 0.05


def test_halving_reuse_matches_the_conditional_half_exactly():
    """A cached call with half the batch returns the second (conditional) half of every stored output."""
    from vidgen.models.t2v import build_unet

    torch.manual_seed(0)
    unet = build_unet("motion", "tiny").eval()
    states = torch.randn(2 * 2 * 4, 77, 32)
    sample = torch.randn(4, 4, 4, 8, 8)
    with torch.no_grad(), FeatureCache(unet, CacheSpec("deep", interval=2)) as cache:
        unet(sample, 500, encoder_hidden_states=states)
        stored = {k: v for k, v in cache._slot.store.items()}
        half = unet(sample[2:], 499, encoder_hidden_states=states[8:]).sample
    assert cache.stats.full_calls == [0] and cache.stats.cached == 1
    assert stored["mid"].shape[0] == 16 and half.shape[0] == 2
    with torch.no_grad():  # the same call with the halves' own cache: identical
        with FeatureCache(unet, CacheSpec("deep", interval=2)):
            unet(sample[2:], 500, encoder_hidden_states=states[8:])
            alone = unet(sample[2:], 499, encoder_hidden_states=states[8:]).sample
    torch.testing.assert_close(half, alone, rtol=1e-5, atol=1e-6)


def test_modules_are_restored_after_the_call(pipe):
    before = {name: type(m).forward for name, m in pipe.unet.named_modules()}
    frames(pipe, "deep:2")
    assert all("forward" not in m.__dict__ for m in pipe.unet.modules())
    assert before == {name: type(m).forward for name, m in pipe.unet.named_modules()}


def test_stories_start_a_fresh_cache_for_every_clip(tiny_motion_model, monkeypatch):
    from vidgen.pipelines import caching
    from vidgen.pipelines.story import StoryPipeline, StorySegment

    entered = []
    original = caching.FeatureCache.__enter__
    monkeypatch.setattr(caching.FeatureCache, "__enter__", lambda self: entered.append(self) or original(self))
    pipe = load_pipeline(tiny_motion_model, device="cpu")
    story = StoryPipeline(pipe)([StorySegment("a red circle"), StorySegment("a blue circle")], seed=0, overlap=1,
                                num_frames=4, height=16, width=16, num_inference_steps=4, guidance_scale=5.0, cache="deep:2")
    assert len(story.clips) == 2
    assert len(entered) == 2 and all(c.stats.full_calls[0] == 0 for c in entered)


@pytest.mark.parametrize("spec", ["deep:0", "deep:-1", "deep:x", "deep", "deep:²", "adaptive:-1", "adaptive:nan", "adaptive",
                                  "warp:2"])
def test_bad_cache_specs(spec):
    with pytest.raises(InputError, match="cache"):
        parse_cache_spec(spec)


def test_spec_round_trip():
    assert str(parse_cache_spec("deep:3")) == "deep:3" and str(parse_cache_spec("adaptive:0.1")) == "adaptive:0.1"
    assert parse_cache_spec(None) == parse_cache_spec("none") == CacheSpec()


def test_cli_bad_cache_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vidgen", "sample", "--prompt", "x", "--cache", "deep:0",
                             "--out", str(tmp_path / "v.mp4")], capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "deep:K" in result.stderr
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.slow  # a CLI process
def test_cache_is_recorded_in_the_sidecar(tiny_motion_model, tmp_path):
    result = subprocess.run([sys.executable, "-m", "vidgen", "sample", "--model", str(tiny_motion_model), "--prompt", "x",
                             "--cache", "deep:2", "--frames", "4", "--steps", "3", "--out", str(tmp_path / "v.mp4"),
                             "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "cache: deep:2" in (tmp_path / "v.yaml").read_text()


def test_compile_and_cache_do_not_combine(tiny_motion_model):
    pipe = load_pipeline(tiny_motion_model, device="cpu", compile=True)  # compiles lazily, at the first call
    with pytest.raises(InputError, match="does not combine with a compiled denoiser"):
        frames(pipe, "deep:2")


@pytest.mark.slow
def test_compiled_denoiser_gives_the_same_frames(tiny_motion_model):
    eager = frames(load_pipeline(tiny_motion_model, device="cpu"), num_inference_steps=2)
    compiled = frames(load_pipeline(tiny_motion_model, device="cpu", compile=True), num_inference_steps=2)
    np.testing.assert_allclose(compiled, eager, atol=1e-4)


@pytest.mark.parametrize("scheduler", ["euler", "heun", "dpm++", "unipc", "ddpm"])
def test_every_scheduler_takes_the_cache(tiny_motion_model, scheduler):
    """First- and second-order, deterministic and stochastic schedulers: deep:1 is exact, deep:2 close."""
    pipe = load_pipeline(tiny_motion_model, device="cpu", scheduler=scheduler)
    reference = frames(pipe)
    np.testing.assert_array_equal(frames(pipe, "deep:1"), reference)
    cached = frames(pipe, "deep:2")
    calls = pipe.cache_stats.full + pipe.cache_stats.cached
    assert pipe.cache_stats.full == (calls + 1) // 2 and np.abs(cached - reference).mean() < 0.05
