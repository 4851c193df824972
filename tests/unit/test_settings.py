"""One SamplingSettings for every sampling job; a model folder's defaults layered under the user's settings."""

from __future__ import annotations

import math
import shutil

import pytest

from vidgen.config import load_config
from vidgen.errors import ConfigError, InputError
from vidgen.pipelines.sample import SampleConfig
from vidgen.pipelines.settings import (
    SamplingSettings,
    StorySettings,
    load_job_config,
    pipeline_kwargs,
    read_model_defaults,
    write_model_defaults,
)


@pytest.mark.parametrize("bad, message", [
    (dict(frames=0), "sampling.frames must be at least 1"),
    (dict(fps=math.nan), "sampling.fps must be a positive number"),
    (dict(fps=math.inf), "sampling.fps must be a positive number"),
    (dict(guidance=-1.0), "sampling.guidance must be a number >= 0"),
    (dict(height=-32), "sampling.height must be positive"),
    (dict(scheduler="warp"), "unknown scheduler 'warp'"),
    (dict(guidance_interval=[900, 100]), "guidance_interval must satisfy"),
    (dict(context_length=0), "sampling.context_length must be at least 1"),
    (dict(context_length=8, context_overlap=8), "context_overlap=8 must be smaller than the context window of 8"),
    (dict(context_overlap=-1), "sampling.context_overlap must be >= 0"),
    (dict(free_init_iters=-1), "sampling.free_init_iters must be >= 0"),
])
def test_sampling_settings_name_the_bad_value(bad, message):
    with pytest.raises(InputError, match=message):
        SamplingSettings(**bad)


def test_story_settings_name_the_bad_value():
    with pytest.raises(InputError, match="story.pin must be one of noised, clean"):
        StorySettings(pin="both")
    with pytest.raises(InputError, match="story.resample must be >= 0, got -1"):
        StorySettings(resample=-1)
    assert SamplingSettings(scheduler="DDIM").scheduler == "DDIM"  # names are case-blind, as make_scheduler's


def test_pipeline_kwargs_carry_every_setting_the_pipeline_takes():
    s = SamplingSettings(frames=5, steps=3, guidance=2.0, guidance_interval=[0, 500], negative_prompt="blur", height=16,
                         cache="deep:2", context_length=4, context_overlap=1, free_noise=False, free_init_iters=2)
    assert pipeline_kwargs(s, width=24) == dict(num_frames=5, height=16, width=24, num_inference_steps=3, guidance_scale=2.0,
                                                guidance_interval=[0, 500], negative_prompt="blur", cache="deep:2",
                                                context_length=4, context_overlap=1, free_noise=False, free_init_iters=2)


def test_model_defaults_round_trip_and_layer_under_the_user(tiny_motion_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_motion_model, model)
    write_model_defaults(model, SamplingSettings(frames=3, steps=2, seed=9, guidance_interval=[200, 1000]), {"pin": "clean"})
    defaults = read_model_defaults(model)
    assert defaults.sampling["frames"] == 3 and "seed" not in defaults.sampling and defaults.story == {"pin": "clean"}
    cfg = load_job_config(SampleConfig, overrides={"model": str(model), "sampling": {"steps": 7}})
    assert (cfg.sampling.frames, cfg.sampling.steps, cfg.sampling.guidance_interval) == (3, 7, [200, 1000])
    # Without --model the shipped model's defaults apply, and the model is named in the resolved config.
    shipped = load_job_config(SampleConfig)
    assert shipped.model and shipped.sampling.upscale == 4


def test_model_defaults_refuse_unknown_keys(tmp_path):
    (tmp_path / "sample_defaults.yaml").write_text("steps: 2\nstory:\n  pinn: clean\n")
    with pytest.raises(InputError, match="unknown setting.*'story.pinn'"):
        read_model_defaults(tmp_path)
    (tmp_path / "sample_defaults.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="expected a mapping"):
        read_model_defaults(tmp_path)
    assert read_model_defaults(tmp_path / "nowhere").sampling == {}


def test_a_flat_key_is_pointed_to_its_section():
    with pytest.raises(ConfigError, match="unknown config key 'steps'.*did you mean 'sampling.steps'"):
        load_config(SampleConfig, overrides=["steps=30"])


def test_folders_and_configs_written_before_the_sections_still_load(tmp_path, caplog):
    import logging

    from vidgen.training.config import TrainConfig

    (tmp_path / "sample_defaults.yaml").write_text("steps: 2\npin: clean\nresample: 1\n")  # an older export
    with caplog.at_level(logging.WARNING, logger="vidgen"):
        defaults = read_model_defaults(tmp_path)
    assert defaults.sampling == {"steps": 2} and defaults.story == {"pin": "clean", "resample": 1}
    assert "belong under 'story:'" in caplog.text
    old = tmp_path / "config.yaml"  # a checkpoint's config from before validation had a sampling section
    old.write_text("model: {base: b}\ndata: {path: p}\nvalidation: {num_frames: 4, steps: 2, judge: true}\n"
                   "train: {self_input_prob: 0.0, feature_loss_weight: 0.0}\n")
    cfg = load_config(TrainConfig, files=[old])
    assert (cfg.validation.sampling.frames, cfg.validation.sampling.steps, cfg.validation.scorers) == (4, 2, ["judge"])
    old.write_text("model: {base: b}\ndata: {path: p}\ntrain: {feature_loss_weight: 2.0}\n")
    with pytest.raises(ConfigError, match="'train.feature_loss_weight' .* was removed"):
        load_config(TrainConfig, files=[old])
