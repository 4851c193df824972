"""Reading the text files users hand to vidgen: UTF-8, with or without a byte-order mark.

Every CSV/JSONL/text input (row files, score tables, captions, prompts, story
scripts, source mappings, config files) is decoded here, so all of them accept
the byte-order mark spreadsheet programs write and all of them refuse a file
that is not UTF-8 the same way: one :class:`~vidgen.errors.TextEncodingError`
naming the file and the byte offset of the first undecodable byte.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from vidgen.errors import TextEncodingError

_BOM = "\ufeff"
_NEWLINE = b"\n"


def _encoding_error(name: str, exc: UnicodeDecodeError, offset: int | None, data: bytes | None = None) -> TextEncodingError:
    byte = exc.object[exc.start] if exc.start < len(exc.object) else None
    what = f"byte 0x{byte:02x}" if byte is not None else "an incomplete character"
    where = f" at byte offset {offset}" if offset is not None else ""
    if data is not None and offset is not None:
        where += f" (line {data.count(_NEWLINE, 0, offset) + 1})"
    return TextEncodingError(f"{name!r} is not UTF-8 text: cannot decode {what}{where}; save the file as UTF-8")


def decode_text(data: bytes, name: str) -> str:
    """``data`` decoded as UTF-8, a leading byte-order mark dropped.

    Args:
        data: the file's bytes.
        name: the file, for the error message.

    Raises:
        TextEncodingError: the bytes are not UTF-8; the message gives the offset (in ``data``) of the first bad byte.
    """
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _encoding_error(name, exc, skip + exc.start, data) from None


def read_text(path: str | os.PathLike) -> str:
    """The whole text of a UTF-8 file (a byte-order mark dropped).

    Raises:
        TextEncodingError: the file is not UTF-8.
        OSError: the file cannot be read (callers say "not found" in their own words first).
    """
    return decode_text(Path(path).read_bytes(), str(path))


def text_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """The lines of a UTF-8 byte stream, read lazily (a byte-order mark dropped).

    Line endings are kept and not translated, as ``open(..., newline="")`` gives them, so
    :mod:`csv` reads quoted fields that span lines. The stream is left open.

    Args:
        stream: a binary file object (a local file, a decompressor, an fsspec file).
        name: the file, for the error message.

    Raises:
        TextEncodingError: the stream is not UTF-8; the message gives the offset (in the
            decompressed bytes) of the first bad byte.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    try:
        first = text.readline()
        if first:
            yield first[1:] if first.startswith(_BOM) else first
            yield from text
    except UnicodeDecodeError as exc:
        # The wrapper decodes a chunk at a time: the stream's position is the end of the bytes
        # it just gave the decoder (exc.object, held-back bytes of a split character included).
        try:
            offset = stream.tell() - len(exc.object) + exc.start
        except (OSError, ValueError, AttributeError):
            offset = None
        raise _encoding_error(name, exc, offset) from None
    finally:
        with contextlib.suppress(ValueError):  # the caller may already have closed the stream
            text.detach()


def json_value(text: str, where: str, error: type[Exception], want_object: bool = False) -> Any:
    """One line of a JSONL file, parsed. A malformed line (or, with ``want_object``, one that is not a JSON
    object) raises ``error("{where}: ...")``, so every reader keeps its own error type and names the line
    its own way."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg})") from None
    if want_object and not isinstance(value, dict):
        raise error(f"{where}: expected a JSON object")
    return value
