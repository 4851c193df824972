"""The training loop on a tiny model: it learns, freezes what it should, resumes exactly, and guards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch
from safetensors.torch import load_file

from tests.train_helpers import ClipTensors, collate, tiny_config
from vidgen.errors import ConfigError, ModelLoadError
from vidgen.training.checkpoint import find_checkpoint, list_checkpoints
from vidgen.training.loop import TrainingError, train

REPO = Path(__file__).resolve().parents[2]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.slow
def test_loss_falls_when_overfitting_a_fixed_batch(tiny_motion_model, tmp_path):
    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=40", "train.seed=1", "optim.schedule=constant_with_warmup")
    result = train(cfg, dataset=ClipTensors(n=2), collate_fn=collate)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.6 * first, (first, last)
    assert result.state.step == 40 and result.checkpoint == tmp_path / "run" / "checkpoint-000040"
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"loss"') == 40


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["motion", "unet3d"])
def test_temporal_only_training_keeps_spatial_weights_bit_identical(kind, tiny_motion_model, tiny_unet3d_model, tmp_path):
    base = tiny_motion_model if kind == "motion" else tiny_unet3d_model
    cfg = tiny_config(base, tmp_path / "run", "train.max_steps=3", "model.trainable=temporal", "train.ema_decay=null")
    result = train(cfg, dataset=ClipTensors(), collate_fn=collate)
    before, after = weights(base / "unet"), weights(result.checkpoint / "unet")
    markers = ("motion_modules",) if kind == "motion" else ("temp_convs", "temp_attentions", "transformer_in")
    temporal = [k for k in before if any(m in k for m in markers)]
    spatial = [k for k in before if k not in temporal]
    assert temporal and spatial
    assert all(torch.equal(before[k], after[k]) for k in spatial)
    assert any(not torch.equal(before[k], after[k]) for k in temporal)


@pytest.mark.slow
def test_resume_after_crash_equals_uninterrupted_run(tiny_motion_model, tmp_path):
    common = ("train.max_steps=8", "checkpoint.every=3", "train.grad_accum=2", "train.ema_decay=0.9")
    whole = train(tiny_config(tiny_motion_model, tmp_path / "whole", *common), dataset=ClipTensors(n=6), collate_fn=collate)

    class Crash(Exception):
        pass

    def crash_at_5(state, loss):
        if state.step == 5:
            raise Crash

    cfg = tiny_config(tiny_motion_model, tmp_path / "split", *common)
    with pytest.raises(Crash):
        train(cfg, dataset=ClipTensors(n=6), collate_fn=collate, on_step=crash_at_5)
    resumed = train(cfg, resume="latest", dataset=ClipTensors(n=6), collate_fn=collate)
    assert resumed.state == whole.state
    for part in ("unet", "unet_ema"):
        assert max_diff(weights(whole.checkpoint / part), weights(resumed.checkpoint / part)) <= 1e-5
    assert resumed.losses == pytest.approx(whole.losses[3:], abs=1e-5)  # resumed from checkpoint-000003


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(tiny_motion_model, tmp_path):
    """A real SIGKILL at an arbitrary moment: resume picks the newest complete checkpoint."""
    args = ["train.max_steps=12", "checkpoint.every=2", "checkpoint.keep_last=2"]
    whole = train(tiny_config(tiny_motion_model, tmp_path / "whole", *args), dataset=ClipTensors(), collate_fn=collate)
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "train_helpers.py"), str(tiny_motion_model), str(run), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list_checkpoints(run):
        time.sleep(0.05)
    time.sleep(0.3)  # let it get somewhere into the next steps, possibly mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(run)
    assert done and done[-1].name != "checkpoint-000012", "the run finished before it could be killed"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "train_helpers.py"), str(tiny_motion_model), str(run), "--resume", *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = find_checkpoint(run, "latest")
    assert final.name == "checkpoint-000012"
    assert max_diff(weights(whole.checkpoint / "unet"), weights(final / "unet")) <= 1e-5
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_half_written_checkpoints_are_never_latest(tmp_path):
    (tmp_path / "checkpoint-000004").mkdir()
    (tmp_path / "checkpoint-000004" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-000006").mkdir()  # no trainer_state.json: interrupted before completion
    (tmp_path / ".checkpoint-000008.abc.tmp").mkdir()
    assert find_checkpoint(tmp_path, "latest").name == "checkpoint-000004"
    with pytest.raises(ModelLoadError, match="not a complete vidgen checkpoint"):
        find_checkpoint(tmp_path, str(tmp_path / "checkpoint-000006"))
    with pytest.raises(ModelLoadError, match="not a checkpoint folder"):
        find_checkpoint(tmp_path, str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="no complete checkpoint"):
        find_checkpoint(tmp_path / "empty", "latest")


@pytest.mark.slow
def test_checkpoint_exports_to_a_folder_the_sampler_opens(tiny_motion_model, tmp_path):
    from vidgen.pipelines import load_pipeline
    from vidgen.training.export import export_model

    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=2", "validation.sampling.frames=3",
                      "validation.sampling.height=16", "validation.sampling.width=16", "validation.sampling.steps=2",
                      "validation.sampling.guidance_interval=[200,1000]")
    result = train(cfg, dataset=ClipTensors(), collate_fn=collate)
    out = export_model(tmp_path / "run", tmp_path / "model")
    pipe = load_pipeline(out, device="cpu")
    ema = weights(result.checkpoint / "unet_ema")
    assert max_diff(ema, {k: v for k, v in pipe.unet.state_dict().items()}) == 0.0
    frames = pipe("clip number 1", num_frames=3, height=16, width=16, num_inference_steps=2).frames
    assert frames.shape == (1, 3, 16, 16, 3)
    assert (out / "sample_defaults.yaml").read_text().startswith("frames: 3")
    assert yaml.safe_load((out / "sample_defaults.yaml").read_text())["guidance_interval"] == [200, 1000]


@pytest.mark.slow
def test_nan_losses_are_skipped_counted_and_bounded(tiny_motion_model, tmp_path):
    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=4", "data.batch_size=1", "train.nan_max_skips=10")
    result = train(cfg, dataset=ClipTensors(n=4, nan_index=2), collate_fn=collate)
    assert result.state.step == 4 and result.state.nan_skips >= 1
    assert all(np.isfinite(result.losses))
    assert all(torch.isfinite(v).all() for v in weights(result.checkpoint / "unet").values())
    cfg = tiny_config(tiny_motion_model, tmp_path / "run2", "train.max_steps=4", "data.batch_size=1", "train.nan_max_skips=1")
    bad = ClipTensors(n=4)
    bad.x[:] = float("nan")
    with pytest.raises(TrainingError, match="non-finite losses"):
        train(cfg, dataset=bad, collate_fn=collate)


@pytest.mark.slow
def test_lora_trains_only_adapters_and_exports_fused(tiny_motion_model, tmp_path):
    from vidgen.pipelines import load_pipeline
    from vidgen.training.export import export_model

    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=3", "model.trainable=lora", "model.lora_rank=4", "optim.lr=1e-2")
    result = train(cfg, dataset=ClipTensors(), collate_fn=collate)
    assert (result.checkpoint / "unet_lora").is_dir() and not (result.checkpoint / "unet").exists()
    out = export_model(tmp_path / "run", tmp_path / "model", use_ema=False)
    exported = weights(out / "unet")
    base = weights(tiny_motion_model / "unet")
    assert exported.keys() == base.keys()
    changed = [k for k in base if not torch.equal(base[k], exported[k])]
    assert changed and all(any(t in k for t in ("to_q", "to_k", "to_v", "to_out")) for k in changed)
    load_pipeline(out, device="cpu")


@pytest.mark.slow
def test_gradient_checkpointing(tiny_motion_model, tiny_unet3d_model, tmp_path):
    plain = train(tiny_config(tiny_motion_model, tmp_path / "a", "train.max_steps=2"), dataset=ClipTensors(), collate_fn=collate)
    ckpt = train(tiny_config(tiny_motion_model, tmp_path / "b", "train.max_steps=2", "model.gradient_checkpointing=true"),
                 dataset=ClipTensors(), collate_fn=collate)
    assert ckpt.losses == pytest.approx(plain.losses, abs=1e-5)
    with pytest.raises(ConfigError, match="UNet3DConditionModel does not support gradient checkpointing"):
        train(tiny_config(tiny_unet3d_model, tmp_path / "c", "train.max_steps=1", "model.gradient_checkpointing=true"),
              dataset=ClipTensors(), collate_fn=collate)


@pytest.mark.slow
@pytest.mark.parametrize("options", [("model.prediction_type=v_prediction", "train.snr_gamma=5.0"),
                                     ("train.offset_noise=0.1", "data.image_ratio=0.5", "train.mixed_precision=bf16"),
                                     ("model.prediction_type=v_prediction", "train.context_prob=0.5", "train.reverse_prob=0.5")])
def test_objective_options_train(tiny_motion_model, tmp_path, options):
    result = train(tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=3", *options), dataset=ClipTensors(), collate_fn=collate)
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))


def test_timestep_range_bounds_the_timesteps_training_draws(tiny_motion_model, tmp_path, monkeypatch):
    import vidgen.training.loop as loop
    from vidgen.training.objective import sample_timesteps

    g = torch.Generator().manual_seed(0)
    drawn = sample_timesteps(4000, 1000, g, "cpu", 990, 1000)
    assert drawn.min() >= 990 and drawn.max() <= 999 and len(drawn.unique()) == 10
    assert sample_timesteps(4000, 1000, g, "cpu").max() > 990  # the default: the whole schedule
    with pytest.raises(ConfigError, match="does not fit"):
        sample_timesteps(2, 1000, g, "cpu", 0, 1001)
    with pytest.raises(ConfigError, match="min_timestep/max_timestep"):
        tiny_config(tiny_motion_model, tmp_path / "bad", "train.min_timestep=50", "train.max_timestep=50")

    seen = []

    def spy(*args, **kwargs):
        t = sample_timesteps(*args, **kwargs)
        seen.append(t)
        return t

    monkeypatch.setattr(loop, "sample_timesteps", spy)
    result = train(tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=3", "train.min_timestep=10",
                               "train.max_timestep=20"), dataset=ClipTensors(), collate_fn=collate)
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    drawn = torch.cat(seen)
    assert len(seen) == 3 and drawn.min() >= 10 and drawn.max() < 20


@pytest.mark.slow
def test_fresh_and_inflated_denoisers(tiny_motion_model, tmp_path):
    import shutil

    from diffusers import UNet2DConditionModel

    fresh = train(tiny_config(tiny_motion_model, tmp_path / "fresh", "train.max_steps=1", "model.denoiser=fresh",
                              "model.preset=tiny", "model.kind=unet3d"), dataset=ClipTensors(), collate_fn=collate)
    assert weights(fresh.checkpoint / "unet")
    sd = tmp_path / "sd"
    shutil.copytree(tiny_motion_model, sd)
    shutil.rmtree(sd / "unet")
    torch.manual_seed(0)
    UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                         sample_size=8).save_pretrained(str(sd / "unet"))
    inflated = train(tiny_config(sd, tmp_path / "inflated", "train.max_steps=1", "model.denoiser=inflate", "model.trainable=temporal"),
                     dataset=ClipTensors(), collate_fn=collate)
    keys = weights(inflated.checkpoint / "unet").keys()
    assert any("motion_modules" in k for k in keys)
    with pytest.raises(ConfigError, match="use model.denoiser=inflate"):
        train(tiny_config(sd, tmp_path / "wrong", "train.max_steps=1"), dataset=ClipTensors(), collate_fn=collate)


def test_inflated_unet_reproduces_the_image_model_per_frame():
    from diffusers import UNet2DConditionModel

    from vidgen.training.models import inflate_unet2d

    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
                                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    unet3d = inflate_unet2d(unet2d)
    x, text, t = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 7, 32), torch.tensor([10, 500])
    with torch.no_grad():
        video = unet3d(x, t, encoder_hidden_states=text.repeat_interleave(5, 0)).sample
        frames = unet2d(x.permute(0, 2, 1, 3, 4).reshape(10, 4, 8, 8), t.repeat_interleave(5),
                        encoder_hidden_states=text.repeat_interleave(5, 0)).sample
    torch.testing.assert_close(video, frames.reshape(2, 5, 4, 8, 8).permute(0, 2, 1, 3, 4), atol=1e-5, rtol=0)


def test_objective_formulas():
    from diffusers import DDPMScheduler

    from vidgen.training.objective import loss_weights, snr, target_for

    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction")
    x0, eps, t = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4), torch.tensor([1, 400, 999])
    a = sched.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
    s = (1 - sched.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(target_for(sched, x0, eps, t), a * eps - s * x0)
    r = snr(sched, t)
    torch.testing.assert_close(loss_weights(sched, t, 5.0), torch.clamp(r, max=5.0) / (r + 1))
    sched.register_to_config(prediction_type="epsilon")
    torch.testing.assert_close(loss_weights(sched, t, 5.0), torch.clamp(r, max=5.0) / r)
    assert loss_weights(sched, t, None) is None


@pytest.mark.slow
def test_corrupt_clips_in_a_folder_are_skipped_and_counted(tiny_motion_model, tmp_path):
    """The folder data path end to end: real MP4 clips with sidecar captions, one of them corrupt."""
    from vidgen.io import write_video

    clips = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for i in range(4):
        write_video(clips / f"clip{i}.mp4", rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), fps=8)
        (clips / f"clip{i}.txt").write_text(f"clip number {i}")
    (clips / "clip4.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but then nothing")
    (clips / "clip4.txt").write_text("a broken clip")
    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=3", "data.source=folder", f"data.path={clips}",
                      "data.num_frames=4", "data.height=16", "data.width=16")
    result = train(cfg)
    assert result.state.step == 3 and result.state.skipped_samples >= 1


def test_cached_text_can_be_replaced_by_the_base_text_encoder(tiny_motion_model, tmp_path):
    """data.cached_text=false: captions are re-encoded with model.base's encoder, the cached states ignored."""
    from vidgen.training.loop import batch_loss
    from vidgen.training.models import load_training_models

    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "data.cached_text=false")
    models = load_training_models(cfg.model)
    latents = torch.randn(2, 4, 4, 8, 8)
    batch = {"latents": latents, "caption": ["a red circle", ""], "text_embeds": torch.full((2, 77, 32), float("nan"))}

    def loss(c):
        return batch_loss(models, models.unet, batch, c, torch.Generator().manual_seed(0), True, "cpu")

    assert torch.isfinite(loss(cfg))  # the NaN cache is not read
    assert torch.isnan(loss(tiny_config(tiny_motion_model, tmp_path / "run")))  # ...and by default it is


