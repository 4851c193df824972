"""Cutting 20 clips from one long video: seeking to each clip vs decoding from the start for each clip.

Both ways decode with PyAV and re-encode the same frames with the same
encoder (``vidgen.data.clips.encode_frames``); only the way to the clip's first
frame differs. The source is a generated 640x360, 25 fps video with x264's
default keyframe interval (250 frames, 10 s), and a moving pattern so that
frames differ.

    PYTHONPATH=$PWD python benchmarks/bench_data_clips.py --minutes 2 --clips 20 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_source(path: Path, seconds: float, fps: int = 25, size: tuple[int, int] = (640, 360)) -> Path:
    import imageio_ffmpeg

    w, h = size
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, quality=None, ffmpeg_log_level="error",
                                         output_params=["-crf", "23", "-preset", "veryfast"])
    writer.send(None)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(int(seconds * fps)):
        frame = np.empty((h, w, 3), np.uint8)
        frame[..., 0] = (xx + 3 * i) % 256
        frame[..., 1] = (yy + 2 * i) % 256
        frame[..., 2] = ((xx // 40 + yy // 40 + i // 25) % 2) * 200
        writer.send(frame)
    writer.close()
    return path


def cut_all(source: Path, out: Path, spans: list[tuple[float, float]], seek: bool) -> float:
    from vidgen.data.clips import cut_clip

    t = time.perf_counter()
    for i, (start, end) in enumerate(spans):
        cut_clip(source, start, end, out / f"{'seek' if seek else 'scan'}_{i}.mp4", seek=seek, overwrite=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = args.minutes * 60
        t = time.perf_counter()
        source = make_source(tmp / "long.mp4", seconds)
        print(f"source: {seconds:.0f} s, 640x360, 25 fps ({source.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - t:.0f} s)")
        step = (seconds - args.clip_seconds - 1) / args.clips
        spans = [(round(0.5 + i * step, 3), round(0.5 + i * step + args.clip_seconds, 3)) for i in range(args.clips)]
        seek_times, scan_times = [], []
        for _ in range(args.repeats):  # interleaved, so machine load affects both alike
            seek_times.append(cut_all(source, tmp, spans, seek=True))
            scan_times.append(cut_all(source, tmp, spans, seek=False))
        seek, scan = statistics.median(seek_times), statistics.median(scan_times)
        print(f"{args.clips} clips of {args.clip_seconds:g} s, median of {args.repeats}:")
        print(f"  seek to each clip:         {seek:7.2f} s  ({args.clips / seek:.2f} clips/s)")
        print(f"  decode from the start:     {scan:7.2f} s  ({args.clips / scan:.2f} clips/s)")
        print(f"  speed-up: {scan / seek:.1f}x")


if __name__ == "__main__":
    main()
