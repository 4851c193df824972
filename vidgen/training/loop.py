"""The training loop: one function that reads top to bottom.

``train(cfg)`` runs on one CPU, one GPU, or under ``accelerate launch`` on many
(DDP through Accelerate). Per micro-batch it encodes clips (or reads cached
latents), draws noise and timesteps from a generator seeded by the step number,
and takes an AdamW step every ``grad_accum`` micro-batches. Checkpoints carry
everything needed to continue exactly (see :mod:`vidgen.training.checkpoint`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from vidgen.errors import ConfigError, DataError, VidgenError
from vidgen.io.files import append_text, atomic_write_text, ensure_writable_dir
from vidgen.training.checkpoint import (
    TrainerState,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_state,
    remove_partial_checkpoints,
    save_checkpoint,
    truncate_metrics,
)
from vidgen.training.config import TrainConfig
from vidgen.training.validation import VideoScorer, check_scorers, run_validation
from vidgen.training.objective import (
    context_mask,
    diffusion_loss,
    loss_weights,
    reverse_mask,
    reverse_order,
    sample_noise,
    sample_timesteps,
    step_generator,
    target_for,
    target_from_input,
    with_context,
)


class TrainingError(VidgenError):
    """Training cannot go on (e.g. too many non-finite losses)."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    state: TrainerState
    losses: list[float] = field(default_factory=list)  # one per optimiser step
    checkpoint: Path | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the trained denoiser (unwrapped; raw weights, not EMA)
    finished_before: bool = False  # resumed a run already at train.max_steps: nothing was computed


