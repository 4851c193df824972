"""Process-wide settings for the libraries vidgen drives."""

from __future__ import annotations

import functools

from vidgen.errors import InputError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@functools.lru_cache(maxsize=1)
def silence_library_progress() -> None:
    """Hide diffusers'/transformers' own loading and saving progress bars (vidgen shows its own)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; checks explicit choices.

    Raises:
        InputError: an unknown device, or CUDA asked for where none is available.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {device!r}; use cpu, cuda or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return device


def resolve_dtype(dtype: str):
    """``"fp32" | "fp16" | "bf16"`` -> ``torch.dtype``.

    Raises:
        InputError: an unknown name.
    """
    import torch

    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[dtype])
