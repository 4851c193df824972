"""Output files: groups appear together or not at all, disk faults are one error naming file and cause, and what a
killed run leaves is recognised and cleared."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from tests.disk_faults import FullDisk, read_only
from vidgen.errors import OutputError
from vidgen.io.files import (atomic_folder, atomic_outputs, ensure_writable_dir, remove_temporaries, temporary_beside,
                             temporary_owner, write_failure)
from vidgen.io.writer import write_video


def test_group_appears_in_order_or_not_at_all(tmp_path, monkeypatch):
    a, b = tmp_path / "v.mp4", tmp_path / "v.yaml"
    with pytest.raises(RuntimeError):
        with atomic_outputs([a, b]) as (ta, tb):
            ta.write_bytes(b"video")
            raise RuntimeError("the encoder crashed")
    assert os.listdir(tmp_path) == []
    placed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (placed.append(os.path.basename(dst)), real_replace(src, dst)))
    with atomic_outputs([a, b]) as (ta, tb):
        ta.write_bytes(b"video")
        tb.write_text("settings")
    assert placed == ["v.mp4", "v.yaml"] and sorted(os.listdir(tmp_path)) == ["v.mp4", "v.yaml"]
    with pytest.raises(OutputError, match="exists"):
        with atomic_outputs([tmp_path / "w.mp4", b]):
            pass
    assert sorted(os.listdir(tmp_path)) == ["v.mp4", "v.yaml"]


def test_full_disk_in_any_writer_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    FullDisk(disk, free=100, scratch=tmp_path).install(monkeypatch)
    frames = np.random.default_rng(0).random((4, 32, 32, 3))
    for name in ("v.gif", "v.mp4"):  # Pillow writes through Python, ffmpeg on its own
        with pytest.raises(OutputError, match=rf"cannot write '{disk / name}': No space left on device"):
            write_video(disk / name, frames)
    import torch
    from safetensors.torch import save_file

    with pytest.raises(OutputError, match="No space left on device"):
        with atomic_folder(disk / "model") as tmp:
            save_file({"w": torch.zeros(1000)}, str(tmp / "w.safetensors"))
    assert os.listdir(disk) == []


def test_read_only_folder_is_one_error_naming_it(tmp_path, monkeypatch):
    read_only(monkeypatch, tmp_path)
    with pytest.raises(OutputError, match=rf"'{tmp_path}' is not writable: Read-only file system"):
        ensure_writable_dir(tmp_path)
    with pytest.raises(OutputError, match=r"cannot create output folder .*Read-only file system"):
        ensure_writable_dir(tmp_path / "sub")
    with pytest.raises(OutputError, match="Read-only file system"):
        write_video(tmp_path / "v.mp4", np.zeros((2, 8, 8, 3)))


def test_write_failures_are_told_apart_from_other_errors():
    from safetensors import SafetensorError

    assert write_failure(OSError(28, "x")) == os.strerror(28)
    assert write_failure(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert write_failure(SafetensorError('IoError(Os { code: 30, kind: ReadOnlyFilesystem, message: "..." })')) == os.strerror(30)
    assert write_failure(FileNotFoundError(2, "no such source")) is None  # an input, not the disk
    assert write_failure(SafetensorError("invalid tensor")) is None


def test_temporaries_of_a_killed_run_are_recognised_and_cleared(tmp_path):
    video = temporary_beside(tmp_path / "000-a-cat-s0.mp4")
    folder = tempfile.mkdtemp(prefix=".model.", suffix=".tmp", dir=tmp_path)
    assert temporary_owner(video.name) == "000-a-cat-s0.mp4"
    assert temporary_owner(os.path.basename(folder)) == "model"
    assert temporary_owner("clip.mp4") is None and temporary_owner(".hidden") is None
    other = temporary_beside(tmp_path / "other.mp4")
    assert remove_temporaries(tmp_path, {"000-a-cat-s0.mp4", "model"}) == 2
    assert os.listdir(tmp_path) == [other.name]  # another command's temporaries stay
    # A folder set aside by an --overwrite that was killed before the new one went in: it goes back.
    aside = tempfile.mkdtemp(prefix=".run.", suffix=".old", dir=tmp_path)
    os.mkdir(os.path.join(aside, "old"))
    open(os.path.join(aside, "old", "weights"), "w").close()
    remove_temporaries(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["run"] and os.listdir(tmp_path / "run") == ["weights"]
