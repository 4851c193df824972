"""Cutting InternVid clips out of local source videos, frame-accurately, in parallel processes.

A clip ``[start, end)`` holds the source frames shown in that span: frames
``floor(start * fps)`` to ``floor(end * fps) - 1`` (``frame_indices_for_times``).
The decoder seeks to the keyframe before the first frame and decodes only the
clip's frames; they are re-encoded (H.264, yuv420p) with PyAV, optionally
resized to a short side and resampled to a frame rate, and written under a
temporary name that is renamed when the clip is whole. Clips are named as
InternVid distributes them: ``{YoutubeID}_{HH:MM:SS.mmm}_{HH:MM:SS.mmm}.mp4``.
Missing sources and clips that fail to decode are listed in a report; the
rest are done.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from vidgen.data.readers import RowReport
from vidgen.data.rows import Row, file_name, is_youtube_id
from vidgen.errors import DataError, InputError, OutputError, VideoError
from vidgen.io.files import atomic_output, atomic_write_text, ensure_writable_dir, remove_temporaries
from vidgen.io.sampling import fps_indices
from vidgen.io.text import read_text
from vidgen.io.video import frame_indices_for_times, is_video_file, iter_frames, probe

logger = logging.getLogger(__name__)

DEFAULT_CRF = 18
DEFAULT_PRESET = "veryfast"  # clips are re-cut far more often than watched: favour encode speed
REPORT_NAME = "clips_report.json"
_MAX_PENDING_PER_WORKER = 4  # jobs queued per worker process: bounds memory for millions of rows


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side at ``short_side``, aspect kept, both even (for yuv420p).

    Raises:
        InputError: a short side below 2.
    """
    if short_side < 2:
        raise InputError(f"short side must be at least 2 pixels, got {short_side}")
    scale = short_side / min(width, height)
    w, h = (max(2, int(side * scale / 2 + 0.5) * 2) for side in (width, height))  # nearest even, halves up
    return w, h


def clip_frame_range(start: float, end: float, fps: float) -> tuple[int, int]:
    """Source frames ``[first, stop)`` of the span ``[start, end)`` seconds (at least one frame)."""
    first, stop = frame_indices_for_times([start, end], fps)
    return first, max(stop, first + 1)


