"""Output-file safety: refuse to clobber, write to a temporary name, rename when whole."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from vidgen.errors import OutputError


def json_ready(value):
    """``value`` as JSON can hold it: NaN and infinities as ``null``, tuples as lists, keys as text, and any
    other object (a path, say) as its text."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: Path, folder: bool, mask: int | None = None) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give the final one the usual mode."""
    mask = _umask() if mask is None else mask
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if folder else 0o666) & ~mask)


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that ``path`` may be written, creating its parent folder if needed.

    Args:
        path: the file that will be written.
        overwrite: allow replacing an existing file.

    Returns:
        The path as a :class:`Path`.

    Raises:
        OutputError: the file exists and ``overwrite`` is false, the path is a
            folder, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output path {str(path)!r} is a folder, not a file")
    if path.exists() and not overwrite:
        raise OutputError(f"output file {str(path)!r} exists (pass --overwrite to replace it)")
    ensure_writable_dir(path.parent)
    return path


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if missing and check that files can be created in it.

    Raises:
        OutputError: the folder cannot be created or is not writable.
    """
    folder = Path(folder) if str(folder) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {str(folder)!r}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise OutputError(f"output folder {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {str(folder)!r} is not writable")
    return folder


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix, so tools that pick a format from the
    extension (ffmpeg, Pillow) behave the same. If the body raises, the
    temporary file is removed and ``path`` is left untouched, so a crash never
    leaves a half-written output under the real name.

    Raises:
        OutputError: as :func:`check_output_path`.
    """
    path = check_output_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not overwrite and path.exists():
            raise OutputError(f"output file {str(path)!r} appeared while writing (pass --overwrite to replace it)")
        _apply_umask(tmp_path, folder=False)
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` through a temporary file. Returns the path."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file. Returns the path."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(
    path: str | os.PathLike,
    overwrite: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only when the body succeeds.

    Model folders and checkpoints are written this way, so an interrupted write
    leaves the previous version (or nothing) under the real name, never half of one.
    An existing folder is first renamed aside and deleted only once the new one is
    in place.

    Args:
        path: the folder to write.
        overwrite: allow replacing an existing folder.
        replaceable: when given, an existing non-empty folder is replaced only if this
            returns true for it (e.g. "it is a model folder"), so a mistyped path never
            deletes unrelated files.

    Raises:
        OutputError: ``path`` exists and may not be replaced, or its parent cannot be written.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputError(f"output folder {str(path)!r} exists (pass --overwrite to replace it)")
        if not path.is_dir() or path.is_symlink():
            raise OutputError(f"output path {str(path)!r} is not a folder; refusing to replace it")
        if replaceable is not None and any(path.iterdir()) and not replaceable(path):
            raise OutputError(f"refusing to replace {str(path)!r}: it does not look like a folder this command wrote")
    ensure_writable_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    backup = None
    try:
        yield tmp
        # Libraries write some files privately (tempfile-style 0600): give the whole tree the usual modes.
        mask = _umask()
        for root, dirs, files in os.walk(tmp):
            for name in dirs:
                _apply_umask(Path(root) / name, folder=True, mask=mask)
            for name in files:
                _apply_umask(Path(root) / name, folder=False, mask=mask)
        _apply_umask(tmp, folder=True, mask=mask)
        if path.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, backup / "old")
        try:
            os.replace(tmp, path)
        except OSError:
            if backup is not None and not path.exists():
                os.replace(backup / "old", path)  # put the previous version back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
