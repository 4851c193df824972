"""Toy world: rendering and dataset-writing speed, and the judge's accuracy on ground truth.

Rendering is timed side by side with a peer, OpenCV's anti-aliased drawing
(``LINE_AA`` with 4 fractional bits) of the same scenes, reporting the median
of several repeats, the ratio, and each renderer's worst area error against the
analytic area. Dataset writing times :func:`vidgen.toyworld.generate` for
both layouts. The judge is scored on clean ground-truth clips of every
attribute combination, raw and after an MP4 round trip, at each resolution.

    PYTHONPATH=$PWD python benchmarks/bench_toyworld.py --clips 2000 --judge-clips 500 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vidgen import toyworld as tw
from vidgen.toyworld.judge import SHAPE_FILL, judge_accuracy, judge_frames, judge_video


def render_cv2(scene: tw.Scene, num_frames: int, size: int) -> np.ndarray:
    """The peer: the same scene drawn with OpenCV's anti-aliased primitives at 1/16-pixel precision."""
    import cv2

    bits = 4
    one = 1 << bits
    bg = tw.BACKGROUND_RGB[scene.attrs.background]
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    half = scene.size * size / 2
    dx, dy = tw.MOTION_VECTORS[scene.attrs.motion]
    for k in range(num_frames):
        frame = frames[k]
        frame[:] = bg
        # OpenCV puts pixel centres at integers; the renderer puts them at +0.5.
        cx = (scene.x0 + dx * scene.travel * k / num_frames) * size - 0.5
        cy = (scene.y0 + dy * scene.travel * k / num_frames) * size - 0.5
        if scene.attrs.shape is tw.Shape.CIRCLE:
            cv2.circle(frame, (round(cx * one), round(cy * one)), round(half * one), scene.rgb, -1, cv2.LINE_AA, bits)
            continue
        if scene.attrs.shape is tw.Shape.SQUARE:
            pts = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
        else:
            pts = [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
        poly = np.round(np.array(pts) * one).astype(np.int32)[None]
        cv2.fillPoly(frame, poly, scene.rgb, cv2.LINE_AA, bits)
    return frames


def area_error(frames: np.ndarray, scene: tw.Scene, size: int) -> float:
    """Worst relative error of the drawn area (sum of recovered opacity) against the analytic area."""
    bg = np.array(tw.BACKGROUND_RGB[scene.attrs.background], np.float64)
    u = np.array(scene.rgb, np.float64) - bg
    drawn = ((frames.astype(np.float64) - bg) @ u / (u @ u)).sum(axis=(1, 2))
    truth = SHAPE_FILL[scene.attrs.shape] * (scene.size * size) ** 2
    return float(np.abs(drawn / truth - 1).max())


def bench_render(clips: int, frames: int, size: int, repeats: int) -> None:
    scenes = [tw.sample_scene(np.random.default_rng([0, i]), split="all") for i in range(clips)]
    rows = []
    for name, fn in (("numpy supersampling (vidgen)", lambda s: tw.render_clip(s, frames, size)),
                     ("OpenCV LINE_AA (peer)", lambda s: render_cv2(s, frames, size))):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for scene in scenes:
                fn(scene)
            times.append(time.perf_counter() - t)
        worst = max(area_error(fn(s), s, size) for s in scenes[:300])
        rows.append((name, statistics.median(times), worst))
    base = rows[0][1]
    print(f"\n### Rendering {clips} clips of {frames} frames at {size}x{size} (median of {repeats})\n")
    print("| renderer | seconds | clips/s | vs vidgen | worst area error (300 clips) |")
    print("|---|---|---|---|---|")
    for name, seconds, worst in rows:
        print(f"| {name} | {seconds:.2f} | {clips / seconds:,.0f} | {seconds / base:.2f}x | {100 * worst:.1f}% |")


def bench_generate(clips: int, frames: int, size: int, repeats: int) -> None:
    per_video = 6
    videos = math.ceil(clips / per_video)
    print(f"\n### Writing a dataset: {videos} source videos x {per_video} clips of {frames} frames at {size}x{size}\n")
    print("| layout | workers | files | clips | seconds (median) | clips/s |")
    print("|---|---|---|---|---|---|")
    for layout, workers, reps in (("videos", 1, repeats), ("videos", 2, repeats), ("clips", 2, 1)):
        times = []
        for _ in range(reps):
            with tempfile.TemporaryDirectory() as tmp:
                summary = tw.generate(Path(tmp), num_videos=videos, min_clips=per_video, max_clips=per_video,
                                      min_frames=frames, max_frames=frames, width=size, height=size, layout=layout,
                                      workers=workers)
            times.append(summary.seconds)
        seconds = statistics.median(times)
        print(f"| {layout} | {workers} | {summary.num_files} | {summary.num_clips} | {seconds:.1f} | {summary.num_clips / seconds:,.0f} |")


def _box_blur(frames: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    k = 2 * radius + 1
    return np.stack([cv2.blur(f.astype(np.float32), (k, k), borderType=cv2.BORDER_REPLICATE) for f in frames])


def _row(label: str, acc: dict[str, float], n: int, seconds: float) -> str:
    cells = " | ".join(f"{100 * acc[name]:.1f}" for name in (*tw.ATTRIBUTES, "all"))
    return f"| {label} | {n} | {cells} | {1000 * seconds / n:.1f} |"


def bench_judge(clips: int) -> None:
    print("\n### Judge accuracy on clean ground truth (% correct; all attribute combinations, 16 frames)\n")
    print("| clips | n | colour | shape | motion | background | all four | ms/clip (incl. render/codec) |")
    print("|---|---|---|---|---|---|---|---|")
    full, upscaled = clips, min(clips, 300)  # bicubic upscaling is slow: fewer clips for those cases
    cases = [(f"{s}x{s} {'MP4' if mp4 else 'raw'}", full, dict(size=s, mp4=mp4, seed=s)) for s in (32, 48, 64) for mp4 in (False, True)]
    cases += [("32x32 nearest x4 -> 128 MP4", upscaled, dict(size=32, mp4=True, upscale=4, seed=1)),
              ("32x32 bicubic x4 -> 128 MP4", upscaled, dict(size=32, mp4=True, upscale=4, upscale_mode="bicubic", seed=2)),
              ("48x48 bicubic x2 -> 96 MP4", upscaled, dict(size=48, mp4=True, upscale=2, upscale_mode="bicubic", seed=3)),
              ("64x48 MP4", full, dict(size=(64, 48), mp4=True, seed=4)),
              ("32x32 MP4, 8 frames", full, dict(size=32, mp4=True, num_frames=8, seed=5))]
    for label, n, kwargs in cases:
        t = time.perf_counter()
        result = judge_accuracy(n, **kwargs)
        print(_row(label, result.accuracy, n, time.perf_counter() - t))

    # The path a generated clip takes: its own file, written as `vidgen sample --upscale 4` does.
    from vidgen.io import write_video

    n = min(clips, 100)
    hits = {name: 0 for name in (*tw.ATTRIBUTES, "all")}
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            sample = tw.make_sample(i, seed=6, size=32, split="all")
            path = write_video(Path(tmp) / f"{i}.mp4", sample.frames, fps=8, upscale_factor=4)
            verdict = judge_video(path).attributes()
            for name in tw.ATTRIBUTES:
                hits[name] += verdict[name] == getattr(sample.attrs, name).value
            hits["all"] += verdict == sample.attrs.as_dict()
    print(_row("32x32 x4, one MP4 file per clip, judge_video", {k: v / n for k, v in hits.items()}, n, time.perf_counter() - t))

    # Robustness beyond ground truth: blur and noise stand in for a decoder's soft, noisy output.
    rng = np.random.default_rng(0)
    for radius, noise in ((1, 0), (2, 0), (1, 6), (2, 6), (2, 12)):
        n = min(clips, 300)
        hits = {name: 0 for name in (*tw.ATTRIBUTES, "all")}
        t = time.perf_counter()
        for i in range(n):
            sample = tw.make_sample(i, seed=7, size=48, split="all")
            frames = _box_blur(sample.frames, radius) + rng.normal(0, noise, sample.frames.shape)
            verdict = judge_frames(np.clip(np.rint(frames), 0, 255).astype(np.uint8)).attributes()
            for name in tw.ATTRIBUTES:
                hits[name] += verdict[name] == getattr(sample.attrs, name).value
            hits["all"] += verdict == sample.attrs.as_dict()
        label = f"48x48 box blur {2 * radius + 1}x{2 * radius + 1} + noise sd {noise}"
        print(_row(label, {k: v / n for k, v in hits.items()}, n, time.perf_counter() - t))


def bench_judge_speed(repeats: int) -> None:
    print("\n### Judge speed (judging only, 16 frames, median of repeats)\n")
    print("| frame size | ms/clip |")
    print("|---|---|")
    for size in (32, 64, 128, 256):
        clips = [tw.make_sample(i, seed=8, size=size).frames for i in range(50)]
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for frames in clips:
                judge_frames(frames)
            times.append((time.perf_counter() - t) / len(clips))
        print(f"| {size}x{size} | {1000 * statistics.median(times):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000, help="clips to render and write")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--judge-clips", type=int, default=500, help="ground-truth clips per judge case")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_render(args.clips, args.frames, args.size, args.repeats)
    bench_generate(args.clips, args.frames, args.size, args.repeats)
    bench_judge(args.judge_clips)
    bench_judge_speed(args.repeats)


if __name__ == "__main__":
    main()
