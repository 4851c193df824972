"""Output-file safety: refuse to clobber, write to a temporary name, rename when whole.

A write that fails because the disk is full or read-only ends in one
:class:`~vidgen.errors.OutputError` naming the file and the cause, with its
temporaries removed. A process killed mid-write cannot remove its own: they
keep names :func:`temporary_owner` recognises, so the next run of the same
command clears them with :func:`remove_temporaries`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence

from vidgen.errors import OutputError

# errno values that say the destination cannot take the bytes (not that an input is missing or unreadable).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
# ".{stem}.{8 random}.tmp{suffix}" (files) and ".{name}.{8 random}.tmp" / ".old" (folders): see temporary_owner.
_TEMPORARY = re.compile(r"\.(?P<stem>.+)\.[a-z0-9_]{8}\.(?:tmp(?P<suffix>\.[^.]+)?|(?P<old>old))")
_SAFETENSORS_ERRNO = re.compile(r"(?:os error |code: )(\d+)")


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


def write_failure(exc: BaseException) -> str | None:
    """The cause of a failed write, when ``exc`` says the disk is full, over quota, read-only or past its file-size
    limit (``"No space left on device"``); ``None`` for any other error.

    safetensors reports such failures as a ``SafetensorError`` carrying the OS error number in its text.
    """
    code = None
    if isinstance(exc, OSError):
        code = exc.errno
    elif type(exc).__name__ == "SafetensorError":
        match = _SAFETENSORS_ERRNO.search(str(exc))
        code = int(match.group(1)) if match else None
    if code not in WRITE_ERRNOS:
        return None
    return os.strerror(code)


def output_error(path: str | os.PathLike, exc: BaseException) -> OutputError:
    """The one-line error for a write of ``path`` that failed with ``exc`` (an ``OSError`` or a write failure)."""
    cause = write_failure(exc) or (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    return OutputError(f"cannot write {str(path)!r}: {cause}")


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to a log file such as ``metrics.jsonl``.

    Raises:
        OutputError: the disk is full or read-only (or the file cannot be opened).
    """
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise output_error(path, exc) from None


def temporary_owner(name: str) -> str | None:
    """The final name whose temporary ``name`` is, as :func:`atomic_outputs` and :func:`atomic_folder` make them
    (``.clip.k3j9x0ab.tmp.mp4`` -> ``clip.mp4``, ``.model.k3j9x0ab.tmp`` -> ``model``); ``None`` for other names."""
    match = _TEMPORARY.fullmatch(name)
    if match is None:
        return None
    return match.group("stem") + (match.group("suffix") or "")


def remove_temporaries(folder: str | os.PathLike, owners: Collection[str] | Callable[[str], bool] | None = None) -> int:
    """Delete the temporaries a killed run left in ``folder`` (see :func:`temporary_owner`). Returns how many.

    Args:
        folder: where the outputs are written.
        owners: only the temporaries of these final names (or of the names this returns true for); ``None``: all.
            Commands that run in several processes at once pass the outputs of their own process, so one never
            deletes what another is writing.

    A folder set aside by :func:`atomic_folder` (``.name.XXXXXXXX.old``) goes back under its name when the run
    was killed between moving it aside and putting the new one in place; otherwise it is deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    wanted = owners if owners is None or callable(owners) else set(owners).__contains__
    removed = 0
    with os.scandir(folder) as entries:
        found = [(entry.name, temporary_owner(entry.name)) for entry in entries if entry.name.startswith(".")]
    for name, owner in found:
        if owner is None or (wanted is not None and not wanted(owner)):
            continue
        entry = folder / name
        if name.endswith(".old") and (entry / "old").exists() and not (folder / owner).exists():
            os.replace(entry / "old", folder / owner)  # the previous version, never replaced: put it back
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed += 1
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: Path, folder: bool, mask: int | None = None) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give the final one the usual mode."""
    mask = _umask() if mask is None else mask
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if folder else 0o666) & ~mask)


def check_output_path(path: str | os.PathLike, overwrite: bool = False, check_folder: bool = True) -> Path:
    """Check that ``path`` may be written, creating its parent folder if needed.

    Args:
        path: the file that will be written.
        overwrite: allow replacing an existing file.
        check_folder: create and probe the parent folder (callers that already did may skip it).

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
    if check_folder:
        ensure_writable_dir(path.parent)
    return path


def read_json_object(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON object vidgen wrote (an index, a settings file), or ``None`` when it is missing, unreadable,
    not JSON or not an object: whatever is not whole counts as not there."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
    # Create a file rather than ask os.access: a read-only file system or an ACL refuses root too, and says why.
    try:
        fd, probe = tempfile.mkstemp(prefix=".vidgen-write-test.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def temporary_beside(path: Path) -> Path:
    """A new empty file beside ``path`` that :func:`temporary_owner` maps back to ``path``'s name.

    The temporary name keeps the suffix, so tools that pick a format from the extension (ffmpeg, Pillow)
    behave the same.

    Raises:
        OutputError: the file cannot be created (a read-only or full disk...).
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike], overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; rename them onto ``paths``, in that order, once the body succeeds.

    Files that belong together (a video and its settings, tensors and their index) are written this way,
    so a crash or a full disk never leaves half of one under its real name; the last path is renamed last,
    so its presence (next to the others) marks the group complete. If the body raises, every temporary is
    removed and ``paths`` are left untouched.

    Raises:
        OutputError: as :func:`check_output_path`; or a write failed because the disk is full or read-only
            (the error names the first path and the cause).
    """
    finals, folders = [], set()
    for p in paths:  # each folder is made and probed once, however many files of the group it takes
        parent = Path(p).parent
        finals.append(check_output_path(p, overwrite, check_folder=parent not in folders))
        folders.add(parent)
    temps: list[Path] = []
    try:
        for final in finals:
            temps.append(temporary_beside(final))
        try:
            yield list(temps)
        except BaseException as exc:
            if write_failure(exc) is not None:
                raise output_error(finals[0], exc) from None
            raise
        if not overwrite:
            for final in finals:
                if final.exists():
                    raise OutputError(f"output file {str(final)!r} appeared while writing (pass --overwrite to replace it)")
        mask = _umask()
        for tmp, final in zip(temps, finals):
            _apply_umask(tmp, folder=False, mask=mask)
            try:
                os.replace(tmp, final)
            except OSError as exc:
                raise output_error(final, exc) from None
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success (:func:`atomic_outputs` for one file).

    Raises:
        OutputError: as :func:`atomic_outputs`.
    """
    with atomic_outputs([path], overwrite=overwrite) as (tmp,):
        yield tmp


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
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise output_error(path, exc) from None
    backup = None
    try:
        try:
            yield tmp
        except BaseException as exc:
            if write_failure(exc) is not None:
                raise output_error(path, exc) from None
            raise
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
