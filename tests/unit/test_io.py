"""Video I/O: seeking decode returns exactly the asked frames; writers round-trip; bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import counter_value, make_counter_video
from vidgen.errors import InputError, OutputError, VideoError
from vidgen.io import (
    demo_indices,
    fps_indices,
    iter_frames,
    probe,
    read_frames,
    stride_indices,
    uniform_indices,
    upscale,
    write_video,
)


def test_probe_counter_video(counter_video):
    info = probe(counter_video)
    assert (info.num_frames, info.fps, info.width, info.height) == (30, 10.0, 64, 48)
    assert info.duration == pytest.approx(3.0)


@pytest.mark.parametrize("seek_gap", [1, 4, 1000])
def test_read_frames_returns_exact_frames_in_asked_order(counter_video, seek_gap):
    indices = [29, 0, 7, 8, 8, 15, 3, 24, 16]
    frames = read_frames(counter_video, indices, seek_gap=seek_gap)
    assert frames.shape == (len(indices), 48, 64, 3)
    assert [counter_value(f) for f in frames] == [i % 32 for i in indices]


def test_sparse_read_matches_full_decode_on_real_video(bikes):
    full = read_frames(bikes)
    assert full.shape == (250, 272, 640, 3)
    indices = uniform_indices(len(full), 8) + [0, 249, 120]
    sparse = read_frames(bikes, indices, seek_gap=10)
    np.testing.assert_array_equal(sparse, full[indices])


def test_read_frames_resizes_while_decoding(bunny):
    frames = read_frames(bunny, [0, 131], size=(224, 224))
    assert frames.shape == (2, 224, 224, 3) and frames.dtype == np.uint8


def test_iter_frames_seeks_to_start(counter_video):
    got = [(i, counter_value(f)) for i, f in iter_frames(counter_video, start=17, end=21)]
    assert got == [(17, 17), (18, 18), (19, 19), (20, 20)]


def test_frame_past_the_end_is_a_video_error(counter_video):
    with pytest.raises(VideoError, match="has 30 frames; frame 31 was requested"):
        read_frames(counter_video, [2, 31])


@pytest.mark.parametrize("content", [None, b"", b"not a video at all" * 100])
def test_missing_empty_and_garbage_files(tmp_path, content):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match="bad.mp4"):
        read_frames(path, [0])
    with pytest.raises(VideoError):
        probe(path)


def test_truncated_video_fails_or_stops_cleanly(tmp_path):
    src = make_counter_video(tmp_path / "full.mp4", num_frames=60)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError):
        read_frames(cut, [59])


def test_index_helpers():
    assert uniform_indices(10, 5) == [1, 3, 5, 7, 9]
    assert uniform_indices(3, 5) == [0, 0, 1, 2, 2]
    assert stride_indices(10, 3, stride=4) == [0, 4, 8]
    assert fps_indices(30, src_fps=30, target_fps=10, count=4, start=2) == [2, 5, 8, 11]
    assert fps_indices(25, src_fps=25, target_fps=8) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert demo_indices(20, 8) == [0, 2, 4, 6, 8, 10, 12, 14]
    with pytest.raises(VideoError):
        stride_indices(10, 4, stride=4)
    with pytest.raises(VideoError):
        demo_indices(7, 8)
    with pytest.raises(InputError):
        uniform_indices(10, 0)


def test_mp4_round_trip_keeps_count_size_fps_and_content(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (12, 6, 8, 3), dtype=np.uint8), 8, 1), 8, 2)
    path = write_video(tmp_path / "v.mp4", frames, fps=12)
    info = probe(path)
    assert (info.num_frames, info.width, info.height, info.fps, info.codec) == (12, 64, 48, 12.0, "h264")
    back = read_frames(path)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 6  # yuv420p + crf 18


def test_mp4_pads_odd_sizes_to_even_and_accepts_floats(tmp_path):
    frames = np.random.default_rng(0).random((3, 33, 47, 3), dtype=np.float32)
    info = probe(write_video(tmp_path / "odd.mp4", frames, fps=5))
    assert (info.width, info.height) == (48, 34)


def test_gif_round_trip(tmp_path):
    from PIL import Image

    frames = np.zeros((5, 16, 20, 3), np.uint8)
    for i in range(5):
        frames[i, :, : 4 * (i + 1), 0] = 255  # distinct frames (Pillow merges identical ones)
    path = write_video(tmp_path / "v.gif", frames, fps=10, upscale_factor=2)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (40, 32)
        assert im.info["duration"] == 100


def test_existing_output_is_not_overwritten(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        write_video(path, np.zeros((2, 8, 8, 3), np.uint8))
    assert path.read_bytes() == b"keep me"
    write_video(path, np.zeros((2, 8, 8, 3), np.uint8), overwrite=True)
    assert probe(path).num_frames == 2


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import vidgen.io.writer as writer

    def explode(path, frames, fps, crf):
        Path(path).write_bytes(b"half a video")
        raise RuntimeError("encoder died")

    monkeypatch.setattr(writer, "_write_mp4", explode)
    with pytest.raises(OutputError, match="encoder died"):
        write_video(tmp_path / "v.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_and_formats(tmp_path):
    with pytest.raises(InputError, match="shape"):
        write_video(tmp_path / "v.mp4", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="format"):
        write_video(tmp_path / "v.avi", np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="fps"):
        write_video(tmp_path / "v.mp4", np.zeros((1, 8, 8, 3), np.uint8), fps=0)
    assert list(tmp_path.iterdir()) == []


def test_uint8_and_float_tensors_convert_the_same():
    import torch

    from vidgen.io import to_uint8_frames

    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_frames(torch.from_numpy(frames)), frames)
    np.testing.assert_array_equal(to_uint8_frames(torch.from_numpy(frames).float() / 255), frames)


def test_upscale_modes():
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    near = upscale(frames, 3, "nearest")
    assert near.shape == (2, 9, 12, 3)
    np.testing.assert_array_equal(near[:, ::3, ::3], frames)
    smooth = upscale(frames, 2, "bicubic")
    assert smooth.shape == (2, 6, 8, 3) and smooth.dtype == np.uint8
    with pytest.raises(InputError):
        upscale(frames, 2, "lanczos")
