"""Every config the project ships loads against its schema (no unknown keys, valid values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgen.config import config_dir, load_config

# *_base.yaml files are layers that other configs start from (`_base_:`), not runnable on their own.
TRAIN = sorted(p for p in (config_dir() / "train").glob("*.yaml") if not p.stem.endswith("_base"))


@pytest.mark.parametrize("path", TRAIN, ids=lambda p: p.stem)
def test_training_configs_load(path: Path):
    from vidgen.training.config import TrainConfig

    cfg = load_config(TrainConfig, files=[path])
    assert cfg.model.base and cfg.data.path and cfg.train.max_steps > 0


def test_internvid_aes_configs_layer_on_their_base():
    from vidgen.training.config import TrainConfig

    cfg = load_config(TrainConfig, files=[config_dir() / "train" / "internvid_aes_temporal.yaml"])
    assert (cfg.model.denoiser, cfg.model.trainable, cfg.data.source) == ("inflate", "temporal", "shards")
    assert cfg.data.num_frames == 16 and cfg.train.mixed_precision == "bf16" and cfg.optim.lr == 1e-4
    adapter = load_config(TrainConfig, files=[config_dir() / "train" / "internvid_aes_adapter.yaml"])
    assert (adapter.model.denoiser, adapter.model.trainable, adapter.data.source) == ("adapter", "temporal", "shards")
    assert adapter.model.motion_adapter and adapter.data.height == 256


def test_toy_recipe_configs_load():
    from vidgen.toyworld import ToyWorldConfig
    from vidgen.training.vae import VAETrainConfig
    from vidgen.training.viclip import ViCLIPTrainConfig, build_model

    toy = config_dir() / "toy"
    assert load_config(VAETrainConfig, files=[toy / "vae.yaml"]).model.latent_channels == 4
    viclip = load_config(ViCLIPTrainConfig, files=[toy / "viclip.yaml"])
    assert build_model(viclip).config.image_size == 32
    assert load_config(ToyWorldConfig, files=[toy / "world.yaml"]).split == "train"
    tubelet = load_config(ViCLIPTrainConfig, files=[toy / "viclip_tubelet.yaml"])  # layered on viclip.yaml
    assert (tubelet.model["tubelet_size"], tubelet.model["image_size"], tubelet.temporal_init) == (2, 32, "normal")
    assert build_model(tubelet).config.tubelet_size == 2
