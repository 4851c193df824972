"""Typed errors raised by vidgen.

Every error a user can cause (a bad argument, a missing file, a corrupt video, a
malformed row) is a :class:`VidgenError`. The CLI prints its message as one line
and exits with status 2; library callers can catch the specific subclass. Errors
about argument values also subclass :class:`ValueError`, so code that already
catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class VidgenError(Exception):
    """Base class of every error vidgen raises on purpose."""


class InputError(VidgenError, ValueError):
    """An argument or input value that cannot be used (empty prompt, bad size...)."""


class ConfigError(InputError):
    """A configuration file or ``key=value`` override that does not fit the schema."""


class ModelLoadError(VidgenError):
    """A model folder or checkpoint that is missing, malformed or unsafe to load."""


class VideoError(VidgenError):
    """A video that is missing, unreadable, corrupt or too short for the request."""


class DataError(VidgenError):
    """A dataset row, shard or file that does not match its expected format."""


class OutputError(VidgenError):
    """An output that would overwrite a file, or a destination that cannot be written."""


class TextEncodingError(InputError, DataError):
    """A text input (rows, prompts, a script, captions...) that is not UTF-8.

    Both an :class:`InputError` and a :class:`DataError`, so whichever a reader
    documents for its malformed files also catches this.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (library errors can run to many lines), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
