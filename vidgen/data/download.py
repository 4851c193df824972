"""Handing InternVid rows to the downloaders: yt-dlp per video, or video2dataset's input file.

yt-dlp is an external program found on ``PATH``, never a dependency of the
package. It is run with an argument list (no shell) and each YouTube ID is
checked against ``[A-Za-z0-9_-]{11}`` before it gets near a subprocess; the
URL follows ``--`` so an ID starting with ``-`` cannot be read as an option.
Each video downloads into its own temporary folder and is moved into place
only when yt-dlp succeeds, so failures leave no ``.part`` files behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from vidgen.extras import require
from vidgen.data.readers import RowReport
from vidgen.data.rows import Row, check_youtube_id, is_youtube_id
from vidgen.errors import InputError, OutputError
from vidgen.io.files import atomic_output, atomic_write_text, ensure_writable_dir
from vidgen.io.video import is_video_file

logger = logging.getLogger(__name__)

YOUTUBE_URL = "https://www.youtube.com/watch?v={}"
# Video only (text-to-video training has no use for audio), at most 720p, MP4 where offered.
DEFAULT_FORMAT = "bv*[height<=720][ext=mp4]/bv*[height<=720]/b[height<=720]/b"
DEFAULT_TIMEOUT_S = 600.0
REPORT_NAME = "download_report.json"
_STDERR_TAIL = 400


def find_yt_dlp(executable: str | os.PathLike | None = None) -> str:
    """The yt-dlp program to run: ``executable`` if given, else ``yt-dlp`` on ``PATH``.

    Raises:
        InputError: no such program.
    """
    name = str(executable) if executable else "yt-dlp"
    found = shutil.which(name)
    if found is None:
        raise InputError(f"yt-dlp not found ({name!r} is not an executable on PATH); install it with pip install yt-dlp")
    return found


def yt_dlp_command(executable: str, youtube_id: str, out_dir: str | os.PathLike, *, fmt: str = DEFAULT_FORMAT,
                   extra_args: Sequence[str] = ()) -> list[str]:
    """The argument list that downloads one video to ``out_dir/{id}.{ext}``.

    Raises:
        RowError: ``youtube_id`` is not 11 characters of ``[A-Za-z0-9_-]``.
    """
    check_youtube_id(youtube_id)
    # yt-dlp output templates treat "%" as a field marker: escape it in the folder name.
    template = os.path.join(str(out_dir).replace("%", "%%"), f"{youtube_id}.%(ext)s")
    return [
        executable, "--no-playlist", "--no-progress", "--no-overwrites", "--quiet", "--no-warnings",
        "-f", fmt, "-o", template, *extra_args, "--", YOUTUBE_URL.format(youtube_id),
    ]


def existing_download(out_dir: Path, youtube_id: str) -> Path | None:
    """A finished download of ``youtube_id`` in ``out_dir`` (``{id}.{video ext}``), if any."""
    for candidate in out_dir.glob(f"{youtube_id}.*"):
        if candidate.is_file() and is_video_file(candidate) and candidate.name.split(".", 1)[0] == youtube_id:
            return candidate
    return None


@dataclass(frozen=True)
class DownloadResult:
    """One video: ``status`` is ``"done"``, ``"exists"`` or ``"failed"``."""

    youtube_id: str
    status: str
    path: str = ""
    reason: str = ""


def download_video(executable: str, youtube_id: str, out_dir: str | os.PathLike, *, fmt: str = DEFAULT_FORMAT,
                   timeout: float = DEFAULT_TIMEOUT_S, extra_args: Sequence[str] = ()) -> DownloadResult:
    """Run yt-dlp for one video in a private temporary folder; move the result into ``out_dir`` on success.

    Every failure (bad ID, non-zero exit, timeout, no output) is returned as a
    ``"failed"`` result and leaves nothing behind.
    """
    out_dir = Path(out_dir)
    if not is_youtube_id(youtube_id):
        return DownloadResult(str(youtube_id), "failed", reason="not an 11-character [A-Za-z0-9_-] YouTube ID")
    found = existing_download(out_dir, youtube_id)
    if found is not None:
        return DownloadResult(youtube_id, "exists", str(found))
    with tempfile.TemporaryDirectory(prefix=f".{youtube_id}.", dir=out_dir) as work:
        argv = yt_dlp_command(executable, youtube_id, work, fmt=fmt, extra_args=extra_args)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return DownloadResult(youtube_id, "failed", reason=f"yt-dlp timed out after {timeout:g} s")
        except OSError as exc:
            return DownloadResult(youtube_id, "failed", reason=f"cannot run yt-dlp: {exc.strerror or exc}")
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
            return DownloadResult(youtube_id, "failed", reason=f"yt-dlp exited with status {proc.returncode}: {tail}")
        outputs = [p for p in Path(work).iterdir() if p.is_file() and is_video_file(p)]
        if len(outputs) != 1:
            return DownloadResult(youtube_id, "failed", reason=f"yt-dlp left {len(outputs)} video files, expected 1")
        target = out_dir / f"{youtube_id}{outputs[0].suffix.lower()}"
        try:
            with atomic_output(target) as tmp:
                os.replace(outputs[0], tmp)
        except OutputError as exc:
            return DownloadResult(youtube_id, "failed", reason=str(exc))
    return DownloadResult(youtube_id, "done", str(target))


@dataclass
class DownloadReport:
    """The outcome of :func:`download_videos`."""

    rows: RowReport = field(default_factory=RowReport)
    done: list[str] = field(default_factory=list)
    existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def add(self, result: DownloadResult) -> None:
        """Fold one video's result in."""
        if result.status == "done":
            self.done.append(result.youtube_id)
        elif result.status == "exists":
            self.existing += 1
        else:
            self.failed.append({"youtube_id": result.youtube_id, "reason": result.reason})
            logger.warning("download of %s failed: %s", result.youtube_id, result.reason)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"rows": self.rows.to_dict(), "done": len(self.done), "existing": self.existing, "failed": self.failed}

    def summary(self) -> str:
        """One line for the terminal."""
        return (f"{len(self.done)} videos downloaded, {self.existing} already there, {len(self.failed)} failed "
                f"({self.rows.bad} malformed rows skipped)")


