"""Training-step cost of the default model's denoiser at other widths and depths, as ratios to the shipped one.

One training step of the toy recipe's shape (batch 16, 8 latent frames of 4x8x8, or 4x16x16 for the
finer-grid variants "g16-...", 32 caption
tokens of width 128; forward, backward and AdamW, under bf16 autocast or in fp32, as `vidgen
train` runs it with train.mixed_precision=bf16 / no) for each variant of the shipped
UNetMotionModel config, variants interleaved round by round so a busy machine slows them alike;
medians of the rounds after the first. Ratios are to the shipped widths under the first precision.

    python benchmarks/bench_denoiser_widths.py --repeats 5
    python benchmarks/bench_denoiser_widths.py --repeats 7 --variants shipped --precision bf16 fp32
    python benchmarks/bench_denoiser_widths.py --repeats 5 --precision fp32 --variants shipped g16-[32,64,128]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

SHIPPED = dict(block_out_channels=(64, 128, 128), layers_per_block=1,
               down_block_types=("CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion", "DownBlockMotion"),
               up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion"),
               num_attention_heads=4, motion_num_attention_heads=4, motion_max_seq_length=32, norm_num_groups=32,
               sample_size=8, cross_attention_dim=128, in_channels=4, out_channels=4)
FINE_TYPES = dict(down_block_types=("DownBlockMotion", "CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion"),
                  up_block_types=("CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion", "UpBlockMotion"))
VARIANTS = {
    "shipped [64,128,128]": {},
    "[96,128,128]": dict(block_out_channels=(96, 128, 128)),
    "[128,128,128]": dict(block_out_channels=(128, 128, 128)),
    "[128,128,256]": dict(block_out_channels=(128, 128, 256)),
    "two layers per block": dict(layers_per_block=2),
    # A finer latent grid (16x16 from a factor-2 VAE): one more spatial level at the top, none at 2x2.
    "g16-[32,64,128]": dict(block_out_channels=(32, 64, 128), sample_size=16, **FINE_TYPES),
    "g16-[64,64,128]": dict(block_out_channels=(64, 64, 128), sample_size=16, **FINE_TYPES),
    "g16-[32,64,128,128]": dict(block_out_channels=(32, 64, 128, 128), sample_size=16,
                                down_block_types=("DownBlockMotion",) + SHIPPED["down_block_types"],
                                up_block_types=SHIPPED["up_block_types"] + ("UpBlockMotion",)),
}


def main() -> None:
    import torch
    from diffusers import UNetMotionModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=[name.split()[0] for name in VARIANTS], metavar="NAME",
                   help="first word of the variants to time (default: all)")
    p.add_argument("--precision", nargs="+", choices=("bf16", "fp32"), default=["bf16"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t = torch.randint(0, 1000, (16,))
    context = torch.randn(16 * 8, 32, 128)  # the motion U-Net takes per-frame states
    chosen = {name: kw for name, kw in VARIANTS.items() if not args.variants or name.split()[0] in args.variants}
    models = {name: UNetMotionModel(**{**SHIPPED, **kw}) for name, kw in chosen.items()}
    opts = {name: torch.optim.AdamW(m.parameters(), 1e-4) for name, m in models.items()}
    inputs = {name: torch.randn(16, 4, 8, m.config.sample_size, m.config.sample_size) for name, m in models.items()}
    runs = [(name, prec) for name in models for prec in args.precision]
    times: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for _ in range(args.repeats + 1):
        for name, prec in runs:
            model = models[name]
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16) if prec == "bf16" else contextlib.nullcontext():
                out = model(inputs[name], t, encoder_hidden_states=context).sample
            out.float().pow(2).mean().backward()
            opts[name].step()
            opts[name].zero_grad()
            times[(name, prec)].append(time.perf_counter() - start)
    base = statistics.median(times[runs[0]][1:])
    rows = []
    print(f"| denoiser | precision | parameters | step (s) | x {runs[0][0].split()[0]} {runs[0][1]} |\n|---|---|---|---|---|")
    for name, prec in runs:
        med = statistics.median(times[(name, prec)][1:])
        params = sum(q.numel() for q in models[name].parameters()) / 1e6
        rows.append({"variant": name, "precision": prec, "params_m": round(params, 2), "step_s": round(med, 3),
                     "ratio": round(med / base, 3)})
        print(f"| {name} | {prec} | {params:.1f}M | {med:.2f} | {med / base:.2f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
