"""Training datasets: shapes and range, frame choice, determinism per (seed, epoch, index), skipping bad clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import counter_value, make_counter_video
from vidgen.data.datasets import ClipFolderDataset, collate
from vidgen.data.frames import ClipTooShortError, FramePolicy, item_rng, load_clip
from vidgen.data.rows import parse_row
from vidgen.errors import DataError, InputError


def values(pixels):
    """Counter numbers of a [T, C, H, W] tensor in [-1, 1] (left quarter of each frame)."""
    return [counter_value(((f.permute(1, 2, 0).numpy() + 1) * 127.5).round()) for f in pixels]


@pytest.fixture
def folder(tmp_path):
    """Four 20-frame counter clips (10 fps, 48x32) with rows, one too-short clip and one corrupt clip."""
    root = tmp_path / "clips"
    root.mkdir()
    rows = []
    for i in range(6):
        row = parse_row({"YoutubeID": f"vid{i:08d}", "Start_timestamp": 0, "End_timestamp": 2, "Caption": f"caption {i}"})
        rows.append(row)
        if i == 4:
            make_counter_video(root / row.clip_name, num_frames=3, fps=10.0, size=(48, 32))
        elif i == 5:
            (root / row.clip_name).write_bytes(b"\x00" * 100)
        else:
            make_counter_video(root / row.clip_name, num_frames=20, fps=10.0, size=(48, 32))
    return root, rows


def test_frame_policies_pick_the_right_frames(counter_video):
    # counter_video: 30 frames at 10 fps
    start = FramePolicy(num_frames=5, stride=3, height=16, width=16, window="start")
    assert values(load_clip(counter_video, start)) == [0, 3, 6, 9, 12]
    center = FramePolicy(num_frames=4, fps=5, height=16, width=16, window="center")
    assert values(load_clip(counter_video, center)) == [10, 12, 14, 16]  # 15 frames at 5 fps, 4 from the middle
    random_window = FramePolicy(num_frames=8, height=16, width=16, window="random")
    got = values(load_clip(counter_video, random_window, item_rng(0, 0, 0)))
    assert got == list(range(got[0], got[0] + 8)) and 0 <= got[0] <= 22
    with pytest.raises(ClipTooShortError, match="30 frames"):
        load_clip(counter_video, FramePolicy(num_frames=11, stride=3, window="start"))
    with pytest.raises(InputError, match="Generator"):
        load_clip(counter_video, random_window)


def test_resize_and_crop_geometry(bikes):
    # bikes.mp4 is 640x272: "crop" scales the short side to cover 64x64 and crops; "stretch" squeezes.
    crop = FramePolicy(num_frames=2, height=64, width=64, window="start")
    assert crop.resize_plan(640, 272) == ((151, 64), (43, 0))
    pixels = load_clip(bikes, crop)
    assert pixels.shape == (2, 3, 64, 64) and pixels.dtype == torch.float32
    assert -1.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0 and float(pixels.std()) > 0.05
    stretch = load_clip(bikes, FramePolicy(num_frames=2, height=32, width=96, resize="stretch", window="start"))
    assert stretch.shape == (2, 3, 32, 96)
    rand = FramePolicy(num_frames=2, height=64, width=64, crop="random", window="start")
    corners = {rand.resize_plan(640, 272, item_rng(0, 0, i))[1] for i in range(20)}
    assert len(corners) > 5 and all(0 <= x <= 87 and y == 0 for x, y in corners)


def test_policy_validation():
    for kwargs in ({"num_frames": 0}, {"stride": 2, "fps": 8}, {"stride": 0}, {"fps": -1}, {"height": 0},
                   {"resize": "pad"}, {"crop": "left"}, {"window": "end"}):
        with pytest.raises(InputError):
            FramePolicy(**kwargs)


def test_folder_dataset_items_and_skips(folder):
    root, rows = folder
    dataset = ClipFolderDataset(root, rows, policy=FramePolicy(num_frames=8, stride=2, height=32, width=32), seed=3)
    assert len(dataset) == 6 and dataset.missing == 0
    for index in range(4):
        item = dataset[index]
        assert item["pixel_values"].shape == (8, 3, 32, 32)
        assert item["caption"] == f"caption {index}" and item["key"] == rows[index].key
    # the too-short and the corrupt clip are replaced by the next usable one (deterministically) and counted
    assert dataset[4]["key"] == rows[0].key and dataset[5]["key"] == rows[0].key
    assert dataset.skipped["too_short"] == 1 and dataset.skipped["corrupt"] == 2  # index 4 passes 5 on its way
    batch = collate([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape == (2, 8, 3, 32, 32) and batch["caption"] == ["caption 0", "caption 1"]


def test_deterministic_given_seed_epoch_index(folder):
    root, rows = folder
    policy = FramePolicy(num_frames=4, height=24, width=24, crop="random", window="random")
    a = ClipFolderDataset(root, rows[:4], policy=policy, caption_dropout=0.5, seed=11)
    b = ClipFolderDataset(root, rows[:4], policy=policy, caption_dropout=0.5, seed=11)
    torch.manual_seed(0), np.random.seed(0)
    first = [a[i] for i in range(4)]
    torch.manual_seed(1), np.random.seed(1)  # global RNG state must not matter
    for i in range(4):
        assert torch.equal(first[i]["pixel_values"], b[i]["pixel_values"]) and first[i]["caption"] == b[i]["caption"]
    a.set_epoch(1)
    later = [a[i] for i in range(4)]
    assert any(not torch.equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(first, later))
    b.set_epoch(1)
    assert all(torch.equal(b[i]["pixel_values"], later[i]["pixel_values"]) for i in range(4))


def test_caption_dropout_rate(folder):
    root, rows = folder
    dataset = ClipFolderDataset(root, rows[:1], policy=FramePolicy(num_frames=2, height=8, width=8, window="start"),
                                caption_dropout=0.3, seed=0)
    dropped = 0
    for epoch in range(300):
        dataset.set_epoch(epoch)
        dropped += dataset[0]["caption"] == ""
    assert dropped / 300 == pytest.approx(0.3, abs=0.08)


def test_sidecar_captions_and_worker_counts(folder):
    root, rows = folder
    for i, row in enumerate(rows):
        if i != 3:
            (root / row.clip_name).with_suffix(".txt").write_text(f"sidecar {i}\n")
    dataset = ClipFolderDataset(root, policy=FramePolicy(num_frames=8, stride=2, height=16, width=16))
    assert len(dataset) == 5 and dataset.missing == 1  # the clip without a .txt
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (5, 8, 3, 16, 16)
    assert dataset.skipped["too_short"] == 1 and dataset.skipped["corrupt"] >= 1  # counted in the workers, seen here


def test_folder_dataset_errors(tmp_path, folder):
    root, rows = folder
    with pytest.raises(DataError, match="not found"):
        ClipFolderDataset(tmp_path / "none")
    with pytest.raises(DataError, match="no clips"):
        ClipFolderDataset(root, [parse_row({"YoutubeID": "zzzzzzzzzzz", "Start_timestamp": 0, "End_timestamp": 1,
                                            "Caption": "x"})])
    only_bad = ClipFolderDataset(root, rows[4:], policy=FramePolicy(num_frames=8), max_substitutions=1)
    with pytest.raises(DataError, match="unusable"):
        only_bad[0]
    with pytest.raises(InputError, match="dropout"):
        ClipFolderDataset(root, rows, caption_dropout=1.5)
    with pytest.raises(DataError, match="empty batch"):
        collate([])