def unique_ids(rows: Iterable[Row]) -> list[str]:
    """The rows' YouTube IDs, each once, in first-seen order."""
    return list(dict.fromkeys(row.youtube_id for row in rows))


def download_videos(rows: Iterable[Row], out_dir: str | os.PathLike, *, executable: str | os.PathLike | None = None,
                    fmt: str = DEFAULT_FORMAT, workers: int = 4, timeout: float = DEFAULT_TIMEOUT_S,
                    extra_args: Sequence[str] = (), report: DownloadReport | None = None,
                    report_path: str | os.PathLike | None = None) -> DownloadReport:
    """Download each distinct video of ``rows`` with yt-dlp into ``out_dir/{YoutubeID}.{ext}``.

    Videos already there are skipped (an interrupted run resumes); the
    downloads run ``workers`` at a time (threads waiting on subprocesses).
    ``vidgen data clips`` then cuts the rows' clips from this folder.

    Raises:
        InputError: yt-dlp is not found, or a bad worker count or timeout.
        OutputError: ``out_dir`` cannot be written.
    """
    exe = find_yt_dlp(executable)
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if timeout <= 0:
        raise InputError(f"timeout must be positive, got {timeout}")
    out = ensure_writable_dir(out_dir)
    report = report if report is not None else DownloadReport()
    ids = unique_ids(rows)
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(lambda vid: download_video(exe, vid, out, fmt=fmt, timeout=timeout, extra_args=extra_args), ids):
            report.add(result)
    atomic_write_text(report_path or out / REPORT_NAME, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def write_video2dataset_input(rows: Iterable[Row], path: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Write the Parquet file that video2dataset takes: one clip per row.

    Columns: ``url`` (the YouTube URL), ``caption``, ``clips`` (``[[start, end]]``
    in seconds, for video2dataset's ``clip_col``), then InternVid's own
    columns, to keep with ``save_additional_columns``. Run it with::

        video2dataset --url_list=FILE --input_format=parquet --url_col=url --caption_col=caption \\
            --clip_col=clips --output_format=webdataset --save_additional_columns='[YoutubeID,Start_timestamp,End_timestamp]'

    Returns:
        The number of rows written.

    Raises:
        InputError: ``path`` is not a ``.parquet`` file.
        OutputError: it exists without ``overwrite``.
        MissingExtraError: pyarrow is not installed.
    """
    if Path(path).suffix.lower() != ".parquet":
        raise InputError(f"video2dataset input is written as .parquet, got {str(path)!r}")
    pa = require("pyarrow", "writing video2dataset input")
    pq = require("pyarrow.parquet", "writing video2dataset input")
    columns: dict[str, list[Any]] = {k: [] for k in ("url", "caption", "clips", "YoutubeID", "Start_timestamp",
                                                      "End_timestamp", "Aesthetic_Score", "UMT_Score")}
    schema = pa.schema([("url", pa.string()), ("caption", pa.string()), ("clips", pa.list_(pa.list_(pa.float64()))),
                        ("YoutubeID", pa.string()), ("Start_timestamp", pa.string()), ("End_timestamp", pa.string()),
                        ("Aesthetic_Score", pa.float64()), ("UMT_Score", pa.float64())])
    count = 0
    with atomic_output(path, overwrite=overwrite) as tmp, pq.ParquetWriter(str(tmp), schema) as writer:
        def flush() -> None:
            writer.write_table(pa.table(columns, schema=schema))
            for values in columns.values():
                values.clear()

        for row in rows:
            columns["url"].append(YOUTUBE_URL.format(row.youtube_id))
            columns["caption"].append(row.caption)
            columns["clips"].append([[row.start, row.end]])
            columns["YoutubeID"].append(row.youtube_id)
            columns["Start_timestamp"].append(row.start_timestamp)
            columns["End_timestamp"].append(row.end_timestamp)
            columns["Aesthetic_Score"].append(row.aesthetic_score)
            columns["UMT_Score"].append(row.umt_score)
            count += 1
            if len(columns["url"]) >= 8192:
                flush()
        flush()
    return count
