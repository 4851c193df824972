"""Speed and memory of the shipped default model: `vidgen sample` as a user runs it.

Two settings side by side, alternating: the model folder's defaults
(sample_defaults.yaml) and a fast setting (a multistep solver with fewer steps).
For each: the wall time of the whole command (interpreter start, imports, model
load, sampling, MP4 write) and the peak RSS of that process (os.wait4), then the
time of the pipeline call alone with the model already loaded.

Two references are timed in the same run, because this CPU's speed varies several-fold
from day to day: a process that only imports what `vidgen sample` imports (the part
of the wall time no change to vidgen's own code removes), and a fixed pure-Python loop
(10**7 additions) that tells how fast the machine was while the figures were taken.

    python benchmarks/bench_default_model.py --repeats 5 --fast-scheduler dpm++ --fast-steps 7
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

PROMPT = "a red circle slides to the left on a white background"


def run_timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"{' '.join(cmd[1:4])} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def run_cli(extra: list[str], out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `vidgen sample` process."""
    return run_timed([sys.executable, "-m", "vidgen", "sample", "--prompt", PROMPT, "--out", str(out), "--overwrite",
                      "--no-progress", *extra])


IMPORTS = "import vidgen.cli.sample, vidgen.pipelines.text_to_video, vidgen.pipelines.loading"


def python_loop() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(10**7):
        total += i
    return time.perf_counter() - start


def sampling_only(extra: dict, repeats: int) -> list[float]:
    import torch

    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.sample import SampleConfig
    from vidgen.pipelines.settings import load_job_config, pipeline_kwargs

    d = load_job_config(SampleConfig).sampling
    pipe = load_pipeline(device="cpu", scheduler=extra.get("scheduler") or d.scheduler)
    kwargs = {**pipeline_kwargs(d), "num_inference_steps": extra.get("steps") or d.steps}
    pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kwargs)  # warm-up
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        pipe(PROMPT, generator=torch.Generator().manual_seed(i), **kwargs)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--fast-scheduler", default="dpm++")
    p.add_argument("--fast-steps", type=int, default=7)
    args = p.parse_args()
    fast_cli = ["--scheduler", args.fast_scheduler, "--steps", str(args.fast_steps)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v.mp4"
        run_cli([], out)  # warm the page cache (first import from disk)
        walls = {"default": [], "fast": []}
        rss = {"default": [], "fast": []}
        imports, loops = [], []
        for r in range(args.repeats):
            imports.append(run_timed([sys.executable, "-c", IMPORTS])[0])
            loops.append(python_loop())
            for name in (("default", "fast") if r % 2 == 0 else ("fast", "default")):
                w, m = run_cli([] if name == "default" else fast_cli, out)
                walls[name].append(w)
                rss[name].append(m)
    sampling = {"default": sampling_only({}, args.repeats),
                "fast": sampling_only({"scheduler": args.fast_scheduler, "steps": args.fast_steps}, args.repeats)}
    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    result = {
        "repeats": args.repeats, "fast": f"{args.fast_scheduler} {args.fast_steps} steps",
        "wall_s_default": med(walls["default"]), "wall_s_fast": med(walls["fast"]),
        "peak_rss_mib_default": med(rss["default"]), "peak_rss_mib_fast": med(rss["fast"]),
        "sampling_s_default": med(sampling["default"]), "sampling_s_fast": med(sampling["fast"]),
        "sampling_ratio_fast_over_default": round(statistics.median(sampling["fast"]) / statistics.median(sampling["default"]), 3),
        "wall_ratio_fast_over_default": round(statistics.median(walls["fast"]) / statistics.median(walls["default"]), 3),
        "imports_s": med(imports), "python_loop_s": med(loops),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