@pytest.mark.slow
def test_zero_terminal_snr_reaches_pure_noise_and_is_exported(tiny_motion_model, tmp_path):
    from vidgen.config import load_config
    from vidgen.training.config import TrainConfig
    from vidgen.training.models import load_training_models
    from vidgen.training.objective import snr

    cfg = tiny_config(tiny_motion_model, tmp_path / "run", "model.prediction_type=v_prediction", "model.zero_terminal_snr=true")
    models = load_training_models(cfg.model)
    last = torch.tensor([models.noise_scheduler.config.num_train_timesteps - 1])
    assert snr(models.noise_scheduler, last).item() < 1e-8
    assert models.sampling_scheduler.config.rescale_betas_zero_snr
    plain = load_training_models(tiny_config(tiny_motion_model, tmp_path / "run", "model.prediction_type=v_prediction").model)
    assert snr(plain.noise_scheduler, last).item() > 1e-3  # the usual schedule stops short of pure noise
    with pytest.raises(ConfigError, match="v_prediction"):
        load_config(TrainConfig, overrides=["model.base=x", "data.path=y", "model.zero_terminal_snr=true"])


def test_context_frames_are_given_clean_and_left_out_of_the_loss():
    from vidgen.training.objective import context_mask, diffusion_loss, with_context

    g = torch.Generator().manual_seed(0)
    mask = context_mask(400, 6, 0.5, 2, g)
    counts = mask.sum(dim=1)
    assert set(counts.tolist()) == {0, 1, 2} and 0.4 < (counts > 0).float().mean() < 0.6
    assert torch.equal(mask, torch.arange(6)[None] < counts[:, None])  # always a prefix of the clip
    assert context_mask(4, 2, 1.0, 5, g).sum(dim=1).tolist() == [1] * 4  # at least one frame stays to denoise
    state = g.get_state()
    assert context_mask(4, 6, 0.0, 2, g) is None and context_mask(4, 1, 1.0, 2, g) is None
    assert torch.equal(g.get_state(), state)  # runs without context draw nothing

    clean, noisy = torch.zeros(2, 3, 4, 2, 2), torch.ones(2, 3, 4, 2, 2)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    mixed = with_context(noisy, clean, mask)
    assert mixed[0, :, :2].eq(0).all() and mixed[0, :, 2:].eq(1).all() and mixed[1].eq(1).all()
    # An error on the context frames costs nothing; elsewhere it counts per denoised frame.
    pred, target = torch.zeros(2, 3, 4, 2, 2), torch.zeros(2, 3, 4, 2, 2)
    pred[0, :, :2] = 100.0
    assert diffusion_loss(pred, target, context=mask).item() == 0.0
    pred[0, :, 2] = 1.0
    assert diffusion_loss(pred, target, context=mask).item() == pytest.approx(0.25)  # (1/2 of video 0 + 0) / 2
    with pytest.raises(ConfigError, match="context_prob"):
        from vidgen.config import load_config
        from vidgen.training.config import TrainConfig

        load_config(TrainConfig, overrides=["model.base=x", "data.path=y", "train.context_prob=1.5"])


