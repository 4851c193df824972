"""Simulated disk faults for tests: a folder whose disk fills up at a chosen byte, a folder on a read-only file system.

Tests may run as root, where file modes do not stop writes, so the faults are injected where bytes leave
the process: Python's ``open`` (and what is built on it: pathlib, tarfile, Pillow, json), safetensors'
writer (which raises ``SafetensorError`` as the real one does), ``os`` calls that create or rename
entries, and ffmpeg, run through a stand-in that runs the real encoder, keeps the bytes the disk had room
for and then fails as ffmpeg does on a full disk (exit status 228, that is -ENOSPC, after leaving the
truncated file).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import stat
import sys
from pathlib import Path

_STAND_IN = '''#!{python}
import os, shutil, subprocess, sys, tempfile
args = sys.argv[1:]
real, folder, state = os.environ["FAKE_DISK_FFMPEG"], os.environ["FAKE_DISK_FOLDER"], os.environ["FAKE_DISK_STATE"]
out = os.path.abspath(args[-1])
if not out.startswith(folder + os.sep):
    os.execv(real, [real, *args])
with tempfile.TemporaryDirectory() as scratch:
    whole = os.path.join(scratch, "whole" + os.path.splitext(out)[1])
    status = subprocess.run([real, *args[:-1], whole]).returncode
    if status:
        sys.exit(status)
    data = open(whole, "rb").read()
free = int(open(state).read())
with open(out, "wb") as f:
    f.write(data[:free])
open(state, "w").write(str(max(free - len(data), 0)))
if len(data) > free:
    print("[out#0/mp4 @ 0x5555] Error writing trailer: No space left on device", file=sys.stderr)
    sys.exit(228)
'''


def _inside(path, folder: str) -> bool:
    if isinstance(path, int):
        return False
    path = os.path.abspath(os.fsdecode(path))
    return path == folder or path.startswith(folder + os.sep)


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


class _Metered:
    """A file whose writes draw on the disk's free bytes and fail with ENOSPC once they run out."""

    def __init__(self, file, disk: "FullDisk"):
        self._file, self._disk = file, disk

    def write(self, data):
        size = len(data.encode("utf-8")) if isinstance(data, str) else memoryview(data).nbytes
        free = self._disk.free
        if size > free:
            if free and not isinstance(data, str):
                self._file.write(memoryview(data).cast("B")[:free])
            self._disk.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.free = free - size
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __iter__(self):
        return iter(self._file)

    def __getattr__(self, name):
        return getattr(self._file, name)


class FullDisk:
    """Writes under ``folder`` share ``free`` bytes; the write that needs more raises ENOSPC (``install`` it first)."""

    def __init__(self, folder: str | os.PathLike, free: int, scratch: str | os.PathLike):
        self.folder = os.path.abspath(folder)
        self._state = Path(scratch) / "free_bytes"
        self.free = free
        self._stand_in = Path(scratch) / "ffmpeg"

    @property
    def free(self) -> int:
        return int(self._state.read_text())

    @free.setter
    def free(self, value: int) -> None:
        self._state.write_text(str(value))

    def install(self, monkeypatch) -> "FullDisk":
        import imageio_ffmpeg
        import safetensors.torch
        from safetensors import SafetensorError

        real_open = builtins.open
        folder = self.folder

        def open_(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            return _Metered(handle, self) if _writes(mode) and _inside(file, folder) else handle

        real_save_file = safetensors.torch.save_file

        def save_file(tensors, filename, metadata=None):
            if not _inside(filename, folder):
                return real_save_file(tensors, filename, metadata=metadata)
            try:
                with open_(filename, "wb") as f:
                    f.write(safetensors.torch.save(tensors, metadata=metadata))
            except OSError:
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)") from None

        self._stand_in.write_text(_STAND_IN.format(python=sys.executable))
        self._stand_in.chmod(self._stand_in.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("FAKE_DISK_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
        monkeypatch.setenv("FAKE_DISK_FOLDER", folder)
        monkeypatch.setenv("FAKE_DISK_STATE", str(self._state))
        monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(self._stand_in))
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(safetensors.torch, "save_file", save_file)
        return self


def read_only(monkeypatch, folder: str | os.PathLike) -> None:
    """Make ``folder`` (and everything under it) behave as on a read-only file system: whatever would create,
    change or remove an entry there raises EROFS; reading still works."""
    folder = os.path.abspath(folder)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open
    real = {name: getattr(os, name) for name in ("mkdir", "replace", "rename", "unlink", "rmdir")}

    def open_(file, mode="r", *args, **kwargs):
        if _writes(mode) and _inside(file, folder):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _inside(path, folder):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded(name):
        def call(path, *args, **kwargs):
            targets = [path] + [a for a in args[:1] if isinstance(a, (str, bytes, os.PathLike))]
            if any(_inside(t, folder) for t in targets):
                refuse(path)
            return real[name](path, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    for name in real:
        monkeypatch.setattr(os, name, guarded(name))
