"""Training checkpoints: self-describing folders written atomically, in safe formats only.

A checkpoint ``checkpoint-000100/`` holds::

    unet/                     the denoiser (diffusers layout, safetensors)   [or unet_lora/ for LoRA runs]
    unet_ema/ + ema.json      EMA weights (same layout) and the EMA's step count
    optimizer.safetensors     optimizer tensors; optimizer.json the rest of its state
    lr_scheduler.json         LR scheduler state
    rng.safetensors, rng.json torch / numpy / python RNG states
    config.yaml               the resolved training config
    trainer_state.json        step, epoch, data position, counters (written last)

Everything is tensors in safetensors or plain JSON: loading a checkpoint never
unpickles anything. The folder is written under a temporary name and renamed
when complete, so a run killed mid-write never leaves a checkpoint that
``--resume latest`` would pick.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.errors import ModelLoadError, first_line
from vidgen.io.files import atomic_folder, remove_temporaries

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
RUN_FILES = ("config.yaml", "metrics.jsonl")  # written beside the checkpoints, atomically


@dataclass
class TrainerState:
    """Counters that place a run exactly: what was trained on and what happened."""

    step: int = 0  # optimiser steps done
    micro_step: int = 0  # micro-batches consumed (accumulation included)
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    samples_seen: int = 0
    nan_skips: int = 0
    skipped_samples: int = 0
    overflow_skips: int = 0  # fp16 updates skipped by the gradient scaler


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:06d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (half-written ones are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def find_checkpoint(run_dir: str | os.PathLike, which: str) -> Path:
    """Resolve ``--resume``: ``latest`` (newest complete checkpoint of the run) or a checkpoint path.

    Raises:
        ModelLoadError: nothing to resume from, or the path is not a complete checkpoint.
    """
    if which == "latest":
        found = list_checkpoints(run_dir)
        if not found:
            raise ModelLoadError(f"--resume latest: no complete checkpoint in {str(run_dir)!r}")
        return found[-1]
    path = Path(which)
    if not path.is_dir():
        raise ModelLoadError(f"resume path is not a checkpoint folder: {str(path)!r}")
    if not (path / STATE_FILE).is_file():
        raise ModelLoadError(f"{str(path)!r} is not a complete vidgen checkpoint (no {STATE_FILE})")
    return path


def read_state(path: Path) -> TrainerState:
    """The counters of a complete checkpoint (its ``trainer_state.json``), without loading any weights.

    Raises:
        ModelLoadError: the file is missing or malformed.
    """
    try:
        return TrainerState(**json.loads((Path(path) / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"cannot read {str(Path(path) / STATE_FILE)!r}: {first_line(exc)}") from None


def _optimizer_to_safe(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        meta["state"][str(pid)] = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
                meta["state"][str(pid)][key] = {"tensor": f"{pid}.{key}"}
            else:
                meta["state"][str(pid)][key] = {"value": value}
    return tensors, meta


def _optimizer_from_safe(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {k: (tensors[v["tensor"]] if "tensor" in v else v["value"]) for k, v in entries.items()}
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


LORA_FILE = "adapter.safetensors"


def save_lora(unet, folder: Path) -> None:
    """The LoRA adapter tensors of ``unet`` (peft layout) in ``folder/adapter.safetensors``."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(unet).items()}
    save_file(state, str(folder / LORA_FILE))


