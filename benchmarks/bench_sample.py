"""vidgen's TextToVideoPipeline against diffusers' AnimateDiffPipeline, side by side.

Both pipelines share the same module objects (random weights from a preset),
scheduler config, prompt, seed and size. After one warm-up each, pairs run in
alternating order (ours first, then theirs first, ...) so both see the same
machine state and neither always follows the other; the report gives median
wall times, their ratio, the largest frame difference, the time spent inside the
shared modules (text encoder, denoiser, VAE decode; the rest is each pipeline's
own overhead), and the peak resident memory of each pipeline measured in its own
child process. ``--control`` puts a second AnimateDiffPipeline in our place: the
ratio two identical pipelines get shows what the method can resolve.

    python benchmarks/bench_sample.py --preset tiny --frames 8 --size 64 --steps 10 --repeats 7
    python benchmarks/bench_sample.py --preset sd15 --frames 8 --size 256 --steps 3 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def build(args):
    import torch
    from diffusers import AnimateDiffPipeline

    from vidgen.models.t2v import build_components
    from vidgen.pipelines import TextToVideoPipeline, make_scheduler

    components = build_components("motion", args.preset, seed=0)
    components["scheduler"] = make_scheduler(args.scheduler, components["scheduler"].config)
    # --control: an A/A run, a second AnimateDiffPipeline in our place, to see the method's own bias.
    ours = AnimateDiffPipeline(motion_adapter=None, **components) if args.control else TextToVideoPipeline(**components)
    theirs = AnimateDiffPipeline(motion_adapter=None, **components)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    torch.set_grad_enabled(False)
    return ours, theirs


PHASES = {"text": 0.0, "unet": 0.0, "vae": 0.0}


def instrument(pipe) -> None:
    """Time the shared modules' calls (they are the same objects in both pipelines)."""
    import functools

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                PHASES[name] += time.perf_counter() - start
        return wrapper

    pipe.text_encoder.forward = timed("text", pipe.text_encoder.forward)
    pipe.unet.forward = timed("unet", pipe.unet.forward)
    pipe.vae.decode = timed("vae", pipe.vae.decode)


def run_once(pipe, args, is_ours: bool):
    import numpy as np
    import torch

    kwargs = dict(
        num_frames=args.frames, height=args.size, width=args.size, num_inference_steps=args.steps,
        guidance_scale=args.guidance, negative_prompt=args.negative,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if not is_ours or args.control:
        kwargs["output_type"] = "np"
    for key in PHASES:
        PHASES[key] = 0.0
    start = time.perf_counter()
    frames = pipe(args.prompt, **kwargs).frames
    return time.perf_counter() - start, np.asarray(frames)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args) -> None:
    """Measure one pipeline's memory in a fresh process: RSS after building, peak after sampling."""
    ours, theirs = build(args)
    pipe = ours if args.only == "ours" else theirs
    import psutil

    base = psutil.Process().memory_info().rss / 2**20
    run_once(pipe, args, args.only == "ours")
    print(json.dumps({"base_mib": base, "peak_mib": peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=("tiny", "sd15"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="a red circle slides to the left")
    parser.add_argument("--negative", default="blurry")
    parser.add_argument("--only", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    parser.add_argument("--control", action="store_true",
                        help="A/A control: a second AnimateDiffPipeline takes our place (measures the method's bias)")
    args = parser.parse_args()
    if args.only:
        return child(args)

    import numpy as np
    import torch

    ours, theirs = build(args)
    instrument(ours)  # the modules are shared: this times theirs' calls too
    run_once(ours, args, True)  # warm-up: allocator, kernels, lazy imports
    run_once(theirs, args, False)
    times = {"ours": [], "theirs": []}
    phases = {"ours": [], "theirs": []}
    frames = {}
    for repeat in range(args.repeats):
        order = ("ours", "theirs") if repeat % 2 == 0 else ("theirs", "ours")
        for name in order:
            t, frames[name] = run_once(ours if name == "ours" else theirs, args, name == "ours")
            times[name].append(t)
            phases[name].append(dict(PHASES, other=t - sum(PHASES.values())))
    a, b = frames["ours"], frames["theirs"]
    diff = float(np.abs(a - b).max())
    memory = {}
    for name in ("ours", "theirs"):
        cmd = [sys.executable, __file__, "--only", name] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("only", "json", "repeats", "control")
        ] + (["--control"] if args.control else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        memory[name] = json.loads(out)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "preset": args.preset, "frames": args.frames, "size": args.size, "steps": args.steps, "scheduler": args.scheduler,
        "repeats": args.repeats, "median_s_ours": round(med["ours"], 4), "median_s_theirs": round(med["theirs"], 4),
        "ratio_ours_over_theirs": round(med["ours"] / med["theirs"], 4), "max_abs_frame_diff": diff,
        "runs_s_ours": [round(t, 3) for t in times["ours"]], "runs_s_theirs": [round(t, 3) for t in times["theirs"]],
        **{f"median_{phase}_s_{name}": round(statistics.median(p[phase] for p in phases[name]), 4)
           for name in ("ours", "theirs") for phase in ("text", "unet", "vae", "other")},
        "peak_rss_mib_ours": round(memory["ours"]["peak_mib"]), "peak_rss_mib_theirs": round(memory["theirs"]["peak_mib"]),
        "sampling_mib_ours": round(memory["ours"]["peak_mib"] - memory["ours"]["base_mib"]),
        "sampling_mib_theirs": round(memory["theirs"]["peak_mib"] - memory["theirs"]["base_mib"]),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