class EpochSampler(torch.utils.data.Sampler):
    """A shuffled order that depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.size))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


def _set_epoch(dataloader, dataset, sampler, epoch: int) -> None:
    for obj in (sampler, dataset):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
    if hasattr(dataloader, "set_epoch"):
        dataloader.set_epoch(epoch)


def encode_text(models, captions: list[str], device) -> torch.Tensor:
    """Frozen text-encoder states ``[B, L, D]`` for captions, encoded exactly as sampling encodes prompts."""
    from vidgen.pipelines.text_to_video import TextToVideoPipeline

    with torch.no_grad():
        return TextToVideoPipeline.encode_prompt(models, captions, device, warn_truncation=False)


def encode_video(models, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Frames ``[B, T, C, H, W]`` in [-1, 1] -> scaled VAE latents ``[B, C, T, h, w]`` (posterior sample)."""
    b, t = pixels.shape[:2]
    with torch.no_grad():
        flat = pixels.flatten(0, 1).to(models.vae.device, models.vae.dtype)
        latents = models.vae.encode(flat).latent_dist.sample(generator=generator) * models.vae.config.scaling_factor
    # contiguous: permuted (non-contiguous) latents crash PyTorch 2.13's CPU backward through
    # UNet3DConditionModel when only its temporal layers train (a segfault, not an error).
    return latents.reshape(b, t, *latents.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()


def batch_loss(models, unet, batch: dict, cfg: TrainConfig, generator: torch.Generator, motion: bool, device) -> torch.Tensor:
    """The diffusion loss of one micro-batch."""
    if "latents" in batch:
        latents = batch["latents"].to(device, torch.float32).contiguous()
    else:
        latents = encode_video(models, batch["pixel_values"], generator).to(device, torch.float32)
    if "text_embeds" in batch and cfg.data.cached_text:
        text = batch["text_embeds"].to(device)
    else:
        text = encode_text(models, list(batch["caption"]), device)
    if cfg.data.image_ratio > 0 and torch.rand((), generator=generator).item() < cfg.data.image_ratio:
        # Joint image-video training: this batch is single frames (one per clip), i.e. 1-frame videos.
        k = int(torch.randint(0, latents.shape[2], (), generator=generator))
        latents = latents[:, :, k : k + 1]
    scheduler = models.noise_scheduler
    noise = sample_noise(latents, generator, cfg.train.offset_noise)
    timesteps = sample_timesteps(latents.shape[0], scheduler.config.num_train_timesteps, generator, device,
                                 cfg.train.min_timestep, cfg.train.max_timestep)
    states = text.repeat_interleave(latents.shape[2], dim=0) if motion else text
    target = target_for(scheduler, latents, noise, timesteps)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    context = context_mask(latents.shape[0], latents.shape[2], cfg.train.context_prob, cfg.train.context_frames, generator)
    noisy = with_context(noisy, latents, context)
    reverse = reverse_mask(scheduler, timesteps, latents.shape[2], cfg.train.reverse_prob, cfg.train.reverse_max_snr,
                           generator, context)
    if reverse is not None:
        noisy = reverse_order(noisy, reverse)
        target = torch.where(reverse[:, None, None, None, None], target_from_input(scheduler, noisy, latents, timesteps),
                             target.float())
    pred = unet(noisy, timesteps, encoder_hidden_states=states.to(noisy.dtype)).sample
    return diffusion_loss(pred, target, loss_weights(scheduler, timesteps, cfg.train.snr_gamma), context)


def train(
    cfg: TrainConfig,
    resume: str | None = None,
    *,
    dataset=None,
    collate_fn: Callable | None = None,
    on_step: Callable[[TrainerState, float], None] | None = None,
    scorers: Mapping[str, VideoScorer] | None = None,
) -> TrainResult:
    """Train the denoiser described by ``cfg``.

    Args:
        cfg: the resolved config.
        resume: ``"latest"`` or a checkpoint folder to continue from.
        dataset: use this dataset instead of building one from ``cfg.data``
            (items as :func:`vidgen.training.data.build_dataset` yields them).
        collate_fn: batch collation for ``dataset``.
        on_step: called after every optimiser step (tests and tools watch progress with it).
        scorers: validation scorers by name, for the ones ``validation.scorers`` names.

    Returns:
        :class:`TrainResult`.

    Raises:
        ConfigError, ModelLoadError, DataError: bad config, models or data.
        TrainingError: too many non-finite losses.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from vidgen.config import to_yaml
    from vidgen.models.t2v import is_motion_unet
    from vidgen.training.data import skipped_count
    from vidgen.training.models import enable_gradient_checkpointing, load_training_models, select_trainable

    scorers = dict(scorers or {})
    check_scorers(cfg, scorers)
    run_dir = Path(cfg.output_dir)
    check_extras(cfg)
    ensure_writable_dir(run_dir)  # a read-only or unmakeable output_dir is one line now, not after the models load
    if cfg.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU; use bf16 or no on this machine")
    resume_from = find_checkpoint(run_dir, resume) if resume else None
    if resume_from is None and list_checkpoints(run_dir):
        raise ConfigError(f"output_dir {str(run_dir)!r} already holds checkpoints of a run: pass --resume latest to "
                          "continue it, or choose another output_dir")
    if resume_from is not None:
        done = read_state(resume_from)
        if done.step >= cfg.train.max_steps:  # a finished run: nothing to train, validate or write
            return TrainResult(run_dir=run_dir, state=done, checkpoint=resume_from, finished_before=True)
    _fresh_accelerator_state()
    accelerator = Accelerator(
        # Without a GPU, Accelerate forms a multi-process (gloo) group only when told it runs on CPU.
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with=None if cfg.logging.tracker == "none" else cfg.logging.tracker,
        project_dir=str(run_dir),
    )
    accelerator.print(describe_processes(accelerator))
    set_seed(cfg.train.seed)  # fresh-model initialisation and anything else left to the global RNG

    # Models: frozen VAE + text encoder, a trainable denoiser.
    models = load_training_models(cfg.model)
    unet = models.unet
    if cfg.validation.prompts:  # a validation size that cannot fit is refused now, not after hours of training
        from vidgen.pipelines.memory import check_sampling_size, geometry_of

        check_sampling_size(cfg.validation.sampling, geometry_of(models.vae, unet, models.sampling_scheduler),
                            device=str(accelerator.device))
    motion = is_motion_unet(unet)
    if cfg.model.gradient_checkpointing:
        enable_gradient_checkpointing(unet)
    params = select_trainable(unet, cfg.model)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.mixed_precision, torch.float32)
    models.vae.to(accelerator.device, weight_dtype)
    models.text_encoder.to(accelerator.device, weight_dtype)
    unet.train()

    # Data.
    sampler = None
    if dataset is None:
        from vidgen.training.data import build_dataset

        dataset, collate_fn = build_dataset(cfg.data, seed=cfg.train.seed)
    streamed = isinstance(dataset, torch.utils.data.IterableDataset)
    if streamed:
        # A shard stream already gives each process its own shards; accelerate must not split it again.
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                                             collate_fn=collate_fn, drop_last=True)
    else:
        if len(dataset) < cfg.data.batch_size:
            raise ConfigError(f"data: {len(dataset)} clips is fewer than data.batch_size={cfg.data.batch_size}")
        sampler = EpochSampler(len(dataset), cfg.train.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.data.batch_size, sampler=sampler,
                                             num_workers=cfg.data.num_workers, collate_fn=collate_fn, drop_last=True)

    # Optimiser and schedule. Accelerate steps a prepared scheduler once per process, hence the scaling.
    betas = tuple(cfg.optim.betas)
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=betas, weight_decay=cfg.optim.weight_decay, eps=cfg.optim.eps)
    lr_scheduler = get_scheduler(cfg.optim.schedule, optimizer,
                                 num_warmup_steps=cfg.optim.warmup_steps * accelerator.num_processes,
                                 num_training_steps=cfg.train.max_steps * accelerator.num_processes)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    if not streamed:
        loader = accelerator.prepare(loader)
    raw_unet = accelerator.unwrap_model(unet)
    ema = None
    if cfg.train.ema_decay:
        ema = EMAModel(params, decay=cfg.train.ema_decay, update_after_step=cfg.train.ema_update_after)

    # Resume exactly where a checkpoint left off.
    state = TrainerState()
    if resume_from is not None:
        state = load_checkpoint(resume_from, raw_unet, optimizer, lr_scheduler, ema, lora=cfg.model.trainable == "lora",
                                scaler=accelerator.scaler)
        accelerator.print(f"resumed from {resume_from} at step {state.step}")
    config_yaml = to_yaml(cfg)
    if accelerator.is_main_process:
        remove_partial_checkpoints(run_dir)  # run_dir exists: ensure_writable_dir made it
        if resume_from is not None:
            truncate_metrics(run_dir / "metrics.jsonl", state.step)  # rows logged after the checkpoint are redone
        atomic_write_text(run_dir / "config.yaml", config_yaml)
        if cfg.logging.tracker != "none":
            accelerator.init_trackers("vidgen", config={"output_dir": cfg.output_dir})
    metrics_path = run_dir / "metrics.jsonl"

    progress = None
    if cfg.logging.progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.train.max_steps, initial=state.step, desc="train", dynamic_ncols=True)
    result = TrainResult(run_dir=run_dir, state=state, model=raw_unet)
    window_bad = False  # a non-finite loss in this accumulation window: skip its update
    window_loss, window_n = 0.0, 0
    tick, tick_samples = time.perf_counter(), 0
    last_checkpoint_step = state.step if resume_from is not None else -1

    def checkpoint() -> None:
        nonlocal last_checkpoint_step
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            result.checkpoint = save_checkpoint(run_dir, state, raw_unet, optimizer, lr_scheduler, ema, config_yaml,
                                                lora=cfg.model.trainable == "lora", keep_last=cfg.checkpoint.keep_last,
                                                scaler=accelerator.scaler)
        last_checkpoint_step = state.step
        accelerator.wait_for_everyone()

    while state.step < cfg.train.max_steps:
        _set_epoch(loader, dataset, sampler, state.epoch)
        batches = accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
        seen_in_pass = 0
        for batch in batches:
            seen_in_pass += 1
            generator = step_generator(cfg.train.seed, state.micro_step, accelerator.process_index)
            state.micro_step += 1
            state.batch_in_epoch += 1
            batch_size = len(batch["caption"])
            state.samples_seen += batch_size * accelerator.num_processes
            tick_samples += batch_size * accelerator.num_processes
            with accelerator.accumulate(unet):
                loss = batch_loss(models, unet, batch, cfg, generator, motion, accelerator.device)
                # Every process must agree to skip, or DDP's gradient all-reduce would hang.
                finite = accelerator.reduce(torch.isfinite(loss.detach()).float().reshape(1), "sum").item()
                if finite < accelerator.num_processes or window_bad:
                    window_bad = True
                else:
                    accelerator.backward(loss)
                    window_loss += loss.detach().item()
                    window_n += 1
                    if accelerator.sync_gradients and cfg.optim.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(params, cfg.optim.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()  # accelerate does not advance it when the fp16 scaler skipped the step
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            if not window_bad and accelerator.scaler is not None and optimizer.step_was_skipped:
                # fp16 loss scaling found inf/nan gradients and lowered the scale: no update happened.
                state.overflow_skips += 1
                window_loss, window_n = 0.0, 0
                continue
            if window_bad:
                state.nan_skips += 1
                window_bad, window_loss, window_n = False, 0.0, 0
                accelerator.print(f"step {state.step}: non-finite loss, update skipped ({state.nan_skips} so far)")
                if state.nan_skips > cfg.train.nan_max_skips:
                    raise TrainingError(f"{state.nan_skips} non-finite losses (train.nan_max_skips={cfg.train.nan_max_skips}); stopping")
                continue
            state.step += 1
            if ema is not None:
                ema.step(params)
            step_loss = window_loss / max(window_n, 1)
            window_loss, window_n = 0.0, 0
            result.losses.append(step_loss)
            if state.step % cfg.train.log_every == 0 or state.step == cfg.train.max_steps:
                now = time.perf_counter()
                record = {"step": state.step, "loss": step_loss, "lr": lr_scheduler.get_last_lr()[0],
                          "samples_per_s": tick_samples / max(now - tick, 1e-9), "epoch": state.epoch}
                tick, tick_samples = now, 0
                if accelerator.is_main_process:
                    append_text(metrics_path, json.dumps(record) + "\n")
                if cfg.logging.tracker != "none":
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=state.step)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")
            if on_step is not None:
                on_step(state, step_loss)
            if state.step % cfg.checkpoint.every == 0 and state.step < cfg.train.max_steps:
                checkpoint()
            if cfg.validation.every and cfg.validation.prompts and state.step % cfg.validation.every == 0:
                result.validation = _validate(run_validation, cfg, models, raw_unet, ema, params, state, accelerator, metrics_path, scorers)
            if state.step >= cfg.train.max_steps:
                break
        else:
            if seen_in_pass == 0 and state.batch_in_epoch == 0:
                raise DataError(f"data: an epoch produced no batch of {cfg.data.batch_size} usable clips from {cfg.data.path!r}")
            state.epoch += 1
            state.batch_in_epoch = 0
            state.skipped_samples = skipped_count(dataset)
            continue
        break

    state.skipped_samples = skipped_count(dataset)
    if last_checkpoint_step != state.step:
        checkpoint()
    if cfg.validation.prompts and (not cfg.validation.every or state.step % cfg.validation.every):
        result.validation = _validate(run_validation, cfg, models, raw_unet, ema, params, state, accelerator, metrics_path, scorers)
    if progress is not None:
        progress.close()
    accelerator.end_training()
    if state.skipped_samples:
        accelerator.print(f"skipped {state.skipped_samples} unreadable or too-short clips")
    return result


def check_extras(cfg: TrainConfig) -> None:
    """Import the optional packages ``cfg`` needs before any work, or name the extra that brings them.

    Raises:
        MissingExtraError: a tracker or LoRA package is not installed.
    """
    from vidgen.extras import require

    if cfg.logging.tracker == "tensorboard":
        require("tensorboard", "logging.tracker=tensorboard (or set logging.tracker=none)", "train")
    elif cfg.logging.tracker == "wandb":
        require("wandb", "logging.tracker=wandb (or set logging.tracker=none)", None)
    if cfg.model.trainable == "lora":
        require("peft", "model.trainable=lora", "train")
    if cfg.model.attention == "xformers":
        require("xformers", "model.attention=xformers", "gpu")


def describe_processes(accelerator) -> str:
    """The line a run starts with: how many processes train together and how they talk (or the device of a lone
    one); and when ``accelerate launch --cpu --num_processes N`` started this process alone, what launches N.

    Accelerate's ``--cpu`` launcher starts one process unless MPI is set up (``--mpirun_hostfile``); it then
    still sets ``MASTER_ADDR``, which a run of one process started on its own does not have.
    """
    import os

    n = accelerator.num_processes
    line = f"training with 1 process on {accelerator.device}"
    if n > 1:
        backend = getattr(accelerator.state, "backend", None)
        line = f"training with {n} processes ({accelerator.distributed_type.value}{f', {backend} backend' if backend else ''})"
    if n == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in os.environ:
        line += ("; `accelerate launch --cpu` starts one process whatever --num_processes says: use `torchrun "
                 "--nproc_per_node N -m vidgen train ...` for N CPU processes")
    return line


def _fresh_accelerator_state() -> None:
    """Let one process run several trainings (tests, notebooks) with different precisions.

    Accelerate keeps its settings in process-global state and refuses a second
    ``Accelerator`` with other ones; outside a distributed launch nothing else
    shares that state, so it is cleared. Under ``accelerate launch`` it is kept.
    """
    import os

    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)


def _validate(run_validation, cfg, models, unet, ema, params, state, accelerator, metrics_path, scorers) -> dict[str, Any]:
    """Validation on the main process only; its scores are logged and appended to metrics.jsonl."""
    scores: dict[str, Any] = {}
    if accelerator.is_main_process:
        scores = run_validation(cfg, models, unet, ema, params, state.step, scorers)
        numeric = {f"val/{k}": v for k, v in scores.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        append_text(metrics_path, json.dumps({"step": state.step, **numeric}) + "\n")
        if cfg.logging.tracker != "none" and numeric:
            accelerator.log(numeric, step=state.step)
    accelerator.wait_for_everyone()
    return scores
