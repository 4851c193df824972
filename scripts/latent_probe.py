"""Is a toy-world attribute in the latents a model generates, or lost in decoding?

Trains a small convolutional probe on a latent cache's posterior means (each
frame one example, labelled with the attribute its cached caption states,
parsed with the toy world's caption parser), and reports its accuracy on clips
held back from training. It then samples the same number of prompts for every
value of the attribute with a model folder, and reports per value how often the
probe reads the generated latents right and how often the judge reads the
decoded video right. A value the probe reads but the judge does not is lost by
the decoder; one neither reads is not in what the denoiser generates. With
``--trajectory`` it also probes each sampling step's clean prediction (the
mean probability of each value, per prompted value), which shows at which
noise levels the attribute is decided.

The probe is meaningful for the attributes the latent frame shows (shape,
colour, background); motion spans frames and is not probed.

    python scripts/latent_probe.py --cache runs/ft/cache --model checkpoints --attribute shape \
        --per-value 30 --trajectory --out runs/probe_shape.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ATTRIBUTES = ("shape", "color", "background")


def cache_examples(cache_dir: str | Path, attribute: str):
    """Posterior means ``[N, F, C, h, w]`` (scaled as the denoiser sees them) and labels ``[N]`` of a latent cache.

    Clips whose caption does not state ``attribute`` are left out. Returns
    ``(latents, labels, values)`` with ``values`` the sorted attribute values.

    Raises:
        DataError: no usable cache, or no caption stating the attribute.
    """
    import torch

    from vidgen.data.cache import CachedLatentDataset
    from vidgen.data.toyworld.captions import parse_caption
    from vidgen.errors import DataError

    data = CachedLatentDataset(cache_dir, sample_posterior=False)
    latents, stated = [], []
    for i in range(len(data)):
        item = data[i]
        value = parse_caption(item["caption"]).get(attribute)
        if value:
            latents.append(item["latents"].permute(1, 0, 2, 3))  # [C,F,h,w] -> [F,C,h,w]
            stated.append(value)
    values = sorted(set(stated))
    if len(values) < 2:
        raise DataError(f"cache {str(cache_dir)!r}: captions state fewer than two {attribute} values ({values})")
    return torch.stack(latents), torch.tensor([values.index(v) for v in stated]), values


def make_probe(channels: int, classes: int):
    """Three 3x3 convolutions, a spatial max and a linear read-out: position-invariant, small."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(channels, 48, 3, padding=1), nn.SiLU(), nn.Conv2d(48, 64, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(64, classes))


def train_probe(latents, labels, classes: int, *, epochs: int = 6, held_back: float = 0.15, seed: int = 0,
                batch_size: int = 256, lr: float = 2e-3):
    """Fit the probe on frames of most clips; returns ``(probe, per-class accuracy on the held-back clips' frames)``.

    Clips, not frames, are split, so no frame of a held-back clip is seen in training.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(latents), generator=gen)
    cut = max(1, int(round(len(latents) * held_back)))
    test, train = order[:cut], order[cut:]
    frames = latents.shape[1]

    def flat(idx):
        return latents[idx].flatten(0, 1).float(), labels[idx].repeat_interleave(frames)

    x_train, y_train = flat(train)
    x_test, y_test = flat(test)
    torch.manual_seed(seed)
    probe = make_probe(latents.shape[2], classes)
    opt = torch.optim.AdamW(probe.parameters(), lr)
    for _ in range(epochs):
        perm = torch.randperm(len(x_train), generator=gen)
        for b in range(0, len(perm), batch_size):
            j = perm[b : b + batch_size]
            x = x_train[j] + 0.05 * torch.randn(x_train[j].shape, generator=gen)  # a little robustness to noise
            loss = F.cross_entropy(probe(x), y_train[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    probe.eval()
    with torch.no_grad():
        pred = probe(x_test).argmax(1)
    accuracy = {c: float((pred[y_test == c] == c).float().mean()) for c in range(classes) if bool((y_test == c).any())}
    return probe, accuracy


def clip_probabilities(probe, latents):
    """Mean over frames of the probe's class probabilities: latents ``[B, C, F, h, w]`` -> ``[B, classes]``."""
    import torch

    with torch.no_grad():
        b, c, f, h, w = latents.shape
        probs = probe(latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).float()).softmax(1)
    return probs.reshape(b, f, -1).mean(1)


def probe_prompts(attribute: str, values: list[str], per_value: int) -> list[tuple[str, str]]:
    """``per_value`` canonical toy captions for each value, cycling through the other attributes' combinations."""
    from vidgen.data.toyworld.captions import canonical_caption
    from vidgen.data.toyworld.world import all_attrs

    combos = all_attrs("all")
    out = []
    for value in values:
        matching = [a for a in combos if a.as_dict()[attribute] == value]
        out += [(value, canonical_caption(matching[(k * 7) % len(matching)])) for k in range(per_value)]
    return out


def clean_prediction(scheduler, noisy, pred, t: int):
    """The clean latents implied by the model output ``pred`` at timestep ``t`` (v, epsilon or sample prediction)."""
    a = scheduler.alphas_cumprod[t].to(noisy.dtype)
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * pred
    if kind == "epsilon":
        return (noisy - (1 - a).sqrt() * pred) / a.sqrt().clamp(min=1e-3)
    return pred


