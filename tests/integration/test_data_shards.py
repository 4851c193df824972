"""WebDataset shards: writing, round trip, bad members, node/worker splits, fsspec URLs, video2dataset's layout."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
import torch

from tests.conftest import counter_value, make_counter_video
from vidgen.data.datasets import ShardVideoDataset, collate
from vidgen.data.frames import FramePolicy
from vidgen.data.rows import parse_row
from vidgen.data.shards import expand_urls, iter_samples, parse_size, write_shards
from vidgen.errors import DataError, InputError, OutputError

POLICY = FramePolicy(num_frames=4, stride=2, height=16, width=16, window="start")


def make_rows(n, vid="AAAAAAAAAAA"):
    return [parse_row({"YoutubeID": vid, "Start_timestamp": float(2 * i), "End_timestamp": float(2 * i + 1),
                       "Caption": f"caption {i}", "UMT_Score": 0.3}) for i in range(n)]


@pytest.fixture
def clip_folder(tmp_path):
    """Five counter clips named as rows name them (12 frames each at 10 fps)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    rows = make_rows(5)
    for row in rows:
        make_counter_video(folder / row.clip_name, num_frames=12, fps=10.0, size=(32, 24))
    return folder, rows


def raise_all(exc):
    raise exc


def test_round_trip(tmp_path, clip_folder):
    folder, rows = clip_folder
    report = write_shards(rows, folder, tmp_path / "shards", max_count=2)
    assert [s["samples"] for s in report.shards] == [2, 2, 1]
    urls = expand_urls(tmp_path / "shards")
    assert [os.path.basename(u) for u in urls] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    samples = list(iter_samples(urls, raise_all))
    assert [s["__key__"] for s in samples] == [r.key for r in rows]
    for sample, row in zip(samples, rows):
        assert sample["mp4"] == (folder / row.clip_name).read_bytes()
        assert sample["txt"].decode() == row.caption
        assert parse_row(json.loads(sample["json"])) == row
    index = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert index["samples"] == 5 and len(index["shards"]) == 3


def test_size_target(tmp_path, clip_folder):
    folder, rows = clip_folder
    one = (folder / rows[0].clip_name).stat().st_size
    report = write_shards(rows, folder, tmp_path / "shards", max_size=int(one * 2.5))
    assert [s["samples"] for s in report.shards] == [3, 2]  # a shard closes once it reaches the target
    assert parse_size("1.5GB") == 1_500_000_000 and parse_size("500MiB") == 500_000_000 and parse_size(2e9) == 2_000_000_000
    with pytest.raises(InputError):
        parse_size("lots")


