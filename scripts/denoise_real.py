"""How much of a real clip does a model keep when it denoises it from a noise level?

Renders toy-world clips of one attribute value (e.g. squares), encodes them with
the model's VAE (posterior mean), noises them to timesteps of the model's own
sampling schedule with fixed noise, and then, from each of those levels and at
each guidance scale, either predicts the clean clip in one step or samples the
rest of the schedule. Each result is decoded and read by the judge: how often it
still reads the value, and (for shape) the median fill ratio the judge measures,
next to the same figures for the VAE's own reconstruction. A value the one-step
prediction keeps but the sampled trajectory loses is lost by the sampler's later
steps; one that even the first prediction loses, the denoiser does not restore
at that level.

    python scripts/denoise_real.py --attribute shape --value square --clips 12 \
        --timesteps 79,159,319,519 --guidance 1,3 --out runs/probe/denoise_square.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ATTRIBUTES = ("shape", "color", "motion", "background")


def real_clips(attribute: str, value: str, n: int, *, frames: int, size: int, seed: int):
    """``n`` rendered training-split clips whose ``attribute`` is ``value``, with their captions."""
    from vidgen.data.toyworld import make_sample

    clips, index = [], 0
    while len(clips) < n:
        sample = make_sample(index, seed=seed, num_frames=frames, size=size, split="train")
        index += 1
        if getattr(sample.attrs, attribute).value == value:
            clips.append(sample)
        if index > 200 * n:
            raise ValueError(f"no training clips with {attribute} {value!r}")
    return clips


def read_back(pipe, latents, attribute: str, value: str) -> dict:
    """Decode ``latents`` and judge them: share read as ``value`` and the median fill ratio."""
    import numpy as np
    import torch

    from vidgen.metrics.judge import judge_frames

    with torch.no_grad():
        frames = pipe.decode_latents(latents)
    frames = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
    right, fills = [], []
    for video in frames:
        judged = judge_frames(video)
        right.append(getattr(judged, attribute) == value)
        fills.append(judged.diagnostics.get("fill_ratio", np.nan))
    fill = float(np.nanmedian(fills)) if not np.all(np.isnan(fills)) else None
    return {"judged_right": round(float(np.mean(right)), 4), "fill_ratio": None if fill is None else round(fill, 4)}


def denoise_from(pipe, clean, captions: list[str], *, timesteps: list[int], guidance: list[float], steps: int,
                 attribute: str, value: str, seed: int) -> list[dict]:
    """For each start timestep (snapped to the schedule) and guidance: one-step and sampled read-backs."""
    import torch

    from latent_probe import clean_prediction

    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps)
    schedule = [int(t) for t in scheduler.timesteps]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    device = torch.device("cpu")
    cond = pipe.encode_prompt(captions, device)
    uncond = pipe.encode_prompt([""] * len(captions), device)
    rows = []
    for wanted in timesteps:
        start = min(schedule, key=lambda t: abs(t - wanted))
        a = scheduler.alphas_cumprod[start]
        noisy = a.sqrt() * clean + (1 - a).sqrt() * noise
        row = {"t": start, "snr": round(float(a / (1 - a)), 4)}
        for g in guidance:
            embeds = torch.cat([uncond, cond]) if g > 1 else cond
            with torch.no_grad():
                one_step = clean_prediction(scheduler, noisy, pipe.predict(noisy, start, embeds, g), start)
                latents = noisy.clone()
                for t in [t for t in schedule if t <= start]:
                    latents = scheduler.step(pipe.predict(latents, t, embeds, g), t, latents).prev_sample
            row[f"guidance {g:g}"] = {"one_step": read_back(pipe, one_step, attribute, value),
                                      "sampled": read_back(pipe, latents, attribute, value)}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    from vidgen.errors import InputError, VidgenError
    from vidgen.io.files import atomic_write_text, check_output_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    p.add_argument("--attribute", default="shape", help=f"one of {', '.join(ATTRIBUTES)}")
    p.add_argument("--value", default="square", help="the attribute value of the clips (e.g. square, red, left)")
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=None, help="frame side (default: the model's sample size)")
    p.add_argument("--timesteps", default="79,159,319,519", help="start levels, snapped to the sampling schedule")
    p.add_argument("--guidance", default="1,3", help="guidance scales")
    p.add_argument("--steps", type=int, default=25, help="sampling schedule length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.attribute not in ATTRIBUTES:
            raise InputError(f"--attribute must be one of {', '.join(ATTRIBUTES)}, got {args.attribute!r}")
        try:
            timesteps = [int(t) for t in args.timesteps.split(",")]
            guidance = [float(g) for g in args.guidance.split(",")]
        except ValueError:
            raise InputError(f"--timesteps and --guidance take comma-separated numbers, got {args.timesteps!r} and "
                             f"{args.guidance!r}") from None
        if args.clips < 1 or args.steps < 1 or args.frames < 1 or min(guidance) < 1 or min(timesteps) < 0:
            raise InputError("--clips, --steps and --frames must be at least 1, guidance at least 1, timesteps >= 0")
        from vidgen.data.toyworld import Background, Color, Motion, Shape

        enum = {"shape": Shape, "color": Color, "motion": Motion, "background": Background}[args.attribute]
        if args.value not in {m.value for m in enum}:
            raise InputError(f"--value for {args.attribute} must be one of {', '.join(m.value for m in enum)}, "
                             f"got {args.value!r}")
        if args.out is not None:
            check_output_path(args.out, overwrite=args.overwrite)
        from vidgen.pipelines.loading import load_pipeline

        pipe = load_pipeline(args.model)
        size = args.size or pipe.default_size[0]
        clips = real_clips(args.attribute, args.value, args.clips, frames=args.frames, size=size, seed=args.seed + 5)
        pixels = torch.stack([torch.from_numpy(c.frames).permute(0, 3, 1, 2).float() / 127.5 - 1 for c in clips])
        with torch.no_grad():
            flat = pipe.vae.encode(pixels.flatten(0, 1).to(pipe.vae.dtype)).latent_dist.mean
        clean = (flat * pipe.vae.config.scaling_factor).reshape(len(clips), args.frames, *flat.shape[1:])
        clean = clean.permute(0, 2, 1, 3, 4).to(pipe.unet.dtype)
        captions = [c.caption.text for c in clips]
        report = {"model": str(args.model or "shipped"), "attribute": args.attribute, "value": args.value,
                  "clips": len(clips), "steps": args.steps,
                  "vae_reconstruction": read_back(pipe, clean, args.attribute, args.value),
                  "levels": denoise_from(pipe, clean, captions, timesteps=timesteps, guidance=guidance, steps=args.steps,
                                         attribute=args.attribute, value=args.value, seed=args.seed)}
    except (VidgenError, OSError, ValueError) as exc:
        print(f"denoise_real: error: {exc}", file=sys.stderr)
        return 2
    rec = report["vae_reconstruction"]
    print(f"VAE reconstruction: {rec['judged_right']:.0%} read as {args.value}, fill {rec['fill_ratio']}")
    print("| t | SNR | " + " | ".join(f"one step g{g:g} | sampled g{g:g}" for g in guidance) + " |")
    print("|---|---|" + "---|---|" * len(guidance))
    for row in report["levels"]:
        cells = []
        for g in guidance:
            for kind in ("one_step", "sampled"):
                r = row[f"guidance {g:g}"][kind]
                cells.append(f"{r['judged_right']:.0%}, fill {r['fill_ratio']}")
        print(f"| {row['t']} | {row['snr']} | " + " | ".join(cells) + " |")
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