class SourceIndex:
    """Where each YouTube video's local file is: a folder of ``{YoutubeID}.*`` files or a mapping file.

    A row whose ID was given as a path (``Row.extra["video_path"]``, as some
    mirrors write it) is looked up by that path's file name among the folder's
    files, then by its ID; the path itself is never opened, so a row cannot make
    the cutter read a file outside the sources.

    Args:
        paths: YouTube ID -> source file.
        names: file name -> source file, for rows that name their file (a folder's video files).
    """

    def __init__(self, paths: dict[str, Path], names: dict[str, Path] | None = None):
        self.paths = paths
        self.names = names or {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "SourceIndex":
        """Index the video files named ``{YoutubeID}.{ext}`` in ``folder`` (not recursive).

        Raises:
            DataError: the folder does not exist.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"source video folder not found: {str(folder)!r}")
        paths: dict[str, Path] = {}
        names: dict[str, Path] = {}
        for entry in sorted(folder.iterdir()):
            if not (entry.is_file() and is_video_file(entry)):
                continue
            names[entry.name] = entry
            stem = entry.name.split(".", 1)[0]
            if is_youtube_id(stem):
                paths.setdefault(stem, entry)
        return cls(paths, names)

    @classmethod
    def from_mapping(cls, path: str | os.PathLike) -> "SourceIndex":
        """Read a mapping file: a JSON object ``{id: path}``, or CSV/JSONL with ``youtube_id`` and ``path`` columns.

        Relative paths are taken from the mapping file's folder.

        Raises:
            DataError: a missing or malformed mapping file, or an entry whose ID is not a YouTube ID.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"source mapping file not found: {str(path)!r}")
        text = read_text(path)
        pairs: list[tuple[Any, Any]] = []
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise DataError(f"source mapping {str(path)!r} must be a JSON object {{youtube_id: path}}")
                pairs = list(data.items())
            elif path.suffix.lower() in (".jsonl", ".csv"):
                records = (json.loads(line) for line in text.splitlines() if line.strip()) if path.suffix.lower() == ".jsonl" \
                    else csv.DictReader(text.splitlines())
                for number, record in enumerate(records, start=1):
                    if not isinstance(record, dict) or "youtube_id" not in record or "path" not in record:
                        raise DataError(f"source mapping {str(path)!r} entry {number} lacks 'youtube_id' and 'path'")
                    pairs.append((record["youtube_id"], record["path"]))
            else:
                raise DataError(f"source mapping {str(path)!r}: use .json, .jsonl or .csv")
        except json.JSONDecodeError as exc:
            raise DataError(f"source mapping {str(path)!r} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        paths = {}
        for vid, target in pairs:
            if not is_youtube_id(vid) or not isinstance(target, str) or not target:
                raise DataError(f"source mapping {str(path)!r}: bad entry {vid!r} -> {target!r}")
            target_path = Path(target)
            paths[vid] = target_path if target_path.is_absolute() else path.parent / target_path
        return cls(paths)

    def lookup(self, row: Row) -> Path | None:
        """The source file of ``row``'s video, or ``None`` when the sources hold none."""
        given = row.extra.get("video_path")
        if isinstance(given, str):
            found = self.names.get(file_name(given))
            if found is not None and found.is_file():
                return found
        found = self.paths.get(row.youtube_id)
        return found if found is not None and found.is_file() else None


@dataclass(frozen=True)
class ClipResult:
    """What happened to one clip: ``status`` is ``"done"``, ``"exists"`` or ``"failed"``."""

    clip: str
    status: str
    source: str = ""
    frames: int = 0
    reason: str = ""


def _rate(fps: float) -> Fraction:
    # NTSC rates (30000/1001) come out exactly; integer rates stay integers.
    return Fraction(fps).limit_denominator(1001)


def encode_frames(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float, *, crf: int = DEFAULT_CRF,
                  preset: str = DEFAULT_PRESET) -> int:
    """Encode RGB ``uint8`` frames ``[H, W, 3]`` (even sizes) into an H.264/yuv420p MP4 at ``path``, streaming.

    Frames are taken one at a time, so a long clip never sits in memory.
    ``path`` is written directly: callers wrap it in :func:`~vidgen.io.atomic_output`.

    Returns:
        The number of frames written.

    Raises:
        VideoError: no frames, or frames of an odd or changing size.
    """
    import av

    container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = None
        count = 0
        for frame in frames:
            height, width = frame.shape[:2]
            if stream is None:
                if width % 2 or height % 2:
                    raise VideoError(f"H.264/yuv420p needs even frame sizes, got {width}x{height}")
                stream = container.add_stream("libx264", rate=_rate(fps))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset}
            elif (width, height) != (stream.width, stream.height):
                raise VideoError(f"frame {count} is {width}x{height}, the clip is {stream.width}x{stream.height}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise VideoError("no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return count


def clip_frames(source: str | os.PathLike, first: int, stop: int, *, size: tuple[int, int] | None = None,
                picks: list[int] | None = None, seek: bool = True) -> Iterator[np.ndarray]:
    """Yield the frames of ``[first, stop)`` of ``source`` (in ``picks`` order, relative to ``first``, when given).

    Args:
        source: the video file.
        first, stop: source frame range.
        size: ``(width, height)`` to resize to while decoding.
        picks: offsets into the range to emit, non-decreasing (repeats allowed,
            for a higher target frame rate); all frames when ``None``.
        seek: seek to the keyframe before ``first`` (``False`` decodes from the
            start of the file: only for benchmarks).

    Raises:
        VideoError: the file cannot be decoded, or it ends more than one frame
            before ``stop`` (one missing frame is within the +-1 frame tolerance).
    """
    wanted = list(range(stop - first)) if picks is None else picks
    position = 0
    last = first - 1
    frames = iter_frames(source, first if seek else 0, stop, size=size)
    for index, frame in frames:
        if index < first:
            continue
        last = index
        offset = index - first
        while position < len(wanted) and wanted[position] <= offset:
            yield frame
            position += 1
    if last < max(first, stop - 2):
        shown = f"ends at frame {last}" if last >= first else "has no frame"
        raise VideoError(f"source {str(source)!r} {shown} in the clip's range {first}..{stop - 1}")
    while position < len(wanted):  # the one frame the source lacked at the very end: hold the last
        position += 1
        yield frame


def cut_clip(source: str | os.PathLike, start: float, end: float, out: str | os.PathLike, *,
             fps: float | None = None, short_side: int | None = None, crf: int = DEFAULT_CRF,
             overwrite: bool = False, seek: bool = True) -> int:
    """Cut ``[start, end)`` seconds of ``source`` into the MP4 ``out``.

    Args:
        source: the source video.
        start, end: the span in seconds.
        out: the clip file to write (atomically).
        fps: resample to this frame rate (default: the source's).
        short_side: resize so the shorter side has this many pixels (default: keep the size).
        crf: x264 quality (lower is better; 18 is visually lossless).
        overwrite: replace an existing clip.
        seek: seek to the clip (``False`` decodes from the start; for benchmarks).

    Returns:
        The number of frames written.

    Raises:
        VideoError: the source is missing, unreadable, or shorter than the span.
        OutputError: ``out`` exists without ``overwrite``.
        InputError: a bad span, frame rate or size.
    """
    if not end > start >= 0:
        raise InputError(f"clip span must satisfy 0 <= start < end, got {start}..{end}")
    if fps is not None and fps <= 0:
        raise InputError(f"target fps must be positive, got {fps}")
    info = probe(source)
    first, stop = clip_frame_range(start, end, info.fps)
    if info.num_frames and first >= info.num_frames:
        raise VideoError(f"clip starts at frame {first} but {str(source)!r} has {info.num_frames} frames")
    if short_side is not None:
        size = scaled_size(info.width, info.height, short_side)
    elif info.width % 2 or info.height % 2:
        size = (info.width - info.width % 2, info.height - info.height % 2)
    else:
        size = None
    picks = fps_indices(stop - first, info.fps, fps) if fps is not None else None
    with atomic_output(out, overwrite=overwrite) as tmp:
        count = encode_frames(clip_frames(source, first, stop, size=size, picks=picks, seek=seek), tmp,
                              fps if fps is not None else info.fps, crf=crf)
    return count


@dataclass(frozen=True)
class _Job:
    source: str
    start: float
    end: float
    out: str
    fps: float | None
    short_side: int | None
    crf: int
    overwrite: bool


def _run_job(job: _Job) -> ClipResult:
    """One clip in a worker process; every failure becomes a result, never an exception."""
    name = Path(job.out).name
    try:
        frames = cut_clip(job.source, job.start, job.end, job.out, fps=job.fps, short_side=job.short_side,
                          crf=job.crf, overwrite=job.overwrite)
    except OutputError as exc:
        if Path(job.out).exists() and not job.overwrite:
            return ClipResult(name, "exists", job.source)
        return ClipResult(name, "failed", job.source, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a long batch records any per-clip failure and goes on
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ClipResult(name, "failed", job.source, reason=reason)
    return ClipResult(name, "done", job.source, frames=frames)


@dataclass
class ClipReport:
    """The outcome of :func:`cut_clips`.

    Attributes:
        rows: what the rows read found.
        done: clips written.
        existing: clips skipped because the file was already there.
        missing_sources: ``{youtube_id: number of clips}`` for videos with no source file.
        failed: ``{"clip", "source", "reason"}`` for clips that could not be cut.
    """

    rows: RowReport = field(default_factory=RowReport)
    done: int = 0
    existing: int = 0
    missing_sources: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)

    def add(self, result: ClipResult) -> None:
        """Fold one clip's result in."""
        if result.status == "done":
            self.done += 1
        elif result.status == "exists":
            self.existing += 1
        else:
            self.failed.append({"clip": result.clip, "source": result.source, "reason": result.reason})
            logger.warning("clip %s failed: %s", result.clip, result.reason)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "rows": self.rows.to_dict(),
            "done": self.done,
            "existing": self.existing,
            "missing_sources": {"videos": len(self.missing_sources), "clips": sum(self.missing_sources.values()),
                                "ids": self.missing_sources},
            "failed": self.failed,
        }

    def summary(self) -> str:
        """One line for the terminal."""
        missing = sum(self.missing_sources.values())
        return (f"{self.done} clips cut, {self.existing} already there, {len(self.failed)} failed, "
                f"{missing} without a source video ({len(self.missing_sources)} videos), {self.rows.bad} malformed rows")


