"""Bad numbers and sizes: one line naming the option and its value, exit status 2, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgen.cli.main import main
from vidgen.config import load_config
from vidgen.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[2]
HUGE = str(2**80)  # beyond what torch.Generator.manual_seed takes


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to open a model fails the test: refusals must come first."""
    from vidgen.pipelines.text_to_video import TextToVideoPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad value was refused")

    monkeypatch.setattr(TextToVideoPipeline, "from_pretrained", refuse)


@pytest.mark.parametrize("argv, named, value", [
    (["sample", "--prompt", "a", "--fps", "nan"], "--fps", "nan"),
    (["sample", "--prompt", "a", "--fps", "inf"], "--fps", "inf"),
    (["sample", "--prompt", "a", "--seed", HUGE], "--seed", HUGE),
    (["sample", "--prompt", "a", f"sampling.seed={HUGE}"], "sampling.seed", HUGE),
    (["story", "--prompt", "a", "--prompt", "b", "--seed", HUGE], "--seed", HUGE),
    (["eval", "--n", "2", "--seed", "-1"], "--seed", "-1"),
    (["train", "--config", str(REPO / "configs/train/tiny.yaml"), "optim.lr=nan"], "optim.lr", "nan"),
    (["train", "--config", str(REPO / "configs/train/tiny.yaml"), f"train.seed={HUGE}"], "train.seed", HUGE),
    (["data", "clips", "rows.jsonl", "--sources", ".", "-o", "clips", "--fps", "nan"], "--fps", "nan"),
    (["data", "cache", ".", "-o", "cache", "--fps", "inf"], "--fps", "inf"),
    (["data", "interleave", "rows.jsonl", "-o", "items.jsonl", "--seed", "-1"], "--seed", "-1"),
    (["data", "toyworld", "-o", "toy", "seed=-1"], "seed", "-1"),
    (["data", "download", "rows.jsonl", "-o", "videos", "--timeout", "nan"], "--timeout", "nan"),
    (["score", "v.mp4", "--clip-frames", "0"], "--clip-frames", "0"),
])
def test_a_bad_number_is_one_line_naming_the_option(argv, named, value, tmp_path, monkeypatch, capsys, no_model_loads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text('{"YoutubeID": "abcdefghijk", "Start_timestamp": "00:00:00.000", '
                                         '"End_timestamp": "00:00:02.000", "Caption": "a red circle"}\n')
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert named in err and value in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # nothing written


@pytest.mark.parametrize("override, named", [
    ("optim.lr=.nan", "optim.lr"),
    ("optim.eps=.inf", "optim.eps"),
    ("optim.betas=[0.9, .nan]", "optim.betas"),
    ("train.offset_noise=.nan", "train.offset_noise"),
    ("train.seed=5000000000", "train.seed"),  # accelerate's set_seed seeds numpy, which takes 32 bits
    (f"validation.sampling.seed={HUGE}", "validation.sampling.seed"),
])
def test_config_numbers_are_checked_when_the_config_is_built(override, named):
    from vidgen.training.config import TrainConfig

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(TrainConfig, overrides=["model.base=m", "data.path=d", override])


def test_sampling_settings_refuse_a_seed_no_generator_takes():
    from vidgen.pipelines.settings import SamplingSettings

    for seed in (-1, 2**80):
        with pytest.raises(InputError, match=f"sampling.seed must be an integer from 0 to 2\\*\\*63-1, got {seed}"):
            SamplingSettings(seed=seed)
    assert SamplingSettings(seed=2**63 - 1).seed == 2**63 - 1


@pytest.fixture
def four_gib(monkeypatch):
    """A machine with 4 GiB available, whatever this one has."""
    monkeypatch.setattr("vidgen.runtime.available_memory", lambda: 4 * 2**30, raising=False)


@pytest.mark.parametrize("argv, named", [
    (["sample", "--height", "100000"], "sampling.frames=8, height=100000, width=32 needs about"),
    (["sample", "--frames", "32", "--height", "2048", "--width", "2048"], "sampling.frames=32, height=2048, width=2048"),
    (["sample", "--upscale", "1000"], "sampling.upscale=1000 (8 frames of 32x32 written as 32000x32000) needs about 22.9 GiB"),
    (["sample", "--model", "{tmp}", "--height", "64", "--width", "64", "--upscale", "1000"], "sampling.upscale=1000"),
    (["story", "--prompt", "b", "--upscale", "1000"], "sampling.upscale=1000 (14 frames of 32x32"),
    (["eval", "--frames", "32", "--height", "2048", "--width", "2048"], "(a batch of 8) needs about"),
    (["sample", "--height", "30"], "sampling.height=30 is not divisible by the VAE factor 4"),
    (["sample", "--steps", "100000"], "sampling.steps=100000 is more than the 1000 timesteps"),
])
def test_a_size_that_cannot_fit_is_refused_with_its_estimate_before_the_model_loads(argv, named, tmp_path, capsys,
                                                                                   no_model_loads, four_gib):
    garbage = tmp_path / "garbage"  # a model folder with nothing to read: the size alone is refused
    garbage.mkdir()
    argv = [a.format(tmp=garbage) for a in argv]
    prompt = ["--prompt", "a"] if argv[0] != "eval" else []
    assert main([*argv, *prompt, "--out", str(tmp_path / ("a.mp4" if argv[0] == "sample" else "out"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert "GiB" not in err or "this machine has 4.0 GiB available" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_the_shipped_model_at_its_own_size_fits_in_little_memory():
    from vidgen.pipelines.memory import check_sampling_size, model_geometry
    from vidgen.pipelines.settings import SamplingSettings, read_model_defaults

    geometry = model_geometry(None)
    assert (geometry.vae_factor, geometry.default_size, geometry.train_timesteps) == (4, (32, 32), 1000)
    own = SamplingSettings(**read_model_defaults(REPO / "checkpoints").sampling)
    assert check_sampling_size(own, geometry, batch=8, available=2**30, device="cpu") == (32, 32)
    with pytest.raises(InputError, match="needs about 3.0 GiB of memory in the denoiser; this machine has 1.0 GiB"):
        check_sampling_size(SamplingSettings(frames=16, height=512, width=512), geometry, available=2**30, device="cpu")


def test_on_a_gpu_the_denoiser_is_measured_against_the_gpu_s_free_memory(monkeypatch):
    from vidgen.pipelines.memory import check_sampling_size, model_geometry
    from vidgen.pipelines.settings import SamplingSettings

    monkeypatch.setattr("vidgen.runtime.gpu_free_memory", lambda device="cuda": 2**30)
    size = SamplingSettings(frames=16, height=512, width=512)
    with pytest.raises(InputError, match="in the denoiser; the GPU has 1.0 GiB available"):
        check_sampling_size(size, model_geometry(None), device="cuda", available=2**40)
    assert check_sampling_size(size, model_geometry(None), device="cpu", available=2**40) == (512, 512)


def test_a_long_video_is_estimated_by_the_context_windows_it_is_denoised_in():
    from vidgen.pipelines.memory import check_sampling_size, memory_needed, model_geometry
    from vidgen.pipelines.settings import SamplingSettings

    geometry = model_geometry(None)
    assert geometry.max_frames == 32  # the shipped motion modules' length: longer videos run in windows
    assert memory_needed(geometry, 512, 256, 256, window=16)["denoise"] * 32 == memory_needed(geometry, 512, 256, 256)["denoise"]
    windows_of_16 = SamplingSettings(frames=128, height=256, width=256, context_length=16)
    assert check_sampling_size(windows_of_16, geometry, available=2**30, device="cpu") == (256, 256)
    with pytest.raises(InputError, match="needs about 1.5 GiB of memory in the denoiser"):  # the model's own 32-frame windows
        check_sampling_size(SamplingSettings(frames=128, height=256, width=256), geometry, available=2**30, device="cpu")
