"""WebDataset shards of clips: writing ``{key}.mp4`` + ``.txt`` caption + ``.json`` row, and streaming them back.

Shards are tar files written with webdataset's ``ShardWriter`` (a new shard
once the current one reaches the target size or count), each under a
temporary name renamed when complete. The reader opens local paths and any
fsspec URL (``s3://``, ``gs://``, ``https://``, ``hf://``...), splits shards by
node and by DataLoader worker, and also reads video2dataset's output layout
(``00000.tar`` holding ``{key}.mp4``, ``.txt`` and ``.json``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from vidgen.extras import require
from vidgen.data.readers import RowReport
from vidgen.data.rows import Row
from vidgen.errors import DataError, InputError, OutputError, VidgenError
from vidgen.io.files import (atomic_outputs, atomic_write_text, ensure_writable_dir, output_error, read_json_object,
                             remove_temporaries, temporary_beside, write_failure)
from vidgen.io.video import probe, read_frames

logger = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 1_000_000_000  # ~1 GB shards: large enough to stream well, small enough to retry
DEFAULT_MAX_COUNT = 100_000
INDEX_NAME = "shards.json"
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_size(text: str | int | float) -> int:
    """Bytes from ``"500MB"``, ``"1.5G"``, ``"2e9"`` or a number.

    Raises:
        InputError: anything else, or a size below one byte.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _SIZE_RE.fullmatch(str(text).strip())
        if match:
            value = float(match.group(1)) * _UNITS[match.group(2).lower()]
        else:
            try:
                value = float(str(text))
            except ValueError:
                raise InputError(f"cannot read size {text!r}; use e.g. 500MB or 1GB") from None
    if not value >= 1:
        raise InputError(f"size must be at least 1 byte, got {text!r}")
    return int(value)


def verify_clip(path: str | os.PathLike) -> None:
    """Check that a clip opens and its last frame decodes (catches empty, non-video and truncated files).

    Raises:
        VideoError: the clip is unusable.
    """
    info = probe(path)
    read_frames(path, [max(info.num_frames - 1, 0)])


@dataclass
class ShardReport:
    """The outcome of :func:`write_shards`."""

    rows: RowReport = field(default_factory=RowReport)
    shards: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    missing: list[str] = field(default_factory=list)
    bad: list[dict[str, str]] = field(default_factory=list)
    existing: int = 0  # shards an earlier, stopped run of the same command had finished (kept as they were)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (written as ``shards.json`` beside the shards)."""
        return {"rows": self.rows.to_dict(), "samples": self.samples, "shards": self.shards,
                "missing_clips": self.missing, "bad_clips": self.bad, "existing_shards": self.existing}

    def summary(self) -> str:
        """One line for the terminal."""
        kept = f" ({self.existing} already written, kept)" if self.existing else ""
        return (f"{self.samples} clips in {len(self.shards)} shards{kept}; {len(self.missing)} clips missing, "
                f"{len(self.bad)} unreadable, {self.rows.bad} malformed rows (skipped)")


def _finished_shards(out: Path, prefix: str, settings: dict[str, Any], on_disk: list[str]) -> dict[str, Any]:
    """What an earlier run of the same command left finished in ``out``: its index, cut after the last shard that
    is on disk as the index describes it (``{}`` when there is nothing to pick up).

    Raises:
        OutputError: shards of ``prefix`` that another command wrote (other settings, or an index too old to say).
    """
    path = out / INDEX_NAME
    index = read_json_object(path)
    if not isinstance(index, dict) or index.get("settings", {}).get("prefix") != prefix:
        if on_disk and isinstance(index, dict):
            raise OutputError(f"{len(on_disk)} shards named {prefix}-*.tar already in {str(out)!r}, not from this command "
                              "(pass --overwrite to replace them)")
        return {}  # no index: shards of a run stopped before its first one was finished, written again
    if index["settings"] != settings:
        changed = ", ".join(f"{k} {index['settings'].get(k)!r} -> {v!r}" for k, v in settings.items()
                            if index["settings"].get(k) != v)
        raise OutputError(f"{len(on_disk)} shards named {prefix}-*.tar in {str(out)!r} were written with other settings "
                          f"({changed}); pass --overwrite to replace them")
    finished = []
    for entry in index["shards"]:
        shard = out / entry["name"]
        if not shard.is_file() or shard.stat().st_size != entry["bytes"] or "rows_read" not in entry:
            break
        finished.append(entry)
    return {**index, "shards": finished}


