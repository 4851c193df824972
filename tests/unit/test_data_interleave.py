"""Interleaved items: temporal order, clip drop rate, ASR and two-video variants, the jsonl shape."""

from __future__ import annotations

import json

import pytest

from vidgen.data.interleave import InterleaveReport, build_items, read_items, write_items
from vidgen.data.rows import parse_row
from vidgen.errors import DataError, InputError


def make_row(vid, start, caption, **extra):
    return parse_row({"YoutubeID": vid, "Start_timestamp": start, "End_timestamp": start + 1.5, "Caption": caption, **extra})


def test_items_follow_start_time_with_no_drop():
    rows = [make_row("BBBBBBBBBBB", 9.0, "b2"), make_row("AAAAAAAAAAA", 5.0, "a2"), make_row("AAAAAAAAAAA", 1.0, "a1"),
            make_row("BBBBBBBBBBB", 2.0, "b1"), make_row("AAAAAAAAAAA", 20.0, "a3"), make_row("CCCCCCCCCCC", 1.0, "lonely")]
    report = InterleaveReport()
    items = list(build_items(rows, drop=0.0, report=report))  # videos in first-seen order: B, then A
    assert items[1] == [
        {"video": "AAAAAAAAAAA_00:00:01.000_00:00:02.500.mp4", "youtube_id": "AAAAAAAAAAA", "start": 1.0, "end": 2.5},
        {"text": "a1"},
        {"video": "AAAAAAAAAAA_00:00:05.000_00:00:06.500.mp4", "youtube_id": "AAAAAAAAAAA", "start": 5.0, "end": 6.5},
        {"text": "a2"},
        {"video": "AAAAAAAAAAA_00:00:20.000_00:00:21.500.mp4", "youtube_id": "AAAAAAAAAAA", "start": 20.0, "end": 21.5},
        {"text": "a3"},
    ]
    assert [s.get("text") for s in items[0] if "text" in s] == ["b1", "b2"]
    assert len(items) == 2 and report.videos_too_few_clips == 1


def test_drop_rate_and_captions_kept():
    rows = [make_row(f"vid{v:08d}", float(i * 3), f"c{v}-{i}") for v in range(200) for i in range(10)]
    report = InterleaveReport()
    items = list(build_items(rows, seed=7, report=report))
    clips = sum(1 for item in items for s in item if "video" in s)
    texts = sum(1 for item in items for s in item if "text" in s)
    assert texts == 2000  # every caption stays
    assert clips == report.clips_kept and report.clips_kept + report.clips_dropped == 2000
    assert clips / 2000 == pytest.approx(0.7, abs=0.03)  # p = 0.3 dropped
    for item in items:
        # a kept clip always comes right before its own caption
        for a, b in zip(item, item[1:]):
            if "video" in a:
                assert b["text"] == f"c{int(a['youtube_id'][3:])}-{int(a['start'] // 3)}"
    assert items == list(build_items(rows, seed=7)) and items != list(build_items(rows, seed=8))


def test_every_item_keeps_a_clip():
    rows = [make_row("AAAAAAAAAAA", float(i), "x") for i in range(2)]
    for seed in range(50):
        item = next(build_items(rows, drop=0.99, seed=seed))
        assert sum("video" in s for s in item) == 1


def test_asr_variant():
    rows = [make_row("AAAAAAAAAAA", 1.0, "a1", ASR="hello there"), make_row("AAAAAAAAAAA", 4.0, "a2")]
    item = next(build_items(rows, variant="asr", drop=0.0))
    assert [s for s in item if "text" in s] == [{"text": "a1"}, {"text": "hello there", "kind": "asr"}, {"text": "a2"}]
    assert all("kind" not in s for s in next(build_items(rows, drop=0.0)))  # plain variant leaves ASR out


def test_concat_pairs_two_different_videos():
    rows = [make_row(f"vid{v:08d}", float(i), f"c{v}") for v in range(5) for i in range(3)]
    report = InterleaveReport()
    items = list(build_items(rows, variant="concat", drop=0.0, seed=1, report=report))
    assert len(items) == 2 and report.unpaired == 1
    for item in items:
        videos = [s["youtube_id"] for s in item if "video" in s]
        assert len(videos) == 6 and len(set(videos)) == 2
        assert videos[:3] == [videos[0]] * 3  # one video's clips, then the other's, each in time order


def test_max_clips_windows_and_bad_arguments():
    rows = [make_row("AAAAAAAAAAA", float(i * 2), f"c{i}") for i in range(7)]
    items = list(build_items(rows, drop=0.0, max_clips=3))
    assert [sum("video" in s for s in item) for item in items] == [3, 3]  # the last single clip is below min_clips
    for kwargs in ({"variant": "story"}, {"drop": 1.0}, {"min_clips": 0}, {"min_clips": 3, "max_clips": 2}):
        with pytest.raises(InputError):
            list(build_items(rows, **kwargs))


def test_jsonl_round_trip(tmp_path):
    rows = [make_row("AAAAAAAAAAA", float(i), "x") for i in range(3)]
    items = list(build_items(rows, clip_dir="clips"))
    assert write_items(items, tmp_path / "icl.jsonl") == 1
    assert list(read_items(tmp_path / "icl.jsonl")) == items
    assert items[0][0]["video"].startswith("clips/")
    line = json.loads((tmp_path / "icl.jsonl").read_text().splitlines()[0])
    assert isinstance(line, list)
    (tmp_path / "bad.jsonl").write_text('{"video": "x"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        list(read_items(tmp_path / "bad.jsonl"))
