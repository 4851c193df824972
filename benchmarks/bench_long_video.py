"""Long videos and prompt travel on the shipped model: quality against the alternatives, time and memory.

Three measurements (``--only``):

* ``long``: 64-frame videos (8x the 8 frames the model was trained on) from ``--n`` single toy-world
  prompts, made by vidgen's context windows (the model's defaults, and diffusers' settings: guidance
  at every step, no cache, windows of 8 frames every 6), by one window of 32 frames (the most the model's motion modules take in
  one pass; 64 is refused) and by diffusers' own FreeNoise (``AnimateDiffPipeline.enable_free_noise``,
  the same weights, window 8, stride 6). Per 8-frame window the toy-world judge reads colour, shape
  and motion; over the whole video the largest frame-to-frame jump of the object's centroid, against
  that of real toy clips of the world's own speed.
* ``travel``: 30 three-prompt toy stories (the motion changes at each caption) as one continuous
  video (``vidgen story --continuous``: keyframes at frames 0, 8, 16; the model's windows, and windows
  of 8 frames every 4) and clip by clip (``vidgen story``,
  the model's story defaults): motion per segment, colour kept, the centroid jump at each keyframe.
* ``cost``: wall time and peak memory of one 64-frame video against 8 separate 8-frame videos, and the
  peak memory of 32, 64 and 128 frames, each in a fresh process (medians of ``--repeats``).

    python benchmarks/bench_long_video.py --n 60 [--only long travel cost] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("long", "travel", "cost")
WINDOW = 8  # the model's trained length: the judge reads every 8 frames
FRAMES = 64


def load():
    from vidgen.pipelines.loading import load_pipeline

    pipe = load_pipeline(None, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def shipped_settings() -> dict:
    from vidgen.pipelines.loading import default_model_dir
    from vidgen.pipelines.settings import SamplingSettings, pipeline_kwargs, read_model_defaults

    s = SamplingSettings(**read_model_defaults(default_model_dir()).sampling)
    kwargs = pipeline_kwargs(s)
    kwargs.pop("num_frames")
    return kwargs


def judge_windows(frames: np.ndarray, prompt: str) -> dict:
    """Per 8-frame window: whether colour, shape and motion match the prompt; the largest centroid jump."""
    from vidgen.toyworld.judge import faithfulness, judge_frames

    rows = []
    for start in range(0, len(frames) - WINDOW + 1, WINDOW):
        result = judge_frames(frames[start : start + WINDOW])
        rows.append(faithfulness(result, prompt).matches)
    track = judge_frames(frames).track
    steps = np.hypot(*np.diff(track, axis=0).T)
    return {"windows": rows, "max_jump_px": float(np.nanmax(steps)) if np.isfinite(steps).any() else math.nan}


def pooled(results: list[dict]) -> dict:
    """Fractions of windows whose colour/shape/motion match; per video the share of windows moving as asked."""
    windows = [w for r in results for w in r["windows"]]
    held = [np.mean([w.get("motion", False) for w in r["windows"]]) for r in results]
    return {
        "videos": len(results),
        **{f"{a}_windows": round(float(np.mean([w[a] for w in windows if a in w])), 3) for a in ("color", "shape", "motion")},
        "videos_motion_held_90": round(float(np.mean([h >= 0.9 for h in held])), 3),
        "median_max_jump_px": round(float(np.nanmedian([r["max_jump_px"] for r in results])), 2),
    }


def real_max_jump(n: int, seed: int) -> float:
    """Median over real toy clips (8 frames at the model's size, the world's own speed) of the largest centroid jump."""
    from vidgen.toyworld.judge import judge_frames
    from vidgen.toyworld.render import iter_samples

    jumps = []
    for sample in iter_samples(n, seed=seed, num_frames=WINDOW, size=32):
        track = judge_frames(sample.frames).track
        steps = np.hypot(*np.diff(track, axis=0).T)
        if np.isfinite(steps).any():
            jumps.append(float(np.nanmax(steps)))
    return float(np.median(jumps))


def toy_prompts(n: int, seed: int) -> list[str]:
    from vidgen.toyworld.captions import canonical_caption
    from vidgen.toyworld.render import iter_samples

    return [canonical_caption(s.attrs) for s in iter_samples(n, seed=seed, num_frames=2, size=16)]


def measure_long(n: int, seed: int, batch: int) -> dict:
    import torch
    from diffusers import AnimateDiffPipeline

    pipe = load()
    shipped = shipped_settings()
    # diffusers' FreeNoise guides every step without a cache, in windows of 8 frames every 6
    equal = {**shipped, "guidance_interval": None, "cache": None, "context_length": WINDOW, "context_overlap": 2}
    prompts = toy_prompts(n, seed)
    from vidgen.pipelines.loading import default_model_dir
    from vidgen.training.export import motion_adapter_of

    # its own copy: enable_free_noise replaces the motion modules' blocks in place, and reads the limit from an adapter
    diffusers_pipe = AnimateDiffPipeline.from_pretrained(str(default_model_dir()), torch_dtype=torch.float32)
    diffusers_pipe.register_modules(motion_adapter=motion_adapter_of(diffusers_pipe.unet))
    diffusers_pipe.set_progress_bar_config(disable=True)
    diffusers_pipe.enable_free_noise(context_length=WINDOW, context_stride=WINDOW - 2)

    def vidgen_run(settings, frames):
        return lambda chunk, gens: pipe(chunk, num_frames=frames, generator=gens, output_type="np", **settings).frames

    def diffusers_run(chunk, gens):  # FreeNoise takes one prompt per call
        return [diffusers_pipe(prompt, num_frames=FRAMES, height=shipped["height"], width=shipped["width"], generator=gen,
                               num_inference_steps=shipped["num_inference_steps"], guidance_scale=shipped["guidance_scale"],
                               output_type="np").frames[0] for prompt, gen in zip(chunk, gens)]

    settings = {
        "vidgen windows (model defaults)": (vidgen_run(shipped, FRAMES), shipped),
        "vidgen windows (diffusers' settings)": (vidgen_run(equal, FRAMES), equal),
        "diffusers FreeNoise": (diffusers_run, equal),
        "one window of 32 frames (the model's limit)": (vidgen_run({**shipped, "context_length": 32}, 32), shipped),
    }
    report = {"real_clips_median_max_jump_px": round(real_max_jump(200, seed + 1), 2)}
    for name, (run, _) in settings.items():
        start = time.perf_counter()
        results = []
        for i in range(0, len(prompts), batch):
            chunk = prompts[i : i + batch]
            gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(chunk))]
            videos = np.asarray(run(chunk, gens))
            results += [judge_windows((v * 255).round().astype(np.uint8), p) for v, p in zip(videos, chunk)]
        report[name] = {**pooled(results), "seconds_per_video": round((time.perf_counter() - start) / len(prompts), 2)}
        print(name, json.dumps(report[name]), flush=True)
    return report


def measure_travel(n: int, seed: int) -> dict:
    from vidgen.io.writer import to_uint8_frames
    from vidgen.pipelines.settings import read_model_defaults
    from vidgen.pipelines.loading import default_model_dir
    from vidgen.pipelines.story import StoryPipeline, default_resample
    from vidgen.toyworld.suites import boundary_measures, clip_verdicts, summarize_story, toy_story_scripts

    pipe = load()
    shipped = shipped_settings()
    story_defaults = read_model_defaults(default_model_dir()).story
    story = StoryPipeline(pipe)
    travel_windows = {"context_length": WINDOW, "context_overlap": WINDOW // 2}  # the trained length, half overlapping
    rows: dict[str, list[dict]] = {"continuous (prompt travel)": [], "continuous, windows of 8 every 4": [],
                                   "clip by clip (vidgen story)": []}
    for i, captions in enumerate(toy_story_scripts(n, seed, 3)):
        made = {
            "continuous (prompt travel)": story.continuous(captions, num_frames=WINDOW, seed=seed + 1000 * i, **shipped),
            "continuous, windows of 8 every 4": story.continuous(captions, num_frames=WINDOW, seed=seed + 1000 * i,
                                                                 **{**shipped, **travel_windows}),
            "clip by clip (vidgen story)": story(captions, num_frames=WINDOW, seed=seed + 1000 * i, overlap=2,
                                                 pin=story_defaults.get("pin", "noised"),
                                                 resample=default_resample(pipe, story_defaults), **shipped),
        }
        for mode, out in made.items():
            parts = [to_uint8_frames(c.new_frames) for c in out.clips]
            rows[mode].append(summarize_story(boundary_measures(parts), clip_verdicts(parts, captions)))
    report = {}
    for mode, rs in rows.items():
        report[mode] = {
            "stories": len(rs),
            "motion_per_segment": round(float(np.nanmean([r["motion_accuracy"] for r in rs])), 3),
            "color_kept": round(float(np.mean([r["color_kept"] for r in rs])), 3),
            "shape_kept": round(float(np.mean([r["shape_kept"] for r in rs])), 3),
            "median_boundary_jump_px": round(float(np.nanmedian([r["median_jump_px"] for r in rs])), 2),
        }
        print(mode, json.dumps(report[mode]), flush=True)
    return report


def one_cost(task: str) -> dict:
    """One timed run in this fresh process: ``long:N`` (one N-frame video) or ``separate:K`` (K 8-frame videos)."""
    import torch

    from bench_weights import peak_rss_mib  # noqa: E402  (same folder)

    pipe = load()
    settings = shipped_settings()
    prompt = "a red circle moves right on a white background"
    pipe(prompt, num_frames=WINDOW, num_inference_steps=2, output_type="np", **{k: v for k, v in settings.items()
                                                                               if k != "num_inference_steps"})  # warm-up
    kind, count = task.split(":")
    start = time.perf_counter()
    if kind == "long":
        pipe(prompt, num_frames=int(count), generator=torch.Generator().manual_seed(0), output_type="np", **settings)
    else:
        for k in range(int(count)):
            pipe(prompt, num_frames=WINDOW, generator=torch.Generator().manual_seed(k), output_type="np", **settings)
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def measure_cost(repeats: int) -> dict:
    tasks = [f"long:{FRAMES}", f"separate:{FRAMES // WINDOW}", "long:32", "long:128"]
    runs: dict[str, list[dict]] = {t: [] for t in tasks}
    for _ in range(repeats):
        for task in tasks:
            out = subprocess.run([sys.executable, __file__, "--one", task], capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).parent)
            runs[task].append(json.loads(out.stdout.strip().splitlines()[-1]))
    report = {t: {k: round(statistics.median(r[k] for r in rs), 2) for k in ("seconds", "peak_rss_mib")} for t, rs in runs.items()}
    report["64_frames_over_8_videos"] = {k: round(report[tasks[0]][k] / report[tasks[1]][k], 3) for k in ("seconds", "peak_rss_mib")}
    print(json.dumps(report), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=60, help="prompts for the long-video measure")
    p.add_argument("--stories", type=int, default=30, help="scripts for the prompt-travel measure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=10, help="videos sampled together in the long-video measure")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES))
    p.add_argument("--one", metavar="TASK", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    if args.one:
        print(json.dumps(one_cost(args.one)))
        return 0
    report = {}
    if "long" in args.only:
        report["long"] = measure_long(args.n, args.seed, args.batch)
    if "travel" in args.only:
        report["travel"] = measure_travel(args.stories, args.seed)
    if "cost" in args.only:
        report["cost"] = measure_cost(args.repeats)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
