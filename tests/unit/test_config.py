"""Layered configs: defaults -> files -> overrides, typed, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from vidgen.config import load_config, save_config
from vidgen.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    warmup: int = 0


@dataclass
class Job:
    name: str = "run"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)
    extra: Optional[dict] = None

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


def test_layers_apply_in_order(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("steps: 20\noptim:\n  lr: 0.001\n  warmup: 5\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("optim:\n  lr: 0.01\n")
    cfg = load_config(Job, files=[base, exp], overrides=["name=exp1", "optim.warmup=7", "extra.tag=a"])
    assert cfg == Job(name="exp1", steps=20, optim=Optim(lr=0.01, warmup=7), extra={"tag": "a"})


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(Job, overrides=["steps=3", "optim.lr=0.5"])
    path = save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Job, files=[path]) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["stpes=3"], "unknown config key 'stpes' in command-line overrides; did you mean 'steps'"),
        (["optim.lrr=1"], "did you mean 'optim.lr'"),
        (["steps=abc"], "bad value for key 'steps'"),
        (["steps=0"], "steps must be positive, got 0"),
        (["steps"], "not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Job, overrides=overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Job, files=[tmp_path / "missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Job, files=[bad])
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  warmpu: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.warmpu' in .*typo.yaml.*did you mean 'optim.warmup'"):
        load_config(Job, files=[typo])


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 20\noptim:\n  lr: 0.001\n  warmup: 5\n")
    (tmp_path / "exp.yaml").write_text("_base_: base.yaml\noptim:\n  lr: 0.01\n")
    assert load_config(Job, files=[tmp_path / "exp.yaml"]) == Job(steps=20, optim=Optim(lr=0.01, warmup=5))
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(Job, files=[tmp_path / "loop.yaml"])
