"""Training throughput and memory: gradient checkpointing on/off, and cached latents vs encoding on the fly.

Every variant runs in its own process (so its peak RSS is its own) through the
real ``vidgen.training.loop.train``; samples/s counts the steps after a warm-up.

    python benchmarks/bench_train.py checkpointing --preset tiny --frames 8 --size 32 --batch 4 --steps 6
    python benchmarks/bench_train.py checkpointing --preset sd15 --frames 4 --size 128 --batch 1 --steps 3
    python benchmarks/bench_train.py cache --preset toy --frames 16 --size 32 --batch 8 --steps 10
    python benchmarks/bench_train.py cache --preset sd15 --frames 16 --size 128 --batch 1 --steps 3

Presets: ``tiny`` (test-sized random parts), ``sd15`` (Stable Diffusion 1.5 shapes, random
weights; temporal layers trained, as on a CPU the full model's optimiser state does not fit),
``toy`` (the shipped default model's VAE and text encoder with its denoiser config).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent


def base_folder(preset: str, root: Path) -> tuple[Path, list[str]]:
    """A base model folder for the preset and the config overrides that pick its denoiser."""
    if preset == "toy":
        return REPO / "checkpoints", [f"model.unet={json.dumps(_toy_unet())}", "model.prediction_type=v_prediction"]
    from vidgen.models.t2v import build_text_encoder, build_vae, build_scheduler
    from vidgen.models.tokenizer import hf_clip_tokenizer

    folder = root / f"base_{preset}"
    if not folder.exists():
        build_vae(preset).save_pretrained(str(folder / "vae"))
        te = build_text_encoder(preset)
        te.save_pretrained(str(folder / "text_encoder"))
        hf_clip_tokenizer(te.config.max_position_embeddings).save_pretrained(str(folder / "tokenizer"))
        build_scheduler().save_pretrained(str(folder / "scheduler"))
    extra = [f"model.preset={preset}"]
    if preset == "sd15":
        extra.append("model.trainable=temporal")
    return folder, extra


def _toy_unet() -> dict:
    from vidgen.config import load_config
    from vidgen.training.config import TrainConfig

    return load_config(TrainConfig, files=[REPO / "configs" / "train" / "toy.yaml"]).model.unet


class RandomClips:
    """``n`` random clips (fixed seed) with captions, in the video-text dataset's item format."""

    def __init__(self, n: int, frames: int, size: int):
        import torch

        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, frames, 3, size, size, generator=g) * 2 - 1
        self.captions = [f"a red circle moves left, clip {i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "caption": self.captions[i], "key": str(i)}


def measure(args) -> None:
    """One variant in this process: train a few steps, print samples/s and peak RSS as JSON."""

    from tests.train_helpers import collate
    from vidgen.config import load_config
    from vidgen.training.config import TrainConfig
    from vidgen.training.loop import train

    root = Path(args.root)
    base, extra = base_folder(args.preset, root)
    import tempfile

    run_dir = tempfile.mkdtemp(prefix=f"run_{args.variant}.", dir=root)  # a fresh run each repeat
    overrides = [f"model.base={base}", "model.denoiser=fresh", f"output_dir={run_dir}",
                 f"data.batch_size={args.batch}", f"train.max_steps={args.warmup + args.steps}", "train.ema_decay=null",
                 "logging.tracker=none", "logging.progress=false", "checkpoint.every=100000",
                 f"train.mixed_precision={args.precision}", "data.path=unused", *extra]
    dataset, collate_fn = RandomClips(max(2 * args.batch, 4), args.frames, args.size), collate
    if args.variant == "checkpointing":
        overrides.append("model.gradient_checkpointing=true")
    if args.variant == "cached":
        overrides += ["data.source=latents", f"data.path={args.cache}"]
        dataset = collate_fn = None
    cfg = load_config(TrainConfig, overrides=overrides)
    stamps = []
    train(cfg, dataset=dataset, collate_fn=collate_fn, on_step=lambda state, loss: stamps.append(time.perf_counter()))
    timed = stamps[args.warmup - 1 :]
    step_s = [b - a for a, b in zip(timed, timed[1:])]
    print(json.dumps({"variant": args.variant, "samples_per_s": args.batch / statistics.median(step_s),
                      "median_step_s": statistics.median(step_s), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def prepare_cache(args, root: Path) -> Path:
    """Write the benchmark clips as MP4 files and cache them with ``vidgen data cache`` (the real path)."""
    import numpy as np

    from vidgen.io.writer import write_video

    base, _ = base_folder(args.preset, root)
    clips = RandomClips(max(2 * args.batch, 4), args.frames, args.size)
    folder = root / "clips"
    for i in range(len(clips)):
        frames = ((clips.x[i].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        write_video(folder / f"clip{i}.mp4", frames, fps=8, overwrite=True)
        (folder / f"clip{i}.txt").write_text(clips.captions[i])
    cache = root / "cache"
    cmd = [sys.executable, "-m", "vidgen", "data", "cache", str(folder), "-o", str(cache), "--model", str(base),
           "--frames", str(args.frames), "--size", str(args.size), "--overwrite"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return cache


def run_variant(args, variant: str, root: Path, cache: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "_measure", "--variant", variant, "--root", str(root), "--preset", args.preset,
           "--frames", str(args.frames), "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--precision", args.precision]
    if cache:
        cmd += ["--cache", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("checkpointing", "cache", "_measure"))
    parser.add_argument("--preset", default="tiny", choices=("tiny", "sd15", "toy"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant (alternating); medians reported")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "_measure":
        return measure(args)
    with tempfile.TemporaryDirectory(prefix="bench_train.") as tmp:
        root = Path(tmp)
        if args.mode == "checkpointing":
            variants, cache = ("plain", "checkpointing"), None
        else:
            variants, cache = ("on_the_fly", "cached"), prepare_cache(args, root)
        runs = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in variants:
                runs[v].append(run_variant(args, v, root, cache))
        result = {"mode": args.mode, "preset": args.preset, "frames": args.frames, "size": args.size, "batch": args.batch,
                  "precision": args.precision, "repeats": args.repeats}
        for v, rs in runs.items():
            result[f"{v}_samples_per_s"] = round(statistics.median(r["samples_per_s"] for r in rs), 4)
            result[f"{v}_peak_rss_mib"] = round(statistics.median(r["peak_rss_mib"] for r in rs))
        a, b = variants
        result[f"speed_{b}_over_{a}"] = round(result[f"{b}_samples_per_s"] / result[f"{a}_samples_per_s"], 3)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