def cut_clips(rows: Iterable[Row], sources: SourceIndex, out_dir: str | os.PathLike, *, fps: float | None = None,
              short_side: int | None = None, crf: int = DEFAULT_CRF, workers: int = 1, overwrite: bool = False,
              report: ClipReport | None = None, report_path: str | os.PathLike | None = None) -> ClipReport:
    """Cut every row's clip into ``out_dir``, in ``workers`` processes; failures go to the report.

    Args:
        rows: the rows (streamed; a :class:`RowReport` filled while reading can
            be passed in ``report.rows``).
        sources: where the source videos are.
        out_dir: the clip folder (created if missing).
        fps, short_side, crf: as :func:`cut_clip`.
        workers: parallel processes (1 cuts in this process).
        overwrite: replace existing clips (otherwise they are skipped, so an
            interrupted run resumes).
        report: a report to fill (a fresh one when ``None``).
        report_path: where to write the JSON report (default ``out_dir/clips_report.json``).

    Returns:
        The report, also written as JSON.

    Raises:
        InputError: a bad worker count, frame rate or size.
        OutputError: the folder cannot be written.
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if fps is not None and fps <= 0:
        raise InputError(f"target fps must be positive, got {fps}")
    if short_side is not None and short_side < 2:
        raise InputError(f"short side must be at least 2 pixels, got {short_side}")
    out_dir = ensure_writable_dir(out_dir)
    # A killed run leaves the clips it was cutting under temporary names: this run cuts them again.
    remove_temporaries(out_dir, lambda name: name.endswith(".mp4") or name == REPORT_NAME)
    report = report if report is not None else ClipReport()

    def jobs() -> Iterator[_Job]:
        for row in rows:
            out = out_dir / row.clip_name
            if out.exists() and not overwrite:
                report.existing += 1
                continue
            source = sources.lookup(row)
            if source is None:
                report.missing_sources[row.youtube_id] = report.missing_sources.get(row.youtube_id, 0) + 1
                continue
            yield _Job(str(source), row.start, row.end, str(out), fps, short_side, crf, overwrite)

    if workers == 1:
        for job in jobs():
            report.add(_run_job(job))
    else:
        # forkserver: workers start from a clean process, not a fork of one that may hold threads (torch, PyAV).
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
            pending: set[cf.Future] = set()
            for job in jobs():
                pending.add(pool.submit(_run_job, job))
                if len(pending) >= workers * _MAX_PENDING_PER_WORKER:
                    finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for future in finished:
                        report.add(future.result())
            for future in cf.as_completed(pending):
                report.add(future.result())
    atomic_write_text(report_path or out_dir / REPORT_NAME, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
