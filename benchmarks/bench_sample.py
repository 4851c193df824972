"""Sampling settings side by side: diffusers' AnimateDiffPipeline, vidgen, feature caching, fast schedulers, compile.

Every setting samples the same prompts, seeds and size from the same module objects. The
reference is diffusers' ``AnimateDiffPipeline`` without cache; ``vidgen`` is vidgen's pipeline
without cache; the other settings are vidgen with ``--cache`` specs (``deep:3``, ``adaptive:0.1``),
a scheduler with its steps (``dpm++:7``), combinations joined by commas (``deep:3,dpm++:7``), and
``compile`` (``torch.compile`` of the denoiser; its warm-up compilation is timed apart and left out
of its figure). After one warm-up each, repeats run the settings in rotating order, and the report
gives each setting's median time, its ratio to diffusers and to vidgen, the mean and largest frame
difference to vidgen's uncached frames, and its peak resident memory measured in a fresh process
(``VmHWM``; compile's is not measured, as it would compile again). ``--control`` adds a second
diffusers pipeline as a setting: the ratio two identical pipelines get shows what the method resolves.

The shipped model, with its own sample defaults and 8 prompts a batch as ``vidgen eval`` samples (its
guidance interval is vidgen's alone: diffusers guides all steps there, so its row does more work):

    python benchmarks/bench_sample.py --model checkpoints --batch 8 --repeats 5 \\
        --settings vidgen deep:2 deep:3 deep:4 adaptive:0.1 dpm++:7 deep:3,dpm++:7 compile

An SD-1.5-shaped UNetMotionModel with random weights, at a size the CPU takes:

    python benchmarks/bench_sample.py --preset sd15 --frames 8 --size 128 --steps 4 --repeats 3 --settings vidgen deep:2 deep:3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

PROMPTS = ["a red circle moves left on a white background", "a blue triangle moves up on a black background",
           "a green square moves right on a gray background", "a yellow circle stays still on a black background",
           "a magenta triangle moves down on a white background", "a cyan square moves left on a gray background",
           "a red square moves up on a gray background", "a blue circle moves right on a white background"]


def build(args):
    """``(vidgen pipeline, diffusers pipeline, sampling kwargs)`` sharing one set of modules."""
    import torch
    from diffusers import AnimateDiffPipeline

    from vidgen.pipelines import TextToVideoPipeline, make_scheduler

    torch.set_grad_enabled(False)
    if args.model:
        from vidgen.pipelines.loading import load_pipeline
        from vidgen.pipelines.settings import SamplingSettings, pipeline_kwargs, read_model_defaults

        ours = load_pipeline(args.model, device="cpu")
        defaults = SamplingSettings(**read_model_defaults(args.model).sampling)
        if defaults.scheduler:
            ours.scheduler = make_scheduler(defaults.scheduler, ours.scheduler.config)
        kwargs = {k: v for k, v in pipeline_kwargs(defaults).items() if v is not None and k != "cache"}
    else:
        from vidgen.models.t2v import build_components

        components = build_components("motion", args.preset, seed=0)
        components["scheduler"] = make_scheduler("ddim", components["scheduler"].config)
        ours = TextToVideoPipeline(**components)
        kwargs = dict(num_frames=args.frames, height=args.size, width=args.size, num_inference_steps=args.steps,
                      guidance_scale=args.guidance, negative_prompt="blurry")
    theirs = AnimateDiffPipeline(vae=ours.vae, text_encoder=ours.text_encoder, tokenizer=ours.tokenizer, unet=ours.unet,
                                 scheduler=ours.scheduler, motion_adapter=None)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    return ours, theirs, kwargs


def sample(setting: str, ours, theirs, kwargs: dict, batch: int):
    """Seconds and frames ``[B, F, H, W, 3]`` of one batch with ``setting``."""
    import numpy as np
    import torch

    from vidgen.pipelines import make_scheduler

    call = dict(kwargs)
    pipe, cache, scheduler = ours, None, None
    for part in setting.split(","):
        if part in ("diffusers", "control"):
            pipe = theirs
        elif part in ("vidgen", "compile", "none"):
            pass
        elif part.startswith(("deep:", "adaptive:")):
            cache = part
        else:
            name, _, steps = part.partition(":")
            scheduler = make_scheduler(name, ours.scheduler.config)
            call["num_inference_steps"] = int(steps)
    if pipe is ours:
        call["cache"] = cache
    else:
        call.pop("guidance_interval", None)  # vidgen's alone: diffusers guides every step
    original = pipe.scheduler
    if scheduler is not None:
        pipe.scheduler = scheduler
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    if isinstance(call.get("negative_prompt"), str):
        call["negative_prompt"] = [call["negative_prompt"]] * batch  # diffusers wants one per prompt
    generators = [torch.Generator().manual_seed(i) for i in range(batch)]
    start = time.perf_counter()
    try:
        frames = pipe(prompts, generator=generators, output_type="np", **call).frames
    finally:
        pipe.scheduler = original
    return time.perf_counter() - start, np.asarray(frames)



def child(args) -> None:
    """One setting's memory in a fresh process."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_weights import peak_rss_mib  # one reading of peak memory for every benchmark

    ours, theirs, kwargs = build(args)
    sample(args.only, ours, theirs, kwargs, args.batch)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder, sampled with its sample defaults (else --preset, random weights)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "sd15"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch", type=int, default=1, help="videos per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settings", nargs="+", default=["vidgen", "deep:2", "deep:3"],
                        help="vidgen, cache specs, SCHEDULER:STEPS, compile, joined by commas (diffusers always runs)")
    parser.add_argument("--control", action="store_true", help="add a second diffusers pipeline as a setting (A/A control)")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if args.only:
        return child(args)

    import numpy as np
    import torch

    settings = ["diffusers"] + (["control"] if args.control else []) + [s for s in args.settings if s != "diffusers"]
    if "vidgen" not in settings:
        settings.insert(1, "vidgen")
    ours, theirs, kwargs = build(args)
    compile_s = None
    for setting in settings:  # warm-up: allocator, kernels, lazy imports
        if "compile" in setting.split(","):
            continue
        sample(setting, ours, theirs, kwargs, args.batch)
    times: dict[str, list[float]] = {s: [] for s in settings}
    frames: dict[str, np.ndarray] = {}
    eager = [s for s in settings if "compile" not in s.split(",")]
    for repeat in range(args.repeats):
        order = eager[repeat % len(eager):] + eager[:repeat % len(eager)]
        for setting in order:
            seconds, frames[setting] = sample(setting, ours, theirs, kwargs, args.batch)
            times[setting].append(seconds)
    compiled = [s for s in settings if "compile" in s.split(",")]
    if compiled:  # last: compiling changes the shared denoiser for good
        ours.unet.compile()
        compile_s, _ = sample(compiled[0], ours, theirs, kwargs, args.batch)
        sample(compiled[0], ours, theirs, kwargs, args.batch)  # the unguided steps' graph, if any, compiles here too
        for _ in range(args.repeats):
            for setting in compiled:
                seconds, frames[setting] = sample(setting, ours, theirs, kwargs, args.batch)
                times[setting].append(seconds)
    memory = {}
    for setting in eager:
        cmd = [sys.executable, __file__, "--only", setting, "--batch", str(args.batch)] + (
            ["--model", args.model] if args.model else
            ["--preset", args.preset, "--frames", str(args.frames), "--size", str(args.size), "--steps", str(args.steps),
             "--guidance", str(args.guidance)])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        memory[setting] = json.loads(out)["peak_mib"]
    median = {s: statistics.median(t) for s, t in times.items()}
    rows = {}
    for setting in settings:
        diff = np.abs(frames[setting] - frames["vidgen"])
        rows[setting] = {"median_s": round(median[setting], 3), "over_diffusers": round(median[setting] / median["diffusers"], 3),
                         "speedup_vs_vidgen": round(median["vidgen"] / median[setting], 3),
                         "mean_abs_diff": float(f"{diff.mean():.3g}"), "max_abs_diff": float(f"{diff.max():.3g}"),
                         "peak_rss_mib": round(memory[setting]) if setting in memory else None,
                         "runs_s": [round(t, 3) for t in times[setting]]}
    result = {"model": args.model or f"preset {args.preset}", "sampling": {k: v for k, v in kwargs.items() if k != "negative_prompt"},
              "batch": args.batch, "repeats": args.repeats, "compile_warmup_s": compile_s and round(compile_s, 1),
              "settings": rows, "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}))
    print(f"{'setting':>18} {'median s':>9} {'/diffusers':>10} {'speed-up':>9} {'mean diff':>10} {'max diff':>9} {'peak MiB':>9}")
    for setting, row in rows.items():
        print(f"{setting:>18} {row['median_s']:>9} {row['over_diffusers']:>10} {row['speedup_vs_vidgen']:>9} "
              f"{row['mean_abs_diff']:>10} {row['max_abs_diff']:>9} {str(row['peak_rss_mib']):>9}")


if __name__ == "__main__":
    main()
