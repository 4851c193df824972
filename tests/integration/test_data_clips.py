"""Clip cutting: frame-accurate against decoded source frames, resizing, resampling, failures reported."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import counter_value, make_counter_video
from vidgen.data.clips import SourceIndex, clip_frame_range, cut_clip, cut_clips, scaled_size
from vidgen.data.rows import parse_row
from vidgen.errors import DataError, InputError, OutputError, VideoError
from vidgen.io.video import probe, read_frames


def row(vid, start, end, caption="c"):
    return parse_row({"YoutubeID": vid, "Start_timestamp": start, "End_timestamp": end, "Caption": caption})


@pytest.mark.parametrize("start, end", [(1.0, 2.0), (0.55, 1.25), (2.35, 2.95), (0.0, 0.8), (2.9, 3.0)])
def test_cut_is_frame_accurate(tmp_path, start, end):
    # 30 frames at 10 fps, a keyframe every 8 frames: most spans start between keyframes.
    source = make_counter_video(tmp_path / "src.mp4", num_frames=30, fps=10.0, gop=8)
    out = tmp_path / "clip.mp4"
    count = cut_clip(source, start, end, out)
    first, stop = clip_frame_range(start, end, 10.0)
    got = [counter_value(f) for f in read_frames(out)]
    want = [counter_value(f) for f in read_frames(source, list(range(first, stop)))]
    assert got == want == [i % 32 for i in range(first, stop)]
    assert count == len(got) and probe(out).fps == 10.0


def test_cut_real_video_matches_source_frames(tmp_path, bunny):
    # bigbuckbunny: 25 fps. 1.0-2.0 s is frames 25..49; compare against the source decoded at the same size.
    out = tmp_path / "clip.mp4"
    assert cut_clip(bunny, 1.0, 2.0, out, short_side=72) == 25
    clip = read_frames(out).astype(np.float32)
    info = probe(out)
    assert info.size == (128, 72) and info.num_frames == 25
    source = read_frames(bunny, list(range(23, 52)), size=(128, 72)).astype(np.float32)
    for i, frame in enumerate(clip):
        errors = [np.abs(frame - s).mean() for s in source]
        # the best-matching source frame is the expected one, give or take one frame
        assert abs(int(np.argmin(errors)) - (i + 2)) <= 1, (i, np.argmin(errors))
        assert errors[i + 2] < 6.0


def test_resample_and_resize(tmp_path):
    source = make_counter_video(tmp_path / "src.mp4", num_frames=30, fps=10.0)
    out = tmp_path / "clip.mp4"
    assert cut_clip(source, 0.0, 3.0, out, fps=5) == 15
    assert [counter_value(f) for f in read_frames(out)] == list(range(0, 30, 2))
    info = probe(out)
    assert info.fps == 5.0
    cut_clip(source, 0.0, 1.0, out, fps=20, short_side=24, overwrite=True)
    info = probe(out)
    assert (info.fps, info.size) == (20.0, (32, 24))
    assert [counter_value(f) for f in read_frames(out)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9]


def test_scaled_size_is_even():
    assert scaled_size(1280, 720, 256) == (456, 256)
    assert scaled_size(640, 272, 100) == (236, 100)
    assert scaled_size(48, 64, 33) == (34, 44)
    with pytest.raises(InputError):
        scaled_size(64, 48, 1)


def test_cut_clip_errors_leave_nothing(tmp_path):
    source = make_counter_video(tmp_path / "src.mp4", num_frames=30, fps=10.0)
    with pytest.raises(VideoError, match="starts at frame 40"):
        cut_clip(source, 4.0, 5.0, tmp_path / "a.mp4")
    with pytest.raises(VideoError, match="ends at frame 29"):
        cut_clip(source, 2.0, 5.0, tmp_path / "b.mp4")
    with pytest.raises(InputError, match="span"):
        cut_clip(source, 2.0, 1.0, tmp_path / "c.mp4")
    (tmp_path / "d.mp4").write_bytes(b"x")
    with pytest.raises(OutputError, match="exists"):
        cut_clip(source, 0.0, 1.0, tmp_path / "d.mp4")
    assert sorted(os.listdir(tmp_path)) == ["d.mp4", "src.mp4"]


def test_cut_clips_reports_missing_and_broken_sources(tmp_path, bikes):
    sources = tmp_path / "videos"
    sources.mkdir()
    make_counter_video(sources / "AAAAAAAAAAA.mp4", num_frames=40, fps=10.0)
    os.symlink(bikes, sources / "BBBBBBBBBBB.mp4")
    (sources / "EMPTYEMPTY0.mp4").write_bytes(b"")
    (sources / "TEXTTEXTTEX.mp4").write_text("this is not a video")
    whole = make_counter_video(tmp_path / "whole.mp4", num_frames=40, fps=10.0)
    (sources / "TRUNCATEDxx.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (sources / "notes.txt").write_text("ignored: not a video")
    rows = [
        row("AAAAAAAAAAA", "00:00:00.000", "00:00:01.000"), row("AAAAAAAAAAA", "00:00:02.000", "00:00:03.500"),
        row("BBBBBBBBBBB", "00:00:04.000", "00:00:05.000"), row("MISSINGxxxx", "00:00:00.000", "00:00:01.000"),
        row("MISSINGxxxx", "00:00:02.000", "00:00:03.000"), row("EMPTYEMPTY0", "00:00:00.000", "00:00:01.000"),
        row("TEXTTEXTTEX", "00:00:00.000", "00:00:01.000"), row("TRUNCATEDxx", "00:00:00.000", "00:00:01.000"),
        row("AAAAAAAAAAA", "00:00:03.500", "00:00:09.000"),  # past the end of the source
    ]
    out = tmp_path / "clips"
    report = cut_clips(rows, SourceIndex.from_folder(sources), out, workers=2)
    assert report.done == 3
    assert report.missing_sources == {"MISSINGxxxx": 2}
    failed = {f["clip"].split("_")[0]: f["reason"] for f in report.failed}
    assert set(failed) == {"EMPTYEMPTY0", "TEXTTEXTTEX", "TRUNCATEDxx", "AAAAAAAAAAA"}
    assert "empty" in failed["EMPTYEMPTY0"] and "ends at frame 39" in failed["AAAAAAAAAAA"]
    clips = sorted(p.name for p in out.iterdir())
    assert clips == ["AAAAAAAAAAA_00:00:00.000_00:00:01.000.mp4", "AAAAAAAAAAA_00:00:02.000_00:00:03.500.mp4",
                     "BBBBBBBBBBB_00:00:04.000_00:00:05.000.mp4", "clips_report.json"]  # no temporary files left
    saved = json.loads((out / "clips_report.json").read_text())
    assert saved["done"] == 3 and saved["missing_sources"]["clips"] == 2 and len(saved["failed"]) == 4
    assert probe(out / clips[2]).num_frames == 25
    again = cut_clips(rows[:3], SourceIndex.from_folder(sources), out)  # resumes: existing clips are kept
    assert (again.done, again.existing) == (0, 3)


def test_source_mapping_files(tmp_path):
    video = make_counter_video(tmp_path / "some name.mp4", num_frames=20, fps=10.0)
    (tmp_path / "map.json").write_text(json.dumps({"AAAAAAAAAAA": "some name.mp4"}))
    (tmp_path / "map.csv").write_text(f"youtube_id,path\nAAAAAAAAAAA,{video}\n")
    for name in ("map.json", "map.csv"):
        index = SourceIndex.from_mapping(tmp_path / name)
        assert index.lookup(row("AAAAAAAAAAA", 0.0, 1.0)) == video
        assert index.lookup(row("BBBBBBBBBBB", 0.0, 1.0)) is None
    (tmp_path / "bad.json").write_text(json.dumps({"../../etc/passwd": "x.mp4"}))
    with pytest.raises(DataError, match="bad entry"):
        SourceIndex.from_mapping(tmp_path / "bad.json")
    with pytest.raises(DataError, match="not found"):
        SourceIndex.from_folder(tmp_path / "nope")
    named = make_counter_video(tmp_path / "CCCCCCCCCCC_720p.mp4", num_frames=20, fps=10.0)
    path_row = parse_row({"YoutubeID": str(named), "Start_timestamp": 0, "End_timestamp": 1, "Caption": "c"})
    assert path_row.youtube_id == "CCCCCCCCCCC"
    assert SourceIndex({}).lookup(path_row) is None  # a path is a name to look for in the sources, not a place
    assert SourceIndex.from_folder(tmp_path).lookup(path_row) == named


@pytest.mark.parametrize("given", ["../../elsewhere/CCCCCCCCCCC_720p.mp4", "{outside}/CCCCCCCCCCC_720p.mp4",
                                   "..\\..\\elsewhere\\CCCCCCCCCCC_720p.mp4"])
def test_a_path_in_place_of_the_id_never_reads_outside_the_sources(tmp_path, monkeypatch, given):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_counter_video(outside / "CCCCCCCCCCC_720p.mp4", num_frames=20, fps=10.0)
    (tmp_path / "work" / "here").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "here")  # where "../../elsewhere" resolves to the file above
    sources = tmp_path / "sources"
    sources.mkdir()
    path_row = parse_row({"YoutubeID": given.format(outside=outside), "Start_timestamp": 0, "End_timestamp": 1, "Caption": "c"})
    report = cut_clips([path_row], SourceIndex.from_folder(sources), tmp_path / "clips")
    assert (report.done, report.missing_sources) == (0, {"CCCCCCCCCCC": 1})  # reported as a missing source
    assert not list((tmp_path / "clips").glob("*.mp4"))
    os.symlink(outside / "CCCCCCCCCCC_720p.mp4", sources / "CCCCCCCCCCC_720p.mp4")  # the same name inside --sources
    assert cut_clips([path_row], SourceIndex.from_folder(sources), tmp_path / "clips").done == 1
