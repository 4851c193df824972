"""Reading and writing InternVid rows: JSONL (streamed), CSV and Parquet, local or fsspec URLs.

Readers never hold a file in memory: InternVid-Full is one 45 GB JSONL file,
read here a line at a time; Parquet is read a record batch at a time. Each bad
row is reported with its line (JSONL/CSV) or row number (Parquet) and skipped,
or stops the run when ``strict`` is set. Writers go through a temporary file
and rename at the end, so an interrupted run leaves no half-written output.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import json
import logging
import lzma
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from vidgen.extras import require
from vidgen.data.rows import Row, RowError, parse_row
from vidgen.errors import DataError
from vidgen.io.files import atomic_output
from vidgen.io.text import text_lines

logger = logging.getLogger(__name__)

ROW_FORMATS = ("jsonl", "csv", "parquet")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
_COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
MAX_PROBLEMS = 100  # problems kept verbatim in a report; the rest are only counted
_LOGGED_PROBLEMS = 20
PARQUET_BATCH = 8192


def _is_url(path: str) -> bool:
    return "://" in path


def _split_compression(path: str) -> tuple[str, str | None]:
    for suffix in (*_COMPRESSIONS, ".zst"):
        if path.lower().endswith(suffix):
            return path[: -len(suffix)], suffix
    return path, None


def row_format(path: str | os.PathLike) -> str:
    """``"jsonl"``, ``"csv"`` or ``"parquet"`` from the file name (compression suffixes ignored).

    Raises:
        DataError: an unknown suffix.
    """
    base, _ = _split_compression(str(path))
    suffix = Path(base.split("?")[0]).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise DataError(f"cannot tell the row format of {str(path)!r}: use .jsonl, .csv or .parquet (optionally .gz)")
    return _SUFFIX_FORMATS[suffix]


@dataclass
class RowReport:
    """What a read found: how many records, how many valid, and which were malformed.

    Attributes:
        source: the file read.
        read: records seen (blank lines excluded).
        valid: records that became rows.
        bad: malformed records skipped.
        problems: ``(line, reason)`` of the first :data:`MAX_PROBLEMS` bad records.
        log: log a warning for the first few bad records (off for the extra
            passes of a multi-pass command, so each problem is told once).
    """

    source: str = ""
    read: int = 0
    valid: int = 0
    bad: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    log: bool = True

    def add_problem(self, line: int, reason: str) -> None:
        """Count one malformed record (kept verbatim while there is room, logged for the first few)."""
        self.bad += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((line, reason))
        if not self.log:
            return
        if self.bad <= _LOGGED_PROBLEMS:
            logger.warning("%s:%d: skipped malformed row: %s", self.source, line, reason)
        elif self.bad == _LOGGED_PROBLEMS + 1:
            logger.warning("%s: more malformed rows; see the report for the first %d", self.source, MAX_PROBLEMS)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "source": self.source,
            "read": self.read,
            "valid": self.valid,
            "malformed": self.bad,
            "problems": [{"line": line, "reason": reason} for line, reason in self.problems],
        }

    def summary(self) -> str:
        """One line: ``N rows read, M valid, K malformed``."""
        return f"{self.read} rows read from {self.source}, {self.valid} valid, {self.bad} malformed (skipped)"


def _open_binary(path: str) -> io.BufferedIOBase:
    if _is_url(path):
        fsspec = require("fsspec", f"reading {path!r}")
        try:
            return fsspec.open(path, "rb").open()
        except (OSError, ValueError, ImportError) as exc:
            raise DataError(f"cannot open {path!r}: {exc}") from None
    if not os.path.exists(path):
        raise DataError(f"rows file not found: {path!r}")
    if os.path.isdir(path):
        raise DataError(f"expected a rows file, got a folder: {path!r}")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot open {path!r}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def open_text(path: str | os.PathLike) -> Iterator[Iterator[str]]:
    """The lines of a (possibly compressed, possibly remote) UTF-8 text file, read lazily.

    ``.gz``, ``.bz2`` and ``.xz`` are decompressed on the fly; ``.zst`` and URLs
    (``s3://``, ``https://``, ``hf://``...) go through fsspec. A byte-order mark is
    dropped; line endings are kept (as ``newline=""`` keeps them, for :mod:`csv`).

    Raises:
        DataError: the file is missing or cannot be opened.
        TextEncodingError: (while reading) the file is not UTF-8.
        MissingExtraError: a URL or ``.zst`` without fsspec installed.
    """
    path = str(path)
    _, compression = _split_compression(path)
    with contextlib.ExitStack() as stack:
        if compression == ".zst":
            fsspec = require("fsspec", f"reading {path!r}")
            try:
                raw = stack.enter_context(fsspec.open(path, "rb", compression="zstd").open())
            except (OSError, ValueError, ImportError) as exc:
                raise DataError(f"cannot open {path!r}: {exc}") from None
        else:
            raw = stack.enter_context(_open_binary(path))
            if compression is not None:
                raw = stack.enter_context(_COMPRESSIONS[compression](raw, "rb"))
        yield text_lines(raw, path)


def _jsonl_records(path: str) -> Iterator[tuple[int, Any]]:
    with open_text(path) as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, RowError(f"not valid JSON ({exc.msg} at column {exc.colno})")


def _csv_records(path: str) -> Iterator[tuple[int, Any]]:
    base, _ = _split_compression(path)
    delimiter = "\t" if base.lower().endswith(".tsv") else ","
    with open_text(path) as lines:
        reader = csv.DictReader(lines, delimiter=delimiter)
        if reader.fieldnames is None:
            return
        for record in reader:
            if None in record:
                yield reader.line_num, RowError(f"{len(record[None])} more values than the {len(reader.fieldnames)} columns")
                continue
            # A short line leaves its last columns None: treat them as absent.
            yield reader.line_num, {k: v for k, v in record.items() if v is not None}


def _parquet_records(path: str) -> Iterator[tuple[int, Any]]:
    pq = require("pyarrow.parquet", "reading .parquet rows")
    pa = require("pyarrow", "reading .parquet rows")
    with _open_binary(path) as f:
        try:
            parquet = pq.ParquetFile(f)
            number = 0
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
                for record in batch.to_pylist():
                    number += 1
                    yield number, record
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read parquet file {path!r}: {exc}") from None


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Raw records of a rows file with their line (or row) numbers, streamed.

    A record that cannot even be parsed (bad JSON, a CSV line with too many
    values) comes as a :class:`RowError` in place of the record.

    Raises:
        DataError: the file is missing, of an unknown format, or unreadable as a whole.
    """
    path = str(path)
    fmt = row_format(path)
    if fmt == "parquet":
        return _parquet_records(path)
    if fmt == "csv":
        return _csv_records(path)
    return _jsonl_records(path)


def iter_rows(path: str | os.PathLike, *, strict: bool = False, report: RowReport | None = None) -> Iterator[Row]:
    """Stream the valid rows of a ``.jsonl``/``.csv``/``.parquet`` file (optionally compressed or remote).

    Args:
        path: the rows file or URL.
        strict: stop at the first malformed row instead of skipping it.
        report: filled with counts and the malformed rows' line numbers.

    Yields:
        One :class:`Row` per valid record, in file order.

    Raises:
        RowError: with ``strict``, the first malformed row (with its line number).
        DataError: the file is missing, of an unknown format, or unreadable.
    """
    report = report if report is not None else RowReport()
    report.source = str(path)
    try:
        for line, record in iter_records(path):
            report.read += 1
            try:
                if isinstance(record, RowError):
                    raise record
                row = parse_row(record)
            except RowError as exc:
                if strict:
                    raise RowError(exc.reason, line=line, source=str(path)) from None
                report.add_problem(line, exc.reason)
                continue
            report.valid += 1
            yield row
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError, OSError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None


def read_rows(path: str | os.PathLike, *, strict: bool = False, report: RowReport | None = None) -> list[Row]:
    """All valid rows of a file as a list (for small files; use :func:`iter_rows` for large ones)."""
    return list(iter_rows(path, strict=strict, report=report))


class RowWriter:
    """Write rows to ``.jsonl``/``.csv``/``.parquet`` (optionally ``.gz``), atomically.

    Use as a context manager; the file appears under its name only when the
    block ends without an exception. CSV and Parquet fix their columns from
    the first rows; a later row with a new column is an error (JSONL has no
    such limit).

    Args:
        path: destination file.
        overwrite: replace an existing file.

    Raises:
        OutputError: the file exists without ``overwrite`` or cannot be written.
        DataError: an unknown format, or a row whose columns do not fit the file's.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path)
        self.format = row_format(self.path)
        self.overwrite = overwrite
        self.count = 0
        self._stack = contextlib.ExitStack()
        self._file: Any = None
        self._csv: csv.DictWriter | None = None
        self._columns: list[str] | None = None
        self._batch: list[dict[str, Any]] = []
        self._parquet: Any = None

    def __enter__(self) -> "RowWriter":
        tmp = self._stack.enter_context(atomic_output(self.path, overwrite=self.overwrite))
        if self.format == "parquet":
            require("pyarrow.parquet", "writing .parquet rows")
            self._tmp = tmp
            return self
        _, compression = _split_compression(str(self.path))
        if compression not in (None, *_COMPRESSIONS):
            raise DataError(f"cannot write {compression} files; use .gz, .bz2 or .xz")
        opener = _COMPRESSIONS[compression] if compression else open
        self._file = self._stack.enter_context(opener(tmp, "wt", encoding="utf-8", newline=""))
        return self

    def _check_columns(self, record: dict[str, Any]) -> None:
        new = [k for k in record if k not in self._columns]  # type: ignore[operator]
        if new:
            raise DataError(
                f"row {self.count + 1} has column(s) {', '.join(map(repr, new))} that the first rows lacked; "
                f"{self.format} needs one set of columns (write .jsonl instead)"
            )

    def write(self, row: Row) -> None:
        """Append one row."""
        record = row.to_record()
        if self.format == "jsonl":
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.format == "csv":
            if self._csv is None:
                self._columns = list(record)
                self._csv = csv.DictWriter(self._file, fieldnames=self._columns, restval="")
                self._csv.writeheader()
            self._check_columns(record)
            self._csv.writerow(record)
        else:
            self._batch.append(record)
            if len(self._batch) >= PARQUET_BATCH:
                self._flush_parquet()
        self.count += 1

    def write_all(self, rows: Iterable[Row]) -> int:
        """Append every row; returns how many."""
        for row in rows:
            self.write(row)
        return self.count

    def _flush_parquet(self) -> None:
        if not self._batch:
            return
        pa = require("pyarrow", "writing .parquet rows")
        pq = require("pyarrow.parquet", "writing .parquet rows")
        if self._parquet is None:
            columns: dict[str, None] = {}
            for record in self._batch:
                columns.update(dict.fromkeys(record))
            self._columns = list(columns)
            table = pa.Table.from_pylist(self._batch)
            self._parquet = self._stack.enter_context(pq.ParquetWriter(str(self._tmp), table.schema))
        else:
            for record in self._batch:
                self._check_columns(record)
            try:
                table = pa.Table.from_pylist(self._batch, schema=self._parquet.schema.to_arrow_schema())
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataError(f"rows do not fit the parquet columns of the first rows: {exc}") from None
        self._parquet.write_table(table)
        self._batch = []

    def _finish_parquet(self) -> None:
        if self._parquet is None and not self._batch:
            pa = require("pyarrow", "writing .parquet rows")
            pq = require("pyarrow.parquet", "writing .parquet rows")
            pq.write_table(pa.table({}), str(self._tmp))  # no rows: an empty but valid file
        self._flush_parquet()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self.format == "parquet":
            try:
                self._finish_parquet()
            except BaseException as err:
                self._stack.__exit__(type(err), err, err.__traceback__)  # drop the temporary file
                raise
        return bool(self._stack.__exit__(exc_type, exc, tb))


def write_rows(path: str | os.PathLike, rows: Iterable[Row], *, overwrite: bool = False) -> int:
    """Write ``rows`` to ``path`` (format from the suffix) atomically; returns how many were written.

    Raises:
        OutputError: the file exists without ``overwrite``.
        DataError: an unknown format or inconsistent columns (CSV/Parquet).
    """
    with RowWriter(path, overwrite=overwrite) as writer:
        return writer.write_all(rows)