def write_shards(rows: Iterable[Row], clips_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                 prefix: str = "shard", max_size: int = DEFAULT_MAX_SIZE, max_count: int = DEFAULT_MAX_COUNT,
                 verify: bool = True, overwrite: bool = False, report: ShardReport | None = None) -> ShardReport:
    """Pack the rows' clips (``clips_dir/{clip_name}``) into tar shards ``out_dir/{prefix}-NNNNNN.tar``.

    Each sample is ``{key}.mp4`` (the clip's bytes), ``{key}.txt`` (caption)
    and ``{key}.json`` (the row in InternVid's columns), with ``key`` =
    :attr:`Row.key`. Missing clips and (with ``verify``) clips that do not
    decode are skipped and listed in the report.

    The index ``shards.json`` is rewritten as each shard is finished, the shard and
    its entry appearing together, so a stopped run picks up where it stopped when
    the same command runs again: finished shards are kept as they are, the rows
    they hold are not read again, and the shards after them come out as an
    uninterrupted run writes them.

    Raises:
        InputError: a bad prefix, size or count.
        DataError: ``clips_dir`` is not a folder.
        OutputError: shards with this prefix from another command exist without ``overwrite``; a shard
            cannot be written (a full or read-only disk: the shard being written is not left behind).
        MissingExtraError: webdataset is not installed.
    """
    wds = require("webdataset", "writing WebDataset shards")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
        raise InputError(f"shard prefix {prefix!r} must be letters, digits, '_', '-' or '.'")
    if max_count < 1:
        raise InputError(f"max_count must be at least 1, got {max_count}")
    max_size = parse_size(max_size)
    clips_dir = Path(clips_dir)
    if not clips_dir.is_dir():
        raise DataError(f"clip folder not found: {str(clips_dir)!r}")
    out = ensure_writable_dir(out_dir)
    old = sorted(glob.glob(os.path.join(glob.escape(str(out)), f"{prefix}-[0-9][0-9][0-9][0-9][0-9][0-9].tar")))
    settings = {"prefix": prefix, "max_size": max_size, "max_count": max_count, "verify": verify}
    previous = {} if overwrite else _finished_shards(out, prefix, settings, old)
    report = report if report is not None else ShardReport()
    report.shards = list(previous.get("shards", []))
    report.existing = len(report.shards)
    report.samples = sum(entry["samples"] for entry in report.shards)
    skip = report.shards[-1]["rows_read"] if report.shards else 0
    if skip:
        report.missing = list(previous.get("missing_clips", []))
        report.bad = list(previous.get("bad_clips", []))
    remove_temporaries(out, lambda name: name == INDEX_NAME or re.fullmatch(rf"{re.escape(prefix)}-\d{{6}}\.tar", name))
    open_files: dict[str, Any] = {}
    shard_end = 0  # when a shard closes, the position of the first row that is not in it

    def opener(fname: str):
        handle = open(temporary_beside(Path(fname)), "wb")
        open_files[fname] = handle
        return handle

    def write_index(complete: bool) -> dict[str, Any]:
        return {**report.to_dict(), "settings": settings, "complete": complete}

    def finished(fname: str) -> None:
        handle = open_files.pop(fname)
        handle.close()
        path = Path(fname)
        entry = {"name": path.name, "samples": writer.count, "bytes": os.path.getsize(handle.name), "rows_read": shard_end}
        report.shards.append(entry)
        # The shard and its index entry appear together, the index last: a shard not in the index is unfinished.
        try:
            with atomic_outputs([path, out / INDEX_NAME], overwrite=True) as (tar, index):
                os.replace(handle.name, tar)
                index.write_text(json.dumps(write_index(complete=False), indent=2) + "\n", encoding="utf-8")
        except BaseException:
            report.shards.pop()
            raise

    pattern = os.path.join(str(out).replace("%", "%%"), f"{prefix}-%06d.tar")
    writer = None
    position = -1
    try:
        for position, row in enumerate(rows):
            if position < skip:
                continue  # packed into a shard an earlier run finished
            clip = clips_dir / row.clip_name
            if not clip.is_file():
                report.missing.append(row.clip_name)
                continue
            if verify:
                try:
                    verify_clip(clip)
                except VidgenError as exc:
                    report.bad.append({"clip": row.clip_name, "reason": str(exc)})
                    logger.warning("skipped unreadable clip %s: %s", row.clip_name, exc)
                    continue
            sample = {"__key__": row.key, "mp4": clip.read_bytes(), "txt": row.caption,
                      "json": json.dumps(row.to_record(), ensure_ascii=False).encode("utf-8")}
            if writer is None:  # ShardWriter opens its first shard at once: only when there is a sample for it
                writer = wds.ShardWriter(pattern, maxcount=max_count, maxsize=max_size, post=finished, opener=opener,
                                         verbose=0, start_shard=len(report.shards))
            shard_end = position  # should this sample start a new shard, the one before ends here
            writer.write(sample)
            report.samples += 1
        shard_end = position + 1
        if writer is not None:
            writer.close()
    except BaseException as exc:
        if writer is not None and getattr(writer, "tarstream", None) is not None:
            with contextlib.suppress(Exception):
                writer.tarstream.close()  # end the tar cleanly before its file goes away
        for handle in open_files.values():
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)
        if isinstance(exc, OSError) and write_failure(exc) is not None:
            raise output_error(writer.fname if writer is not None else out, exc) from None
        raise
    written = {entry["name"] for entry in report.shards}
    for stale in old:
        if os.path.basename(stale) not in written:
            os.unlink(stale)  # from an earlier, larger or unfinished run that this one replaces
    if not (report.existing == len(report.shards) and previous.get("complete")):  # else it is as it was
        atomic_write_text(out / INDEX_NAME, json.dumps(write_index(complete=True), indent=2) + "\n")
    return report


