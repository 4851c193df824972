"""The ViCLIP feature loss: clean predictions from outputs, LPIPS-style distances through a frozen VAE + ViCLIP, training."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.train_helpers import ClipTensors, collate, tiny_config
from vidgen.errors import ConfigError, ModelLoadError
from vidgen.models.viclip import ViCLIP, get_config
from vidgen.models.viclip_io import save_viclip
from vidgen.training.feature_loss import ViCLIPFeatureLoss, build_feature_loss, feature_loss_term
from vidgen.training.loop import train
from vidgen.training.objective import clean_from_output, target_from_input


def tiny_vae():
    from vidgen.models.t2v import build_vae

    torch.manual_seed(0)
    return build_vae("tiny").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tiny_viclip_folder(tmp_path_factory):
    torch.manual_seed(0)
    return save_viclip(ViCLIP(get_config("tiny")).eval(), tmp_path_factory.mktemp("fl") / "viclip")  # 4 frames at 32 px


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_clean_from_output_inverts_the_target(kind):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(prediction_type=kind, beta_schedule="scaled_linear")
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(5, 4, 3, 4, 4, generator=g), torch.randn(5, 4, 3, 4, 4, generator=g)
    t = torch.tensor([0, 10, 300, 700, 999])
    noisy = sched.add_noise(clean, noise, t)
    assert torch.allclose(clean_from_output(sched, noisy, target_from_input(sched, noisy, clean, t), t), clean, atol=1e-3)


def test_layer_states_end_in_the_video_embedding():
    torch.manual_seed(0)
    model = ViCLIP(get_config("tiny")).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    states = model.vision_encoder.layer_states(video)
    enc = model.vision_encoder
    assert len(states) == model.config.vision_layers and states[-1].shape == (2, 1 + 16 * 4, model.config.vision_width)
    assert torch.allclose(enc.ln_post(states[-1][:, 0]) @ enc.proj, model.encode_video(video), atol=1e-5)


def test_feature_distance_is_zero_for_the_clip_itself_and_grows_with_the_difference(tiny_viclip_folder):
    loss = build_feature_loss(str(tiny_viclip_folder), "demo", tiny_vae(), "cpu")
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(3, 4, 4, 4, 4, generator=g)  # tiny VAE: 4x4 latents decode to 8x8, resized to 32
    direction = torch.randn(clean.shape, generator=g)
    assert torch.allclose(loss(clean, clean), torch.zeros(3), atol=1e-6)
    near, far = loss(clean + 0.1 * direction, clean), loss(clean + 1.0 * direction, clean)
    assert (near > 0).all() and (far > near).all()
    # Gradients reach the prediction (through the frozen VAE and ViCLIP), and nothing else.
    pred = (clean + 0.3 * direction).requires_grad_(True)
    loss(pred, clean).sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.viclip.parameters()) and all(p.grad is None for p in loss.vae.parameters())


@pytest.mark.parametrize("frames", [1, 2, 6])
def test_clips_of_any_length_reach_the_viclip(tiny_viclip_folder, frames):
    loss = build_feature_loss(str(tiny_viclip_folder), "vbench", tiny_vae(), "cpu")
    video = loss.video(torch.randn(2, 4, frames, 4, 6))  # non-square frames are centre-cropped
    assert video.shape == (2, 1 if frames == 1 else 4, 3, 32, 32)
    assert torch.isfinite(loss(torch.randn(2, 4, frames, 4, 6), torch.randn(2, 4, frames, 4, 6))).all()


def test_only_clips_above_the_snr_floor_take_part_and_context_frames_count_as_given():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear")
    seen = []

    def distance(pred, clean):
        seen.append((pred.detach().clone(), clean.clone()))
        return (pred - clean).pow(2).flatten(1).mean(1)

    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(4, 4, 3, 2, 2, generator=g), torch.randn(4, 4, 3, 2, 2, generator=g)
    t = torch.tensor([5, 900, 10, 950])  # SNR about 60 / 0.0006 / 30 / 0.0003
    noisy = sched.add_noise(clean, noise, t)
    wrong = torch.randn(clean.shape, generator=g)
    assert feature_loss_term(distance, sched, noisy, wrong, clean, t, min_snr=1e6) is None
    context = torch.tensor([[True, False, False]] * 4)
    term = feature_loss_term(distance, sched, noisy, wrong, clean, t, min_snr=1.0, context=context)
    pred, real = seen[-1]
    assert pred.shape[0] == 2 and torch.equal(real, clean[[0, 2]])
    assert torch.equal(pred[:, :, 0], real[:, :, 0]) and not torch.allclose(pred[:, :, 1:], real[:, :, 1:])
    # Summed over the two chosen clips, divided by the whole batch.
    assert torch.allclose(term, distance(pred, real).sum() / 4)


def test_training_with_the_feature_loss_runs_resumes_and_changes_the_loss(tiny_motion_model, tiny_viclip_folder, tmp_path):
    opts = ("train.max_steps=3", "model.prediction_type=v_prediction", "train.feature_loss_min_snr=0")
    with_fl = (f"train.feature_loss_viclip={tiny_viclip_folder}", "train.feature_loss_weight=1.0")
    plain = train(tiny_config(tiny_motion_model, tmp_path / "p", *opts), dataset=ClipTensors(), collate_fn=collate)
    a = train(tiny_config(tiny_motion_model, tmp_path / "a", *opts, *with_fl), dataset=ClipTensors(), collate_fn=collate)
    # The first step sees the same model, batch and noise: the feature term is added on top.
    assert all(np.isfinite(a.losses)) and a.losses[0] > plain.losses[0] and a.losses != plain.losses
    # metrics.jsonl logs the unweighted term beside the total: first step's total = plain + 1.0 x term.
    logged = [json.loads(line) for line in (a.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3] and all(r["feature_loss"] > 0 for r in steps)
    assert steps[0]["loss"] == pytest.approx(plain.losses[0] + steps[0]["feature_loss"], rel=1e-5)
    assert not any("feature_loss" in json.loads(line) for line in (plain.run_dir / "metrics.jsonl").read_text().splitlines())
    # Exact resume: nothing of the loss lives outside the checkpoint.
    cut = train(tiny_config(tiny_motion_model, tmp_path / "b", *opts[1:], "train.max_steps=2", *with_fl),
                dataset=ClipTensors(), collate_fn=collate)
    rest = train(tiny_config(tiny_motion_model, tmp_path / "b", *opts, *with_fl), resume="latest",
                 dataset=ClipTensors(), collate_fn=collate)
    assert cut.losses + rest.losses == pytest.approx(a.losses, rel=1e-5)


def test_feature_loss_config_errors(tiny_motion_model, tmp_path):
    with pytest.raises(ConfigError, match="feature_loss_viclip"):
        tiny_config(tiny_motion_model, tmp_path / "r", "train.feature_loss_weight=1")
    with pytest.raises(ConfigError, match="feature_loss_preprocess"):
        tiny_config(tiny_motion_model, tmp_path / "r", "train.feature_loss_preprocess=imagenet")
    with pytest.raises(ConfigError, match="feature_loss_weight"):
        tiny_config(tiny_motion_model, tmp_path / "r", "train.feature_loss_weight=-1")
    with pytest.raises(ModelLoadError):
        train(tiny_config(tiny_motion_model, tmp_path / "r", "train.feature_loss_weight=1",
                          f"train.feature_loss_viclip={tmp_path / 'missing'}"), dataset=ClipTensors(), collate_fn=collate)
    assert not (tmp_path / "r").exists()


def test_cli_names_a_missing_feature_viclip_and_exits_2(tiny_motion_model, tmp_path):
    out = subprocess.run([sys.executable, "-m", "vidgen", "train", f"model.base={tiny_motion_model}", "data.path=x",
                          f"output_dir={tmp_path / 'r'}", "train.feature_loss_weight=1",
                          f"train.feature_loss_viclip={tmp_path / 'nope'}"], capture_output=True, text=True)
    assert out.returncode == 2 and "nope" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "r").exists()
