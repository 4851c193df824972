"""Process-wide settings for the libraries vidgen drives."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def quiet_libraries():
    """Hold back diffusers', transformers' and peft's own log lines and warnings while they load or apply weights
    (diffusers logs "An error occurred while trying to fetch ..." before raising): vidgen says what went wrong in its
    own words, once, from the exception."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    transformers_logging.set_verbosity(transformers_logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable``: free plus reclaimable caches), or ``None``
    where it cannot be told."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def gpu_free_memory(device: str = "cuda") -> int | None:
    """Free bytes on a CUDA device (``None`` without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info(torch.device(device if device.startswith("cuda") else "cuda"))[0])


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


# The packages a bug report names: distribution name -> label.
REPORTED_PACKAGES = {"torch": "torch", "diffusers": "diffusers", "transformers": "transformers", "accelerate": "accelerate",
                     "peft": "peft", "xformers": "xformers", "av": "PyAV", "imageio-ffmpeg": "imageio-ffmpeg"}


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (``None`` when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, str]:
    """What ``vidgen env`` prints: vidgen, Python, platform, libraries, devices, ffmpeg, the shipped model, caches."""
    import hashlib
    import os
    import platform
    import sys
    from pathlib import Path

    import vidgen
    from vidgen.assets import checkout_root, shipped_model_dir

    package = Path(vidgen.__file__).resolve().parent
    checkout = checkout_root() is not None
    report = {
        "vidgen": f"{vidgen.__version__} ({package}{', from a source checkout' if checkout else ''})",
        "Python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        "platform": platform.platform(),
    }
    for name, label in REPORTED_PACKAGES.items():
        report[label] = package_version(name) or "not installed"
    try:
        import torch

        report["CUDA"] = (f"available: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)} "
                          f"(CUDA {torch.version.cuda})") if torch.cuda.is_available() else "not available"
        mps = getattr(torch.backends, "mps", None)
        report["MPS"] = "available" if mps is not None and mps.is_available() else "not available"
    except ImportError:
        report["CUDA"] = report["MPS"] = "unknown (torch is not installed)"
    try:
        import imageio_ffmpeg

        report["ffmpeg"] = f"{imageio_ffmpeg.get_ffmpeg_version()} ({imageio_ffmpeg.get_ffmpeg_exe()})"
    except (ImportError, RuntimeError) as exc:
        report["ffmpeg"] = f"not found ({exc})"
    try:
        import av

        report["PyAV libraries"] = ", ".join(f"{k} {'.'.join(map(str, v))}" for k, v in sorted(av.library_versions.items()))
    except ImportError:
        pass
    model = shipped_model_dir()
    index = model / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    digest = hashlib.sha256(index.read_bytes()).hexdigest() if index.is_file() else "missing"
    report["shipped model"] = f"{model} ({'present' if (model / 'model_index.json').is_file() else 'missing'})"
    report["shipped weights index sha256"] = digest
    home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    report["Hugging Face cache"] = os.environ.get("HF_HUB_CACHE", str(Path(home) / "hub"))
    report["HF_HUB_OFFLINE"] = f"{os.environ.get('HF_HUB_OFFLINE', 'unset')} (the vidgen command sets 1 when unset)"
    report["torch hub cache"] = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
    return report