@pytest.mark.slow
def test_context_training_runs_and_resumes_the_same_stream(tiny_motion_model, tmp_path):
    opts = ("train.max_steps=3", "train.context_prob=0.7", "train.context_frames=2")
    a = train(tiny_config(tiny_motion_model, tmp_path / "a", *opts), dataset=ClipTensors(), collate_fn=collate)
    b = train(tiny_config(tiny_motion_model, tmp_path / "b", *opts), dataset=ClipTensors(), collate_fn=collate)
    plain = train(tiny_config(tiny_motion_model, tmp_path / "c", "train.max_steps=3"), dataset=ClipTensors(), collate_fn=collate)
    assert a.losses == b.losses and all(np.isfinite(a.losses)) and a.losses != plain.losses


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_reversed_inputs_ask_for_the_clip_in_its_own_order(prediction_type):
    from diffusers import DDPMScheduler

    from vidgen.training.objective import reverse_mask, reverse_order, snr, target_for, target_from_input

    sched = DDPMScheduler(prediction_type=prediction_type, beta_schedule="scaled_linear")
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(6, 4, 5, 3, 3, generator=g)
    noise = torch.randn(clean.shape, generator=g)
    t = torch.tensor([0, 10, 400, 800, 950, 999])
    noisy = sched.add_noise(clean, noise, t)
    # On an input made from the clip itself, the target is the usual one.
    assert torch.allclose(target_from_input(sched, noisy, clean, t), target_for(sched, clean, noise, t), atol=1e-4)
    # Reversed: the target's implied clean prediction is the clip in its own order, not the reversed one.
    rev = reverse_order(noisy, torch.ones(6, dtype=torch.bool))
    assert torch.equal(rev, noisy.flip(2))
    target = target_from_input(sched, rev[3:], clean[3:], t[3:])
    a = sched.alphas_cumprod[t[3:]].view(-1, 1, 1, 1, 1)
    if prediction_type == "epsilon":
        implied = (rev[3:] - (1 - a).sqrt() * target) / a.sqrt()
    else:
        implied = a.sqrt() * rev[3:] - (1 - a).sqrt() * target
    assert torch.allclose(implied, clean[3:], atol=1e-3)
    # Only clips noised to at most max_snr are chosen, never those with context frames; prob 0 draws nothing.
    many = torch.arange(0, 1000).repeat(4)
    mask = reverse_mask(sched, many, 5, 0.5, 0.01, g)
    low = snr(sched, many) <= 0.01
    assert not mask[~low].any() and 0.4 < mask[low].float().mean().item() < 0.6
    context = torch.zeros(len(many), 5, dtype=torch.bool)
    context[::2, 0] = True
    assert not reverse_mask(sched, many, 5, 1.0, 0.01, g, context)[::2].any()
    state = g.get_state()
    assert reverse_mask(sched, many, 5, 0.0, 0.01, g) is None and torch.equal(g.get_state(), state)
    assert reverse_mask(sched, many, 1, 1.0, 0.01, g) is None and torch.equal(g.get_state(), state)  # image batches
    from vidgen.config import load_config
    from vidgen.training.config import TrainConfig

    for bad in ("train.reverse_prob=2", "train.reverse_max_snr=5", "train.reverse_max_snr=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(TrainConfig, overrides=["model.base=x", "data.path=y", bad])


def test_batch_loss_asks_reversed_clips_for_the_clip_in_its_own_order(tiny_motion_model, tmp_path):
    """A denoiser that predicts exactly the v implying the clean clip from whatever it is shown has zero loss."""
    from types import SimpleNamespace

    from diffusers import DDPMScheduler

    from vidgen.training.loop import batch_loss

    sched = DDPMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear")
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(32, 4, 6, 2, 2, generator=g)
    shown = []

    def oracle(noisy, timesteps, encoder_hidden_states):
        shown.append(noisy)
        a = sched.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        return SimpleNamespace(sample=(a.sqrt() * noisy - clean) / (1 - a).sqrt())

    batch = {"latents": clean, "text_embeds": torch.zeros(32, 3, 8)}
    for prob in (0.0, 1.0):
        cfg = tiny_config(tiny_motion_model, tmp_path / "run", "model.prediction_type=v_prediction",
                          f"train.reverse_prob={prob}", "train.reverse_max_snr=1")
        loss = batch_loss(SimpleNamespace(noise_scheduler=sched), oracle, batch, cfg, torch.Generator().manual_seed(1),
                          False, "cpu")
        assert loss.item() < 1e-6, (prob, loss.item())
    # The same draws, and with reversal the clips at low SNR (here most of them) were shown backwards.
    plain, reversed_ = shown
    flipped = [not torch.allclose(p, r) for p, r in zip(plain, reversed_)]
    assert 8 < sum(flipped) < 32 and all(torch.allclose(p.flip(1), r) for p, r, f in zip(plain, reversed_, flipped) if f)


@pytest.mark.slow
def test_reversed_order_training_runs_and_changes_the_stream(tiny_motion_model, tmp_path):
    opts = ("train.max_steps=3", "model.prediction_type=v_prediction", "train.reverse_prob=1", "train.reverse_max_snr=1")
    a = train(tiny_config(tiny_motion_model, tmp_path / "a", *opts), dataset=ClipTensors(), collate_fn=collate)
    plain = train(tiny_config(tiny_motion_model, tmp_path / "c", *opts[:2]), dataset=ClipTensors(), collate_fn=collate)
    assert all(np.isfinite(a.losses)) and a.losses != plain.losses


@pytest.mark.slow
def test_snr_shift_divides_the_snr_and_every_sampler_of_the_export_uses_it(tiny_motion_model, tmp_path):
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.schedulers import shifted_betas
    from vidgen.training.export import export_model
    from vidgen.training.models import load_training_models
    from vidgen.training.objective import snr

    opts = ("model.prediction_type=v_prediction", "train.max_steps=1")
    plain = load_training_models(tiny_config(tiny_motion_model, tmp_path / "p", *opts).model).noise_scheduler
    assert torch.allclose(torch.tensor(shifted_betas(plain.config, 1.0), dtype=torch.float64), plain.betas.double(), rtol=1e-4)
    t = torch.arange(0, 1000, 37)
    cfg = tiny_config(tiny_motion_model, tmp_path / "run", *opts, "model.snr_shift=3")
    shifted = load_training_models(cfg.model).noise_scheduler
    ratio = snr(shifted, t) / snr(plain, t)
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / 9), rtol=1e-3), ratio
    # With zero terminal SNR on top, the last step is still pure noise.
    both = load_training_models(tiny_config(tiny_motion_model, tmp_path / "z", *opts, "model.snr_shift=3",
                                            "model.zero_terminal_snr=true").model).noise_scheduler
    assert snr(both, torch.tensor([999])).item() < 1e-8 and snr(both, t[1:-1]).lt(snr(plain, t[1:-1])).all()

    train(cfg, dataset=ClipTensors(), collate_fn=collate)
    folder = export_model(tmp_path / "run", tmp_path / "model")
    for name in ("ddim", "dpm++", "euler"):
        sampler = load_pipeline(folder, device="cpu", scheduler=name).scheduler
        assert torch.allclose(sampler.alphas_cumprod, shifted.alphas_cumprod), name
        if name == "ddim":
            assert sampler.final_alpha_cumprod == 1.0  # the last step lands on the clean prediction
    with pytest.raises(ConfigError, match="snr_shift"):
        tiny_config(tiny_motion_model, tmp_path / "bad", "model.snr_shift=0")
    # Shifts do not compound: from the exported (already shifted) folder, 3 gives the same schedule, 1 the plain one.
    again = load_training_models(tiny_config(folder, tmp_path / "a", *opts, "model.snr_shift=3").model).noise_scheduler
    assert torch.allclose(again.alphas_cumprod, shifted.alphas_cumprod)
    undone = load_training_models(tiny_config(folder, tmp_path / "u", *opts, "model.snr_shift=1").model).noise_scheduler
    assert torch.allclose(undone.alphas_cumprod, plain.alphas_cumprod)
    kept = load_training_models(tiny_config(folder, tmp_path / "k", *opts).model).noise_scheduler
    assert torch.allclose(kept.alphas_cumprod, shifted.alphas_cumprod)  # no snr_shift: the folder's schedule
