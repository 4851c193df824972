"""Writing the toy world in InternVid's shape: source videos (or clip files) plus ``rows.jsonl``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from vidgen.toyworld.captions import Caption, make_caption
from vidgen.toyworld.render import frame_size, render_clip
from vidgen.toyworld.world import (
    LAYOUTS,
    SIZE_RANGE,
    SPLITS,
    STREAM_IDS,
    STREAM_VIDEO,
    Quality,
    Scene,
    _check_choice,
    _check_fraction,
    is_held_out,
    sample_scene,
    sample_story,
)
from vidgen.errors import InputError, OutputError
from vidgen.io.files import atomic_write_text, check_output_path, ensure_writable_dir
from vidgen.io.writer import write_video

ROWS_FILE = "rows.jsonl"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@dataclass
class ToyWorldConfig:
    """Settings of a generated toy-world dataset (:func:`generate`); usable with :func:`vidgen.config.load_config`.

    Attributes:
        num_videos: source videos to write.
        min_clips, max_clips: clips (segments) per source video, drawn uniformly.
        min_frames, max_frames: frames per clip, drawn uniformly.
        width, height: frame size in pixels.
        fps: frame rate; timestamps are rounded up to the millisecond so that
            ``floor(t * fps)`` and ``round(t * fps)`` both give the exact frame.
        continuous_fraction: share of source videos that follow one object
            whose motion changes clip to clip (the rest are scene cuts).
        degraded_fraction: share of scene-cut clips that are occluded or
            faded, with low aesthetic and UMT scores.
        split: ``train`` (no held-out pair), ``held_out`` or ``all``.
        layout: ``videos`` (``{YoutubeID}.mp4`` source videos) or ``clips``
            (``{YoutubeID}_{Start}_{End}.mp4``, one file per row).
        seed: everything (IDs, scenes, captions, scores) follows from it.
    """

    num_videos: int = 100
    min_clips: int = 4
    max_clips: int = 8
    min_frames: int = 16
    max_frames: int = 24
    width: int = 64
    height: int = 64
    fps: int = 8
    continuous_fraction: float = 0.2
    degraded_fraction: float = 0.1
    split: str = "train"
    layout: str = "videos"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_videos < 1:
            raise InputError(f"num_videos must be at least 1, got {self.num_videos}")
        if not 1 <= self.min_clips <= self.max_clips:
            raise InputError(f"clips per video must satisfy 1 <= min <= max, got {self.min_clips}..{self.max_clips}")
        if not 2 <= self.min_frames <= self.max_frames:
            raise InputError(f"frames per clip must satisfy 2 <= min <= max, got {self.min_frames}..{self.max_frames}")
        frame_size((self.width, self.height))
        if not 1 <= self.fps <= 240:
            raise InputError(f"fps must be an integer from 1 to 240, got {self.fps}")
        _check_fraction("continuous_fraction", self.continuous_fraction)
        _check_fraction("degraded_fraction", self.degraded_fraction)
        _check_choice("split", self.split, SPLITS)
        _check_choice("layout", self.layout, LAYOUTS)


@dataclass(frozen=True)
class Segment:
    """One clip of a source video: a scene over ``num_frames`` frames, its caption and scores."""

    scene: Scene
    num_frames: int
    caption: Caption
    aesthetic: float
    umt: float


@dataclass(frozen=True)
class SourceVideo:
    """A planned source video: an ID, its kind (``cut`` or ``continuous``) and its segments."""

    youtube_id: str
    kind: str
    segments: tuple[Segment, ...]

    @property
    def num_frames(self) -> int:
        """Total frames of the video."""
        return sum(s.num_frames for s in self.segments)

    def render(self, size: int | Sequence[int]) -> np.ndarray:
        """All frames of the video, segments back to back, ``uint8 [T, H, W, 3]``."""
        return np.concatenate([render_clip(s.scene, s.num_frames, size) for s in self.segments])


def _scores(scene: Scene, rng: np.random.Generator) -> tuple[float, float]:
    """Aesthetic and UMT-like scores, stored at float16 precision as InternVid's are.

    Clean clips: aesthetic ~4.3-5.9 (bigger objects look better), UMT ~0.38 +- 0.035
    (InternVid: most clips score 4-6, and over 80% have UMT 0.3-0.4). Degraded clips sit near 3.4 and 0.26,
    below the usual cut-offs (aesthetic >= 4, top 30% UMT).
    """
    if scene.quality is Quality.CLEAN:
        growth = (scene.size - SIZE_RANGE[0]) / (SIZE_RANGE[1] - SIZE_RANGE[0])
        aesthetic = 4.6 + 0.8 * growth + rng.normal(0.0, 0.3)
        umt = rng.normal(0.38, 0.035)
    else:
        aesthetic = rng.normal(3.4, 0.3)
        umt = rng.normal(0.26, 0.03)
    return float(np.float16(np.clip(aesthetic, 2.0, 7.0))), float(np.float16(np.clip(umt, 0.1, 0.6)))


def _youtube_id(rng: np.random.Generator) -> str:
    return "".join(_ID_ALPHABET[i] for i in rng.integers(len(_ID_ALPHABET), size=11))


def plan_videos(config: ToyWorldConfig) -> list[SourceVideo]:
    """Decide every source video of a dataset (IDs, scenes, lengths, captions, scores) without rendering.

    Returns:
        ``config.num_videos`` videos; a deterministic function of the config.
    """
    id_rng = np.random.default_rng([config.seed, STREAM_IDS])
    seen: set[str] = set()
    videos = []
    for v in range(config.num_videos):
        youtube_id = _youtube_id(id_rng)
        while youtube_id in seen:
            youtube_id = _youtube_id(id_rng)
        seen.add(youtube_id)
        rng = np.random.default_rng([config.seed, STREAM_VIDEO, v])
        num_clips = int(rng.integers(config.min_clips, config.max_clips + 1))
        continuous = rng.random() < config.continuous_fraction
        if continuous:
            scenes = sample_story(rng, num_clips, split=config.split)
        else:
            scenes = [sample_scene(rng, split=config.split, degraded_fraction=config.degraded_fraction) for _ in range(num_clips)]
        segments = []
        for scene in scenes:
            frames = int(rng.integers(config.min_frames, config.max_frames + 1))
            aesthetic, umt = _scores(scene, rng)
            segments.append(Segment(scene, frames, make_caption(scene, rng), aesthetic, umt))
        videos.append(SourceVideo(youtube_id, "continuous" if continuous else "cut", tuple(segments)))
    return videos


def format_timestamp(milliseconds: int) -> str:
    """``HH:MM:SS.mmm`` as InternVid writes it."""
    seconds, ms = divmod(int(milliseconds), 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{sec:02d}.{ms:03d}"


def frame_timestamp(frame: int, fps: int) -> str:
    """Timestamp of the start of ``frame``, rounded up to the millisecond.

    Rounding up keeps ``t * fps`` in ``[frame, frame + fps / 1000)``, so a cutter
    using floor or round lands on ``frame`` exactly for any fps below 500.
    """
    ms = math.ceil(Fraction(frame * 1000, fps))
    return format_timestamp(ms)


def video_rows(video: SourceVideo, fps: int) -> list[dict]:
    """The InternVid rows of one source video (plus ``toy_*`` ground-truth columns), in time order."""
    rows = []
    start = 0
    for index, seg in enumerate(video.segments):
        scene = seg.scene
        rows.append({
            "YoutubeID": video.youtube_id,
            "Start_timestamp": frame_timestamp(start, fps),
            "End_timestamp": frame_timestamp(start + seg.num_frames, fps),
            "Caption": seg.caption.text,
            "Aesthetic_Score": seg.aesthetic,
            "UMT_Score": seg.umt,
            **{f"toy_{name}": value for name, value in scene.attrs.as_dict().items()},
            "toy_size": scene.size_class.value,
            "toy_quality": scene.quality.value,
            "toy_kind": video.kind,
            "toy_segment": index,
            "toy_start_frame": start,
            "toy_num_frames": seg.num_frames,
            "toy_held_out": is_held_out(scene.attrs),
        })
        start += seg.num_frames
    return rows


def clip_filename(row: Mapping[str, object]) -> str:
    """``{YoutubeID}_{Start_timestamp}_{End_timestamp}.mp4``, the usual name of a cut clip."""
    return f"{row['YoutubeID']}_{row['Start_timestamp']}_{row['End_timestamp']}.mp4"


def _files(video: SourceVideo, clip_rows: list[dict], layout: str) -> list[tuple[str, tuple[int, int]]]:
    """``(file name, (first frame, stop frame))`` of each file a source video is written as."""
    if layout == "videos":
        return [(f"{video.youtube_id}.mp4", (0, video.num_frames))]
    return [(clip_filename(row), (row["toy_start_frame"], row["toy_start_frame"] + row["toy_num_frames"])) for row in clip_rows]


@dataclass(frozen=True)
class GenerateSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    rows_path: Path
    num_videos: int
    num_clips: int
    num_files: int
    num_degraded: int
    num_frames: int
    seconds: float


def generate(
    out_dir: str | os.PathLike,
    config: ToyWorldConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    **options: object,
) -> GenerateSummary:
    """Write a toy-world dataset in InternVid's shape: MP4 files and ``rows.jsonl``.

    ``rows.jsonl`` holds one row per clip with InternVid's columns
    (``YoutubeID``, ``Start_timestamp``, ``End_timestamp``, ``Caption``,
    ``Aesthetic_Score``, ``UMT_Score``) and the ground truth in ``toy_color``,
    ``toy_shape``, ``toy_motion``, ``toy_background``, ``toy_size``,
    ``toy_quality``, ``toy_kind``, ``toy_segment``, ``toy_start_frame``,
    ``toy_num_frames``, ``toy_held_out``. With ``layout="videos"`` each source
    video is ``{YoutubeID}.mp4`` and clip boundaries fall exactly on frame
    boundaries; with ``layout="clips"`` each row has its own
    ``{YoutubeID}_{Start}_{End}.mp4``.

    Args:
        out_dir: output folder (created if missing).
        config: dataset settings; defaults to :class:`ToyWorldConfig`.
        overwrite: replace existing files.
        progress: show a progress bar.
        workers: videos rendered and encoded at once (threads; each encode is an
            ffmpeg process); default: the CPU count, at most 4. The output does not
            depend on it.
        **options: :class:`ToyWorldConfig` fields overriding ``config``
            (``generate(out, num_videos=10, seed=3)``).

    Returns:
        A :class:`GenerateSummary`.

    Raises:
        InputError: an unknown option or a bad value.
        OutputError: ``rows.jsonl`` or a video exists without ``overwrite``, or
            the folder cannot be written.
    """
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(ToyWorldConfig)})
    if unknown:
        raise InputError(f"unknown toy-world option {unknown[0]!r}")
    cfg = dataclasses.replace(config or ToyWorldConfig(), **options)
    started = time.perf_counter()
    out = ensure_writable_dir(out_dir)
    rows_path = check_output_path(out / ROWS_FILE, overwrite=overwrite)
    planned = [(video, video_rows(video, cfg.fps)) for video in plan_videos(cfg)]
    names = [name for video, clip_rows in planned for name, _ in _files(video, clip_rows, cfg.layout)]
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        # Refuse before writing anything rather than halfway through.
        raise OutputError(
            f"{len(existing)} video(s) already exist in {str(out)!r}, e.g. {existing[0]!r} (pass --overwrite to replace them)"
        )

    def write(video: SourceVideo, clip_rows: list[dict]) -> None:
        frames = video.render((cfg.width, cfg.height))
        for name, (first, stop) in _files(video, clip_rows, cfg.layout):
            write_video(out / name, frames[first:stop], fps=cfg.fps, overwrite=overwrite)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(planned), desc="toy world", unit="video")
    # Each encode is an ffmpeg process, so threads overlap one video's encoding with another's rendering.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(write, video, clip_rows) for video, clip_rows in planned]
        try:
            for future in as_completed(futures):
                future.result()
                if bar is not None:
                    bar.update()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        finally:
            if bar is not None:
                bar.close()
    rows = [row for _, clip_rows in planned for row in clip_rows]
    # The rows go last, so a folder with rows.jsonl always has all its videos.
    atomic_write_text(rows_path, "".join(json.dumps(r) + "\n" for r in rows), overwrite=overwrite)
    return GenerateSummary(
        out_dir=out,
        rows_path=rows_path,
        num_videos=len(planned),
        num_clips=len(rows),
        num_files=len(names),
        num_degraded=sum(r["toy_quality"] != Quality.CLEAN.value for r in rows),
        num_frames=sum(video.num_frames for video, _ in planned),
        seconds=time.perf_counter() - started,
    )