def probe_model(pipe, probe, attribute: str, values: list[str], *, per_value: int, frames: int, height: int,
                width: int, steps: int, guidance: float, seed: int = 0, batch_size: int = 10,
                trajectory: bool = False) -> dict:
    """Sample prompts for every value; probe the generated latents and judge the decoded videos."""
    import numpy as np
    import torch

    from vidgen.io.writer import to_uint8_frames
    from vidgen.metrics.judge import judge_frames

    plan = probe_prompts(attribute, values, per_value)
    per_value_rows = {v: {"n": 0, "probe_right": 0, "judge_right": 0, "probe_mean": np.zeros(len(values))} for v in values}
    steps_seen: dict[int, dict] = {}
    gen = torch.Generator().manual_seed(seed)
    for b in range(0, len(plan), batch_size):
        chunk = plan[b : b + batch_size]
        if trajectory:
            state = {"x": None}

            def on_step(_pipe, i, t, tensors, state=state, chunk=chunk):
                clean = clean_prediction(pipe.scheduler, state["x"], tensors["noise_pred"], int(t))
                probs = clip_probabilities(probe, clean).numpy()
                row = steps_seen.setdefault(i, {"t": int(t), "sums": {v: np.zeros(len(values)) for v in values}})
                for (value, _), p in zip(chunk, probs):
                    row["sums"][value] += p
                state["x"] = tensors["latents"]
                return {}

            noise = torch.randn(len(chunk), pipe.unet.config.in_channels, frames, height // pipe.vae_scale_factor,
                                width // pipe.vae_scale_factor, generator=gen)
            state["x"] = noise * pipe.scheduler.init_noise_sigma
            kwargs = {"latents": noise, "callback_on_step_end": on_step,
                      "callback_on_step_end_tensor_inputs": ["latents", "noise_pred"]}
        else:
            kwargs = {"generator": gen}
        with torch.no_grad():
            latents = pipe([p for _, p in chunk], num_frames=frames, height=height, width=width,
                           num_inference_steps=steps, guidance_scale=guidance, output_type="latent", **kwargs).frames
            probs = clip_probabilities(probe, latents).numpy()
            pixels = (pipe.decode_latents(latents) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).float().numpy()
        for (value, _), p, video in zip(chunk, probs, pixels):
            row = per_value_rows[value]
            row["n"] += 1
            row["probe_right"] += int(values[int(p.argmax())] == value)
            row["judge_right"] += int(getattr(judge_frames(to_uint8_frames(video)), attribute) == value)
            row["probe_mean"] += p
    report = {"values": values, "per_value": {
        v: {"n": r["n"], "probe_accuracy": r["probe_right"] / r["n"], "judge_accuracy": r["judge_right"] / r["n"],
            "probe_mean": [round(float(x), 4) for x in r["probe_mean"] / r["n"]]} for v, r in per_value_rows.items()}}
    if trajectory:
        report["trajectory"] = [
            {"step": i, "t": row["t"], "probe_mean": {v: [round(float(x), 4) for x in s / per_value] for v, s in row["sums"].items()}}
            for i, row in sorted(steps_seen.items())]
    return report


def main(argv: list[str] | None = None) -> int:
    import torch

    from vidgen.errors import InputError, VidgenError
    from vidgen.io.files import atomic_write_text, check_output_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", required=True, type=Path, help="latent cache of toy-world clips (vidgen data cache)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    p.add_argument("--attribute", default="shape", help=f"one of {', '.join(ATTRIBUTES)}")
    p.add_argument("--per-value", type=int, default=30, help="prompts sampled per attribute value")
    p.add_argument("--epochs", type=int, default=6, help="probe training epochs")
    p.add_argument("--frames", type=int, default=None, help="frames sampled (default: the cache's)")
    p.add_argument("--size", type=int, default=None, help="sampled height and width (default: the cache's)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trajectory", action="store_true", help="also probe each step's clean prediction")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.attribute not in ATTRIBUTES:
            raise InputError(f"--attribute must be one of {', '.join(ATTRIBUTES)}, got {args.attribute!r}")
        if args.per_value < 1 or args.epochs < 1:
            raise InputError("--per-value and --epochs must be at least 1")
        if args.out is not None:
            check_output_path(args.out, overwrite=args.overwrite)
        from vidgen.pipelines.loading import load_pipeline

        pipe = load_pipeline(args.model)
        latents, labels, values = cache_examples(args.cache, args.attribute)
        if latents.shape[2] != pipe.unet.config.in_channels:
            raise InputError(f"cache latents have {latents.shape[2]} channels, the model's {pipe.unet.config.in_channels}")
        torch.manual_seed(args.seed)
        probe, held = train_probe(latents, labels, len(values), epochs=args.epochs, seed=args.seed)
        frames = args.frames or latents.shape[1]
        size = args.size or latents.shape[-1] * pipe.vae_scale_factor
        report = {"cache": str(args.cache), "model": str(args.model or "shipped"), "attribute": args.attribute,
                  "clips": len(latents), "probe_held_back_accuracy": {values[c]: round(a, 4) for c, a in held.items()},
                  **probe_model(pipe, probe, args.attribute, values, per_value=args.per_value, frames=frames, height=size,
                                width=size, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                trajectory=args.trajectory)}
    except (VidgenError, OSError) as exc:
        print(f"latent_probe: error: {exc}", file=sys.stderr)
        return 2
    print(f"probe on held-back cached clips: " + ", ".join(f"{v} {a:.3f}" for v, a in report["probe_held_back_accuracy"].items()))
    print("| prompted | n | probe reads it | judge reads it | probe mean (" + " / ".join(values) + ") |")
    print("|---|---|---|---|---|")
    for v, r in report["per_value"].items():
        print(f"| {v} | {r['n']} | {r['probe_accuracy']:.0%} | {r['judge_accuracy']:.0%} | "
              + " / ".join(f"{x:.2f}" for x in r["probe_mean"]) + " |")
    for row in report.get("trajectory", []):
        print(f"step {row['step']:2d} t={row['t']:4d}  " + "  ".join(
            f"{v}: " + "/".join(f"{x:.2f}" for x in m) for v, m in row["probe_mean"].items()))
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