def load_lora(unet, folder: Path) -> None:
    """Load adapter tensors written by :func:`save_lora` into ``unet``'s existing adapter.

    Raises:
        ModelLoadError: the file is missing or its tensors do not fit the adapter.
    """
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / LORA_FILE
    if not path.is_file():
        raise ModelLoadError(f"LoRA weights not found: {str(path)!r}")
    result = set_peft_model_state_dict(unet, load_file(str(path)))
    unexpected = getattr(result, "unexpected_keys", []) or []
    if unexpected:
        raise ModelLoadError(f"LoRA weights in {str(path)!r} do not fit the model: unexpected {unexpected[:3]}")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def save_checkpoint(
    run_dir: str | os.PathLike,
    state: TrainerState,
    unet,
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    ema=None,
    config_yaml: str = "",
    lora: bool = False,
    keep_last: int | None = None,
    scaler=None,
) -> Path:
    """Write a checkpoint atomically and prune old ones. Call on the main process only.

    Args:
        run_dir: the run folder.
        state: counters to store.
        unet: the unwrapped denoiser.
        optimizer, lr_scheduler: their states are stored.
        ema: a diffusers ``EMAModel`` over the trainable parameters, or ``None``.
        config_yaml: the resolved config text.
        lora: store only the LoRA adapter weights (the base denoiser is rebuilt from the config).
        keep_last: keep only this many newest checkpoints.
        scaler: the fp16 ``GradScaler`` (its scale and growth tracker are stored), or ``None``.

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    final = run_dir / checkpoint_name(state.step)
    with atomic_folder(final, overwrite=True) as tmp:
        if lora:
            save_lora(unet, tmp / "unet_lora")
        else:
            unet.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        if ema is not None:
            params = [p for p in unet.parameters() if p.requires_grad]
            ema.store(params)
            ema.copy_to(params)
            try:
                if lora:
                    save_lora(unet, tmp / "unet_ema_lora")
                else:
                    unet.save_pretrained(str(tmp / "unet_ema"), safe_serialization=True)
            finally:
                ema.restore(params)
            _write_json(tmp / "ema.json", {"optimization_step": ema.optimization_step, "decay": ema.decay})
        tensors, meta = _optimizer_to_safe(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "optimizer.json", meta)
        _write_json(tmp / "lr_scheduler.json", lr_scheduler.state_dict())
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        _write_json(tmp / "rng.json", rng_meta)
        if scaler is not None:
            _write_json(tmp / "scaler.json", {k: (v.item() if torch.is_tensor(v) else v) for k, v in scaler.state_dict().items()})
        (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
        _write_json(tmp / STATE_FILE, asdict(state))  # last: its presence marks the folder complete
    if keep_last:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial_checkpoints(run_dir: str | os.PathLike) -> int:
    """Delete the half-written checkpoint folders (and run files) a killed run left. Returns how many."""
    return remove_temporaries(run_dir, lambda name: bool(CHECKPOINT_RE.match(name)) or name in RUN_FILES)


def load_weights_into(module, folder: Path) -> None:
    """Load every safetensors file in ``folder`` into ``module``, strictly.

    Raises:
        ModelLoadError: no weights, or keys that do not match.
    """
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"checkpoint part {str(folder)!r} has no safetensors weights")
    from safetensors import SafetensorError

    state = {}
    try:
        for f in files:
            state.update(load_file(str(f)))
        missing, unexpected = module.load_state_dict(state, strict=False)
    except (SafetensorError, RuntimeError) as exc:  # a damaged file, or tensors of other shapes
        raise ModelLoadError(f"checkpoint weights in {str(folder)!r} cannot be loaded: {first_line(exc)}") from None
    if missing or unexpected:
        raise ModelLoadError(
            f"checkpoint weights in {str(folder)!r} do not fit the model: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


def truncate_metrics(path: Path, step: int) -> int:
    """Drop rows logged after ``step`` (a resumed run logs them again). Returns how many were dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row_step = json.loads(line).get("step", 0)
        except (ValueError, AttributeError):
            row_step = 0  # keep what cannot be read rather than lose it
        if isinstance(row_step, (int, float)) and row_step > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        from vidgen.io.files import atomic_write_text

        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return dropped


def load_checkpoint(path: Path, unet, optimizer, lr_scheduler, ema=None, lora: bool = False, scaler=None) -> TrainerState:
    """Restore a run's state from a checkpoint folder (see :func:`save_checkpoint`).

    Raises:
        ModelLoadError: a missing or mismatched part.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = read_state(path)
        if lora:
            load_lora(unet, path / "unet_lora")
        else:
            load_weights_into(unet, path / "unet")
        if ema is not None:
            if not (path / "ema.json").is_file():
                raise ModelLoadError(f"checkpoint {str(path)!r} has no EMA state but the config enables EMA")
            params = [p for p in unet.parameters() if p.requires_grad]
            ema.store(params)
            try:
                if lora:
                    load_lora(unet, path / "unet_ema_lora")
                else:
                    load_weights_into(unet, path / "unet_ema")
                ema.shadow_params = [p.detach().clone() for p in params]
            finally:
                ema.restore(params)
            ema.optimization_step = json.loads((path / "ema.json").read_text())["optimization_step"]
        _optimizer_from_safe(optimizer, load_file(str(path / "optimizer.safetensors")), json.loads((path / "optimizer.json").read_text()))
        lr_scheduler.load_state_dict(json.loads((path / "lr_scheduler.json").read_text()))
        _set_rng_state(load_file(str(path / "rng.safetensors")), json.loads((path / "rng.json").read_text()))
        if scaler is not None and (path / "scaler.json").is_file():
            scaler.load_state_dict(json.loads((path / "scaler.json").read_text()))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"checkpoint {str(path)!r} is incomplete: {Path(exc.filename).name} is missing") from None
    except (KeyError, ValueError, TypeError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(f"checkpoint {str(path)!r} does not match this run or is damaged: {first_line(exc)}") from None
    return state
