"""Filter and diversity-sample speed (rows/s) and peak memory over generated InternVid-shaped JSONL.

Each measurement runs in a fresh Python process so its peak resident memory
(``VmHWM``) is its own. The same commands run on the first 250k, 500k and
1M rows: if memory is bounded, the peak stays flat as the file grows.

    PYTHONPATH=$PWD python benchmarks/bench_data_rows.py --rows 1000000 --repeats 3
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

CHILD = r"""
import json, sys, time
from vidgen.data.filters import FilterSpec, filter_file
from vidgen.data.sampling import sample_file
src, dst, action = sys.argv[1], sys.argv[2], sys.argv[3]
def hwm_mib():
    # VmHWM is this process's own peak (ru_maxrss would include the parent's size at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

base = hwm_mib()
t = time.perf_counter()
if action == "filter":
    # two passes over the file: the UMT scores' distribution, then the writing
    report = filter_file(src, dst, FilterSpec(min_aesthetic=4.0, umt_top=0.3), overwrite=True)
elif action == "filter-aes":
    report = filter_file(src, dst, FilterSpec(min_aesthetic=4.0), overwrite=True)
else:
    report = sample_file(src, dst, int(action.split(":")[1]), overwrite=True)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": report.rows.valid, "kept": report.kept,
                  "peak_mib": hwm_mib(), "import_mib": base}))
"""


def generate(path: Path, rows: int, clips_per_video: int = 5, seed: int = 0) -> None:
    """InternVid-shaped rows: fp16-valued scores (as the dataset's), ~5 clips per video."""
    import numpy as np

    rng = np.random.default_rng(seed)
    aes = rng.normal(4.8, 0.6, rows).astype(np.float16).astype(float)
    umt = rng.normal(0.35, 0.04, rows).astype(np.float16).astype(float)
    words = ["a", "man", "woman", "dog", "is", "playing", "with", "the", "ball", "on", "beach", "red", "car", "street"]
    with open(path, "w") as f:
        for i in range(rows):
            vid = f"{i // clips_per_video:011d}"
            start = (i % clips_per_video) * 12.5
            caption = " ".join(words[j] for j in rng.integers(0, len(words), 8))
            f.write(json.dumps({"YoutubeID": vid, "Start_timestamp": f"00:{int(start // 60):02d}:{start % 60:06.3f}",
                                "End_timestamp": f"00:{int((start + 8) // 60):02d}:{(start + 8) % 60:06.3f}",
                                "Caption": caption, "Aesthetic_Score": aes[i], "UMT_Score": umt[i]}) + "\n")


def run(src: Path, dst: Path, action: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), action], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=100_000, help="diversity sample target")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full = tmp / "rows.jsonl"
        t = time.perf_counter()
        generate(full, args.rows)
        print(f"generated {args.rows} rows ({full.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
        sizes = sorted({args.rows // 4, args.rows // 2, args.rows})
        files = {}
        with open(full) as f:
            lines = f.readlines() if args.rows <= 2_000_000 else None
        for n in sizes:
            files[n] = tmp / f"rows_{n}.jsonl"
            files[n].write_text("".join(lines[:n]))
        del lines
        print(f"{'action':<28}{'rows':>10}{'rows/s (median)':>18}{'peak MiB':>10}{'kept':>10}")
        for action, label in (("filter-aes", "filter aes>=4"), ("filter", "filter aes>=4 + UMT top 30%"),
                              (f"sample:{args.sample}", f"diversity sample {args.sample}")):
            for n in sizes:
                results = [run(files[n], tmp / "out.jsonl", action) for _ in range(args.repeats)]
                speed = statistics.median(r["rows"] / r["seconds"] for r in results)
                peak = max(r["peak_mib"] for r in results)
                print(f"{label:<28}{n:>10}{speed:>18,.0f}{peak:>10.0f}{results[0]['kept']:>10}", flush=True)


if __name__ == "__main__":
    main()