def test_missing_and_broken_clips_are_skipped(tmp_path, clip_folder):
    folder, rows = clip_folder
    (folder / rows[1].clip_name).unlink()
    (folder / rows[2].clip_name).write_bytes(b"")
    good = (folder / rows[3].clip_name).read_bytes()
    (folder / rows[3].clip_name).write_bytes(good[: len(good) // 2])
    report = write_shards(rows, folder, tmp_path / "shards")
    assert report.samples == 2 and report.missing == [rows[1].clip_name]
    assert [b["clip"] for b in report.bad] == [rows[2].clip_name, rows[3].clip_name]
    assert sorted(os.listdir(tmp_path / "shards")) == ["shard-000000.tar", "shards.json"]


def test_existing_shards_need_overwrite(tmp_path, clip_folder):
    folder, rows = clip_folder
    write_shards(rows, folder, tmp_path / "shards", max_count=1)
    with pytest.raises(OutputError, match="5 shards"):
        write_shards(rows, folder, tmp_path / "shards")
    write_shards(rows[:2], folder, tmp_path / "shards", max_count=1, overwrite=True)
    assert sorted(os.listdir(tmp_path / "shards")) == ["shard-000000.tar", "shard-000001.tar", "shards.json"]


def test_interrupted_write_leaves_no_partial_shard(tmp_path, clip_folder):
    folder, rows = clip_folder

    def rows_then_crash():
        yield from rows[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(rows_then_crash(), folder, tmp_path / "shards", max_count=2)
    # The complete shard only, listed in the index, which says the run did not finish.
    assert sorted(os.listdir(tmp_path / "shards")) == ["shard-000000.tar", "shards.json"]
    index = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert [s["name"] for s in index["shards"]] == ["shard-000000.tar"] and index["complete"] is False


def test_dataset_yields_the_asked_shapes_and_frames(tmp_path, clip_folder):
    folder, rows = clip_folder
    write_shards(rows, folder, tmp_path / "shards", max_count=2)
    dataset = ShardVideoDataset(tmp_path / "shards", policy=POLICY, shuffle_shards=False)
    items = list(dataset)
    assert [i["key"] for i in items] == [r.key for r in rows]
    for item in items:
        assert item["pixel_values"].shape == (4, 3, 16, 16) and item["pixel_values"].dtype == torch.float32
        values = [counter_value(((f.permute(1, 2, 0).numpy() + 1) * 127.5).round()) for f in item["pixel_values"]]
        assert values == [0, 2, 4, 6]
    assert dataset.skipped == {"corrupt": 0, "too_short": 0, "missing_member": 0, "unreadable_shard": 0}


def test_dataset_skips_bad_members_and_damaged_shards(tmp_path, clip_folder):
    folder, rows = clip_folder
    good = (folder / rows[0].clip_name).read_bytes()
    shards = tmp_path / "shards"
    shards.mkdir()

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(shards / "a.tar", "w") as tar:
        add(tar, "k1.mp4", good), add(tar, "k1.txt", b"fine")
        add(tar, "k2.txt", b"no video member")
        add(tar, "k3.mp4", good)                       # no caption member
        add(tar, "k4.mp4", b"not a video"), add(tar, "k4.txt", b"corrupt")
        add(tar, "k5.mp4", good), add(tar, "k5.json", json.dumps({"Caption": "caption from json"}).encode())
    short = make_counter_video(tmp_path / "short.mp4", num_frames=3, fps=10.0, size=(32, 24)).read_bytes()
    with tarfile.open(shards / "b.tar", "w") as tar:
        add(tar, "k6.mp4", short), add(tar, "k6.txt", b"too short")
        for i in range(3):
            add(tar, f"k7{i}.mp4", good), add(tar, f"k7{i}.txt", b"cut off")
    with tarfile.open(shards / "b.tar") as tar:
        cut = tar.getmember("k71.mp4").offset_data + len(good) // 2
    with open(shards / "b.tar", "r+b") as f:
        f.truncate(cut)  # the shard ends in the middle of k71's video
    dataset = ShardVideoDataset(shards, policy=POLICY, shuffle_shards=False)
    items = list(dataset)
    assert [(i["key"], i["caption"]) for i in items] == [("k1", "fine"), ("k5", "caption from json"), ("k70", "cut off")]
    skipped = dataset.skipped
    assert skipped["missing_member"] == 2 and skipped["corrupt"] == 1 and skipped["too_short"] == 1
    assert skipped["unreadable_shard"] >= 1


def test_split_by_node_and_worker(tmp_path, clip_folder, monkeypatch):
    folder, rows = clip_folder
    write_shards(rows, folder, tmp_path / "shards", max_count=1)
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dataset = ShardVideoDataset(tmp_path / "shards", policy=POLICY, seed=3)
        seen.append({s["__key__"] for s in dataset.raw_samples()})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {r.key for r in rows}
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    dataset = ShardVideoDataset(tmp_path / "shards", policy=POLICY, shuffle_buffer=8, seed=1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(r.key for r in rows)  # each sample once across the two workers
    dataset.set_epoch(1)
    orders = {tuple(dataset.shard_order()) for _ in range(2)}
    assert len(orders) == 1  # the order is a function of (seed, epoch)


def test_fsspec_urls(tmp_path, clip_folder):
    import fsspec

    folder, rows = clip_folder
    write_shards(rows[:2], folder, tmp_path / "shards")
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/shard-000000.tar", (tmp_path / "shards" / "shard-000000.tar").read_bytes())
    dataset = ShardVideoDataset("memory://bucket/shard-000000.tar", policy=POLICY)
    assert sorted(i["key"] for i in dataset) == sorted(r.key for r in rows[:2])
    assert expand_urls(str(tmp_path / "shards" / "shard-{000000..000000}.tar")) == [str(tmp_path / "shards" / "shard-000000.tar")]


def test_reads_video2dataset_layout(tmp_path, clip_folder):
    """video2dataset writes 00000.tar with {shard:05d}{index:04d} keys, plus a parquet and stats per shard."""
    folder, rows = clip_folder
    out = tmp_path / "v2d"
    out.mkdir()
    with tarfile.open(out / "00000.tar", "w") as tar:
        for i, row in enumerate(rows[:2]):
            key = f"00000{i:04d}"
            for ext, data in (("mp4", (folder / row.clip_name).read_bytes()), ("txt", row.caption.encode()),
                              ("json", json.dumps({"url": "https://www.youtube.com/watch?v=" + row.youtube_id, "key": key,
                                                   "status": "success", "caption": row.caption, "clips": [[0.0, 1.2]]}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (out / "00000.parquet").write_bytes(b"PAR1")
    (out / "00000_stats.json").write_text("{}")
    items = list(ShardVideoDataset(out, policy=POLICY))
    assert sorted((i["key"], i["caption"]) for i in items) == [("000000000", "caption 0"), ("000000001", "caption 1")]


def test_expand_urls_errors(tmp_path):
    with pytest.raises(DataError, match="no .tar shards"):
        expand_urls(tmp_path)
    with pytest.raises(DataError, match="not found"):
        expand_urls(tmp_path / "x.tar")
    with pytest.raises(DataError, match="match"):
        expand_urls(str(tmp_path / "*.tar"))


def test_repeat_streams_past_the_end(tmp_path, clip_folder):
    import itertools

    folder, rows = clip_folder
    write_shards(rows[:2], folder, tmp_path / "shards", max_count=1)
    dataset = ShardVideoDataset(tmp_path / "shards", policy=POLICY, repeat=True)
    keys = [s["__key__"] for s in itertools.islice(dataset.raw_samples(), 7)]
    assert len(keys) == 7 and set(keys) == {rows[0].key, rows[1].key}
    assert {tuple(dataset.shard_order(c)) for c in range(8)} == {tuple(sorted(dataset.urls)), tuple(sorted(dataset.urls))[::-1]}
