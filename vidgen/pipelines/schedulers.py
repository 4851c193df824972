"""Sampling schedulers by short name, mapped onto diffusers' schedulers.

Schedulers hold no weights: switching one only rebuilds it from the model's
training noise schedule (``from_config``), so betas and ``prediction_type``
carry over and any name works with any model folder.
"""

from __future__ import annotations

from typing import Any

from vidgen.errors import InputError

# name -> (diffusers class, extra config, one-line description)
SCHEDULERS: dict[str, tuple[str, dict[str, Any], str]] = {
    "ddim": ("DDIMScheduler", {}, "DDIM (Song et al. 2020), deterministic with eta=0"),
    "ddpm": ("DDPMScheduler", {}, "ancestral DDPM (Ho et al. 2020); needs many steps"),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "pseudo numerical methods (Liu et al. 2022)"),
    "euler": ("EulerDiscreteScheduler", {}, "Euler ODE sampler (Karras et al. 2022)"),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}, "Euler ancestral (stochastic)"),
    "heun": ("HeunDiscreteScheduler", {}, "Heun 2nd-order (Karras et al. 2022); two model calls per step"),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "DPM-Solver++(2M) (Lu et al. 2022); good in 10-25 steps"),
    "dpm++-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        "DPM-Solver++(2M) with Karras sigmas",
    ),
    "dpm++-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, "SDE variant of DPM-Solver++ (stochastic)"),
    "dpm-single": ("DPMSolverSinglestepScheduler", {}, "single-step DPM-Solver"),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC (Zhao et al. 2023); good in 5-15 steps"),
    "deis": ("DEISMultistepScheduler", {}, "DEIS multistep (Zhang & Chen 2022)"),
    "kdpm2": ("KDPM2DiscreteScheduler", {}, "DPM-Solver-2 in Karras form"),
}


def scheduler_names() -> list[str]:
    """The short names accepted by :func:`make_scheduler`."""
    return list(SCHEDULERS)


def make_scheduler(name: str, config: Any):
    """Build the scheduler ``name`` from a model's scheduler ``config``.

    Args:
        name: a short name from :data:`SCHEDULERS`.
        config: the model folder's scheduler config (``pipe.scheduler.config``).

    Raises:
        InputError: ``name`` is not a known scheduler.
    """
    import diffusers

    key = name.lower()
    if key not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    class_name, extra, _ = SCHEDULERS[key]
    cls = getattr(diffusers, class_name)
    return cls.from_config(config, **extra)


def scheduler_name_of(scheduler) -> str | None:
    """The short name matching a scheduler instance, if any (first match wins)."""
    cls = type(scheduler).__name__
    for name, (class_name, extra, _) in SCHEDULERS.items():
        if class_name == cls and all(scheduler.config.get(k) == v for k, v in extra.items()):
            return name
    return None


def shifted_betas(config: Any, shift: float) -> list[float]:
    """Betas of ``config``'s noise schedule with every step's SNR divided by ``shift**2``.

    A clip of many frames shows its layout through far more noise than one
    image does (its pixels repeat across frames), so the usual schedule decides
    the layout, and with it the motion, in the first one or two sampling steps,
    from the noise rather than the prompt. Dividing the SNR (Hoogeboom et al.
    2023; SD3's resolution shift) spends more training and sampling steps at the
    noise levels where that decision is made. ``shift=1`` returns the schedule
    unchanged. The shift is taken from the plain schedule that ``beta_schedule``,
    ``beta_start`` and ``beta_end`` describe, ignoring any ``trained_betas`` already
    in ``config`` (a folder written by an earlier shift), so shifts never compound.
    The result goes into a scheduler config as ``trained_betas``, so every diffusers
    scheduler built from that config (``make_scheduler``) uses it;
    ``rescale_betas_zero_snr`` still applies on top.

    Raises:
        InputError: ``shift`` not positive.
    """
    import torch
    from diffusers import DDPMScheduler

    if not shift > 0:
        raise InputError(f"snr shift must be positive, got {shift}")
    base = dict(config)
    base["rescale_betas_zero_snr"] = False  # shift the plain schedule; zero-SNR rescaling is reapplied by the scheduler
    base["trained_betas"] = None
    alphas = DDPMScheduler.from_config(base).alphas_cumprod.double()
    shifted = alphas / (alphas + shift**2 * (1.0 - alphas))  # SNR' = SNR / shift**2
    previous = torch.cat([torch.ones(1, dtype=shifted.dtype), shifted[:-1]])
    return (1.0 - shifted / previous).clamp(max=0.999).tolist()
