"""The quick-start command (`vidgen sample`) on two model folders side by side.

Runs alternate between the folders (A, B, A, B, ...) so that machine noise hits both
alike, and reports the median wall time and peak RSS of each, and B / A. Use it for a
change to the shipped folder, e.g. the trimmed text vocabulary against the full one:

    git archive dcc85b0 checkpoints | tar -x -C /tmp/full
    python benchmarks/bench_model_folders.py /tmp/full/checkpoints checkpoints --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_default_model import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="the reference model folder")
    p.add_argument("b", type=Path, help="the model folder compared with it")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    runs: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        run_cli(["--model", str(args.a)], Path(tmp) / "warm.mp4")  # page cache and imports warm for both
        for _ in range(args.repeats):
            for key in ("a", "b"):
                runs[key].append(run_cli(["--model", str(getattr(args, key))], Path(tmp) / f"{key}.mp4"))
    result = {}
    for key in ("a", "b"):
        size = sum(f.stat().st_size for f in getattr(args, key).rglob("*") if f.is_file())
        result[key] = {"folder": str(getattr(args, key)), "MB": round(size / 1e6, 1),
                       "wall_s": round(statistics.median(w for w, _ in runs[key]), 3),
                       "peak_rss_mib": round(statistics.median(m for _, m in runs[key]), 1)}
    result["b_over_a"] = {k: round(result["b"][k] / result["a"][k], 3) for k in ("wall_s", "peak_rss_mib", "MB")}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
