"""InternVid annotation rows: the typed row, exact timestamps, validation.

A row is one clip of one YouTube video with its caption and scores
(shared/FORMATS.md, "InternVid annotation rows"). :func:`parse_row` turns a
record read from JSONL/CSV/Parquet into a :class:`Row`, or raises
:class:`RowError` naming the problem; the readers in :mod:`vidgen.data.readers`
add the line number and decide whether to skip or stop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from vidgen.errors import DataError

# InternVid's column names, in the order the dataset files use.
COLUMNS = ("YoutubeID", "Start_timestamp", "End_timestamp", "Caption", "Aesthetic_Score", "UMT_Score")

# Accepted spellings of each field: InternVid's own first, then the snake_case
# names of other exports (and of rows this project writes in other tools).
ALIASES: dict[str, tuple[str, ...]] = {
    "youtube_id": ("YoutubeID", "youtube_id", "videoID", "video_id"),
    "start": ("Start_timestamp", "start_timestamp", "start", "Start"),
    "end": ("End_timestamp", "end_timestamp", "end", "End"),
    "caption": ("Caption", "caption"),
    "aesthetic_score": ("Aesthetic_Score", "aesthetic_score", "Aesthetic_score"),
    "umt_score": ("UMT_Score", "umt_score", "UMT_score"),
}

YOUTUBE_ID_RE = re.compile(r"[A-Za-z0-9_-]{11}")
_TIMESTAMP_RE = re.compile(r"(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)")


class RowError(DataError):
    """One annotation row that cannot be used; ``line`` is set by the reader (1-based)."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None):
        self.reason = message
        self.line = line
        self.source = source
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)


def is_youtube_id(value: object) -> bool:
    """Whether ``value`` is an 11-character YouTube ID of ``[A-Za-z0-9_-]``."""
    return isinstance(value, str) and YOUTUBE_ID_RE.fullmatch(value) is not None


def file_name(path: str) -> str:
    """The last part of a path written with either separator (rows come from any system)."""
    return re.split(r"[\\/]", path)[-1]


def check_youtube_id(value: object) -> str:
    """Return ``value`` if it is an 11-character ``[A-Za-z0-9_-]`` YouTube ID.

    Raises:
        RowError: anything else (wrong length, unsafe characters, not a string).
    """
    if not is_youtube_id(value):
        raise RowError(f"YoutubeID {value!r} is not 11 characters of [A-Za-z0-9_-]")
    return value  # type: ignore[return-value]


def _fast_timestamp(text: str) -> float | None:
    """Seconds of the exact ``HH:MM:SS.mmm`` shape InternVid writes (most rows), else ``None``."""
    if len(text) != 12 or text[2] != ":" or text[5] != ":" or text[8] != ".":
        return None
    digits = text[0:2] + text[3:5] + text[6:8] + text[9:12]
    if not (digits.isascii() and digits.isdigit()) or text[3] > "5" or text[6] > "5":
        return None
    # Milliseconds as one integer, divided once: the correctly rounded float.
    return (int(digits[0:2]) * 3_600_000 + int(digits[2:4]) * 60_000 + int(digits[4:6]) * 1000 + int(digits[6:9])) / 1000


def parse_timestamp(value: object) -> float:
    """Seconds from an InternVid timestamp ``HH:MM:SS.mmm`` (or a number of seconds).

    The fractional part is read as a decimal, so ``00:07:33.689`` is exactly the
    float nearest to 453.689 and :func:`format_timestamp` gives the same text back.

    Raises:
        RowError: a string of another shape, a negative or non-finite number.
    """
    if isinstance(value, bool) or value is None:
        raise RowError(f"timestamp {value!r} is not HH:MM:SS.mmm")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        fast = _fast_timestamp(text)
        if fast is not None:
            return fast
        match = _TIMESTAMP_RE.fullmatch(text)
        if match:
            hours, minutes, secs = match.groups()
            whole, _, frac = secs.partition(".")
            scale = 10 ** len(frac)
            # One integer division: Python rounds int / int correctly, so this is the
            # float nearest the decimal value (no error from adding parts).
            seconds = ((int(hours) * 3600 + int(minutes) * 60 + int(whole)) * scale + int(frac or 0)) / scale
        else:
            try:
                seconds = float(Decimal(text))  # a plain number of seconds ("453.689")
            except InvalidOperation:
                raise RowError(f"timestamp {value!r} is not HH:MM:SS.mmm") from None
    else:
        raise RowError(f"timestamp {value!r} is not HH:MM:SS.mmm")
    if not math.isfinite(seconds) or seconds < 0:
        raise RowError(f"timestamp {value!r} is not a non-negative time")
    return seconds


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm`` for a time in seconds (rounded to the millisecond)."""
    ms = int(round(seconds * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def _score(value: object, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise RowError(f"{name} {value!r} is not a number")
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RowError(f"{name} {value!r} is not a number") from None
    if math.isnan(score):
        return None  # CSV/Parquet exports write missing scores as NaN
    if math.isinf(score):
        raise RowError(f"{name} {value!r} is not finite")
    return score


def _fields(record: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """``{field: (column, value)}`` for the fields present, trying each field's spellings in order."""
    found = {}
    for name, spellings in ALIASES.items():
        for key in spellings:
            if key in record:
                found[name] = (key, record[key])
                break
    return found