def expand_urls(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Shard URLs from a folder, a glob, a brace pattern (``shard-{000000..000099}.tar``), a URL or a list.

    A folder gives its ``*.tar`` files, sorted (video2dataset's output folder
    included). Entries are not opened here.

    Raises:
        DataError: a local folder or glob with no ``.tar`` files, or a missing local file.
    """
    if isinstance(spec, (list, tuple)):
        return [url for item in spec for url in expand_urls(item)]
    text = str(spec)
    if "{" in text:
        braceexpand = require("braceexpand", "expanding shard patterns").braceexpand
        return [url for item in braceexpand(text) for url in expand_urls(item)]
    if "://" in text:
        return [text]
    if os.path.isdir(text):
        found = sorted(glob.glob(os.path.join(glob.escape(text), "*.tar")))
        if not found:
            raise DataError(f"no .tar shards in folder {text!r}")
        return found
    if any(ch in text for ch in "*?["):
        found = sorted(glob.glob(text))
        if not found:
            raise DataError(f"no shards match {text!r}")
        return found
    if not os.path.isfile(text):
        raise DataError(f"shard not found: {text!r}")
    return [text]


def open_shards(urls: Iterable[str], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """Open each shard (local path, or any fsspec URL) as a ``{"url", "stream"}`` dict for webdataset's tar reader.

    Shards that cannot be opened go to ``handler`` (continue when it returns true).
    """
    for url in urls:
        try:
            if "://" in url and not url.startswith("file://"):
                fsspec = require("fsspec", f"reading shard {url!r}")
                stream = fsspec.open(url, "rb").open()
            else:
                stream = open(url[len("file://"):] if url.startswith("file://") else url, "rb")
        except (OSError, ValueError) as exc:
            if handler(DataError(f"cannot open shard {url!r}: {exc}")):
                continue
            raise
        try:
            yield {"url": url, "stream": stream}
        finally:
            stream.close()


def iter_samples(urls: Iterable[str], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """Raw samples (``{"__key__", "__url__", "mp4": bytes, "txt": bytes, "json": bytes, ...}``) of the shards, in order.

    Unreadable shards and tar errors go to ``handler``; a truncated shard
    yields the samples before the damage.
    """
    wds = require("webdataset", "reading WebDataset shards")
    files = wds.tariterators.tar_file_expander(open_shards(urls, handler), handler=handler)
    yield from wds.tariterators.group_by_keys(files, handler=handler)


VIDEO_MEMBERS = ("mp4", "webm", "mkv", "mov", "avi", "m4v")


def sample_video(sample: dict[str, Any]) -> tuple[str, bytes] | None:
    """``(extension, bytes)`` of a sample's video member, or ``None`` when it has none."""
    for ext in VIDEO_MEMBERS:
        if isinstance(sample.get(ext), (bytes, bytearray)):
            return ext, bytes(sample[ext])
    return None


def sample_caption(sample: dict[str, Any]) -> str | None:
    """A sample's caption: its ``.txt`` member, else the ``Caption``/``caption`` of its ``.json`` member."""
    text = sample.get("txt")
    if isinstance(text, (bytes, bytearray)):
        return text.decode("utf-8", "replace").strip()
    meta = sample_meta(sample)
    for name in ("Caption", "caption"):
        if isinstance(meta.get(name), str):
            return meta[name]
    return None


def sample_meta(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample's ``.json`` member as a dict (empty when absent or malformed)."""
    raw = sample.get("json")
    if not isinstance(raw, (bytes, bytearray)):
        return {}
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}
