"""``vidgen data``: each action end to end through ``main([...])``, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import make_counter_video
from vidgen.cli.main import main
from vidgen.data.readers import read_rows


def write_rows_file(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def rec(vid, start, end, caption="a red circle slides to the left", aes=4.5, umt=0.35):
    return {"YoutubeID": vid, "Start_timestamp": start, "End_timestamp": end, "Caption": caption,
            "Aesthetic_Score": aes, "UMT_Score": umt}


@pytest.fixture
def world(tmp_path):
    """Toy-world-shaped data: rows with several segments per video and {YoutubeID}.mp4 sources."""
    sources = tmp_path / "videos"
    sources.mkdir()
    for vid in ("AAAAAAAAAAA", "BBBBBBBBBBB"):
        make_counter_video(sources / f"{vid}.mp4", num_frames=40, fps=10.0, size=(32, 32))
    rows = write_rows_file(tmp_path / "rows.jsonl", [
        rec("AAAAAAAAAAA", "00:00:00.000", "00:00:01.000", aes=3.5),
        rec("AAAAAAAAAAA", "00:00:01.000", "00:00:02.000", caption="a red circle moves up"),
        rec("AAAAAAAAAAA", "00:00:02.000", "00:00:03.000", umt=0.4),
        rec("BBBBBBBBBBB", "00:00:00.500", "00:00:02.500", caption="a blue square moving down"),
        rec("BBBBBBBBBBB", "00:00:02.500", "00:00:03.900"),
        "{oops",
    ])
    return tmp_path, rows, sources


def test_pipeline_end_to_end(world, capsys):
    tmp, rows, sources = world
    assert main(["data", "filter", str(rows), "-o", str(tmp / "aes.jsonl"), "--min-aesthetic", "4",
                 "--report", str(tmp / "filter.json")]) == 0
    out = capsys.readouterr().out
    assert "kept 4 of 5 valid rows" in out and "malformed row at line 6" in out
    assert json.loads((tmp / "filter.json").read_text())["dropped"] == {"aesthetic score": 1}

    assert main(["data", "sample", str(tmp / "aes.jsonl"), "-o", str(tmp / "s.csv"), "-n", "3"]) == 0
    assert len(read_rows(tmp / "s.csv")) == 3

    assert main(["data", "stats", str(rows), "--plot", str(tmp / "s.png"), "--report", str(tmp / "s.json")]) == 0
    assert json.loads((tmp / "s.json").read_text())["rows"]["valid"] == 5 and (tmp / "s.png").stat().st_size > 1000

    assert main(["data", "clips", str(tmp / "aes.jsonl"), "--sources", str(sources), "-o", str(tmp / "clips"),
                 "--workers", "2", "--short-side", "16", "--fps", "5"]) == 0
    assert "4 clips cut" in capsys.readouterr().out

    assert main(["data", "shard", str(tmp / "aes.jsonl"), "--clips", str(tmp / "clips"), "-o", str(tmp / "shards"),
                 "--max-count", "2"]) == 0
    assert sorted(os.listdir(tmp / "shards")) == ["shard-000000.tar", "shard-000001.tar", "shards.json"]

    assert main(["data", "interleave", str(rows), "-o", str(tmp / "icl.jsonl"), "--drop", "0", "--variant", "concat"]) == 0
    items = [json.loads(line) for line in (tmp / "icl.jsonl").read_text().splitlines()]
    assert len(items) == 1 and sum("video" in s for s in items[0]) == 5

    assert main(["data", "download", str(rows), "--video2dataset", str(tmp / "v2d.parquet")]) == 0
    assert "video2dataset --url_list" in capsys.readouterr().out


@pytest.mark.slow
def test_cache_command(world, tiny_motion_model, capsys):
    from vidgen.data.cache import CachedLatentDataset

    tmp, rows, sources = world
    assert main(["data", "clips", str(rows), "--sources", str(sources), "-o", str(tmp / "clips")]) == 0
    assert main(["data", "shard", str(rows), "--clips", str(tmp / "clips"), "-o", str(tmp / "shards")]) == 0
    assert main(["data", "cache", str(tmp / "shards"), "-o", str(tmp / "cache"), "--model", str(tiny_motion_model),
                 "--frames", "4", "--size", "16", "--device", "cpu"]) == 0
    assert "cached 5 clips in 1 shards" in capsys.readouterr().out
    assert CachedLatentDataset(tmp / "cache")[0]["latents"].shape == (4, 4, 8, 8)
    assert main(["data", "cache", str(tmp / "clips"), "--rows", str(rows), "-o", str(tmp / "cache2"),
                 "--vae", str(tiny_motion_model / "vae"), "--text-encoder", str(tiny_motion_model / "text_encoder"),
                 "--tokenizer", str(tiny_motion_model / "tokenizer"), "--frames", "4", "--size", "16x8"]) == 0
    assert CachedLatentDataset(tmp / "cache2")[0]["latents"].shape == (4, 4, 8, 4)


@pytest.mark.parametrize("argv, message", [
    (["data"], "choose an action"),
    (["data", "filter", "{tmp}/missing.jsonl", "-o", "{tmp}/o.jsonl"], "rows file not found"),
    (["data", "filter", "{rows}", "-o", "{tmp}/o.jsonl", "--strict"], "rows.jsonl:6: not valid JSON"),
    (["data", "filter", "{rows}", "-o", "{rows}"], "exists (pass --overwrite"),
    (["data", "filter", "{rows}", "-o", "{tmp}/o.jsonl", "--umt-top", "30"], "--umt-top: must be a finite number > 0 and <= 1"),
    (["data", "filter", "{rows}", "-o", "{tmp}/o.txt"], "cannot tell the row format"),
    (["data", "sample", "{rows}", "-o", "{tmp}/o.jsonl", "-n", "-3"], "-n: must be an integer >= 0, got -3"),
    (["data", "clips", "{rows}", "--sources", "{tmp}/nowhere", "-o", "{tmp}/c"], "source video folder not found"),
    (["data", "clips", "{rows}", "--sources", "{tmp}/videos", "-o", "{tmp}/c", "--workers", "0"], "workers"),
    (["data", "shard", "{rows}", "--clips", "{tmp}/videos", "-o", "{tmp}/s", "--max-size", "huge"], "cannot read size"),
    (["data", "download", "{rows}"], "give --out DIR"),
    (["data", "download", "{rows}", "-o", "{tmp}/dl", "--yt-dlp", "{tmp}/no-such-yt-dlp"], "yt-dlp not found"),
    (["data", "interleave", "{rows}", "-o", "{tmp}/i.jsonl", "--drop", "1"], "drop probability"),
    (["data", "cache", "{tmp}/videos", "-o", "{tmp}/c", "--size", "big"], "size 'big'"),
    (["data", "cache", "{tmp}/videos", "-o", "{tmp}/c", "--size", "16"], "no clips with captions"),
])
def test_errors_are_one_line(world, capsys, argv, message):
    tmp, rows, _ = world
    argv = [a.format(tmp=tmp, rows=rows) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_nothing_written_when_strict_fails(world):
    tmp, rows, _ = world
    assert main(["data", "sample", str(rows), "-o", str(tmp / "o.jsonl"), "-n", "2", "--strict"]) == 2
    assert not (tmp / "o.jsonl").exists() and not [p for p in os.listdir(tmp) if p.startswith(".")]