@dataclass(slots=True)
class Row:
    """One InternVid clip: which video, which span, its caption and scores.

    Attributes:
        youtube_id: the 11-character YouTube ID.
        start: clip start in seconds.
        end: clip end in seconds (``> start``).
        caption: the generated caption.
        aesthetic_score: LAION aesthetic score, ``None`` where the file has none.
        umt_score: UMT clip-caption similarity, ``None`` where the file has none.
        extra: every other column of the source row, unchanged (language, ASR,
            a local ``video_path`` where the mirror gave a path for the ID...).
    """

    youtube_id: str
    start: float
    end: float
    caption: str
    aesthetic_score: float | None = None
    umt_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=True)

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.end - self.start

    @property
    def start_timestamp(self) -> str:
        """The start as ``HH:MM:SS.mmm``."""
        return format_timestamp(self.start)

    @property
    def end_timestamp(self) -> str:
        """The end as ``HH:MM:SS.mmm``."""
        return format_timestamp(self.end)

    @property
    def clip_name(self) -> str:
        """The clip file name InternVid's distributions use: ``{YoutubeID}_{start}_{end}.mp4``."""
        return f"{self.youtube_id}_{self.start_timestamp}_{self.end_timestamp}.mp4"

    @property
    def key(self) -> str:
        """A sample key without dots or colons (WebDataset splits names at the first dot).

        ``{YoutubeID}_{start_ms}_{end_ms}``, unique per clip.
        """
        return f"{self.youtube_id}_{int(round(self.start * 1000))}_{int(round(self.end * 1000))}"

    def to_record(self) -> dict[str, Any]:
        """The row in InternVid's column names (scores left out when missing), extra columns after."""
        record: dict[str, Any] = {
            "YoutubeID": self.youtube_id,
            "Start_timestamp": self.start_timestamp,
            "End_timestamp": self.end_timestamp,
            "Caption": self.caption,
        }
        if self.aesthetic_score is not None:
            record["Aesthetic_Score"] = self.aesthetic_score
        if self.umt_score is not None:
            record["UMT_Score"] = self.umt_score
        for key, value in self.extra.items():
            record.setdefault(key, value)
        return record


def parse_row(record: Mapping[str, Any]) -> Row:
    """Validate one record (a parsed JSON object, CSV row or Parquet row) into a :class:`Row`.

    Args:
        record: the row's columns. InternVid's names and snake_case variants
            are accepted (see :data:`ALIASES`); other columns go to ``Row.extra``.

    Returns:
        The typed row.

    Raises:
        RowError: a missing field, a bad timestamp, an end not after the start,
            a YouTube ID that is not 11 safe characters, a caption that is not
            text, or a score that is not a number.
    """
    if not isinstance(record, dict) and not isinstance(record, Mapping):  # dict first: the ABC check is slow
        raise RowError(f"expected an object with InternVid columns, got {type(record).__name__}")
    fields = _fields(record)
    missing = [ALIASES[name][0] for name in ("youtube_id", "start", "end", "caption") if name not in fields]
    if missing:
        raise RowError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    raw_id = fields["youtube_id"][1]
    used = {column for column, _ in fields.values()}
    extra = {k: v for k, v in record.items() if k not in used} if len(record) > len(used) else {}
    youtube_id = raw_id
    if isinstance(raw_id, str) and not is_youtube_id(raw_id) and ("/" in raw_id or "\\" in raw_id or "." in raw_id):
        # Some mirrors put a local file path in place of the ID; the ID is the
        # first 11 characters of the file's basename (FORMATS.md).
        youtube_id = file_name(raw_id)[:11]
        extra.setdefault("video_path", raw_id)
    check_youtube_id(youtube_id)
    start = parse_timestamp(fields["start"][1])
    end = parse_timestamp(fields["end"][1])
    if end <= start:
        raise RowError(f"end {format_timestamp(end)} is not after start {format_timestamp(start)}")
    caption = fields["caption"][1]
    if not isinstance(caption, str):
        raise RowError(f"Caption {caption!r} is not text")
    aesthetic = fields.get("aesthetic_score")
    umt = fields.get("umt_score")
    return Row(
        youtube_id=youtube_id,
        start=start,
        end=end,
        caption=caption,
        aesthetic_score=None if aesthetic is None else _score(aesthetic[1], "Aesthetic_Score"),
        umt_score=None if umt is None else _score(umt[1], "UMT_Score"),
        extra=extra,
    )
