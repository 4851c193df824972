"""Planning a big prompts file: how long `vidgen sample` takes to find an output clash among 1M prompts.

The prompts file has ``--prompts`` lines; the output folder already holds, under the last video's names,
a video and a settings file vidgen did not write, so the command must plan every output, find the clash
and refuse in one line (exit 2) before any model loads. The whole process is timed (start-up included), median of repeats.

    python benchmarks/bench_plan.py --prompts 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from vidgen.pipelines.sample import slugify

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prompts = work / "prompts.txt"
        prompts.write_text("".join(f"a red circle number {i}\n" for i in range(args.prompts)), encoding="utf-8")
        out = work / "out"
        out.mkdir()
        last = args.prompts - 1
        stem = out / f"{last:03d}-{slugify(f'a red circle number {last}')}-s0"
        stem.with_suffix(".mp4").write_bytes(b"not vidgen's")  # a finished-looking pair whose settings are foreign
        stem.with_suffix(".yaml").write_text("not vidgen's\n")
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "vidgen", "sample", "--prompts-file", str(prompts), "--out", str(out)],
                                 capture_output=True, text=True, timeout=600)
            seconds.append(time.perf_counter() - start)
            assert run.returncode == 2 and "not a settings file vidgen wrote" in run.stderr, run.stderr[-300:]
        print(f"{args.prompts} prompts: clash refused in {statistics.median(seconds):.2f} s "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f}) over {args.repeats} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
