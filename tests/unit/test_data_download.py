"""yt-dlp hand-off up to the network boundary (a stand-in yt-dlp on PATH), and video2dataset's input file."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from tests.conftest import make_counter_video
from vidgen.data.download import DownloadReport, download_video, download_videos, find_yt_dlp, write_video2dataset_input, yt_dlp_command
from vidgen.data.readers import iter_rows
from vidgen.data.rows import RowError, parse_row
from vidgen.errors import InputError

STAND_IN = """#!{python}
# Stand-in for yt-dlp: records its argv, then acts like a download (or a failure) without any network.
import json, os, shutil, sys
argv = sys.argv[1:]
with open(os.environ["YTDLP_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\\n")
template = argv[argv.index("-o") + 1]
url = argv[argv.index("--") + 1]
vid = url.rsplit("v=", 1)[1]
target = template.replace("%(ext)s", "mp4")
if vid.startswith("FAIL"):
    open(target + ".part", "wb").write(b"half a video")
    sys.stderr.write("ERROR: [youtube] " + vid + ": Video unavailable\\n")
    sys.exit(1)
shutil.copyfile(os.environ["YTDLP_VIDEO"], target)
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A fake yt-dlp first on PATH; returns the log of its invocations."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "yt-dlp"
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("YTDLP_LOG", str(log))
    monkeypatch.setenv("YTDLP_VIDEO", str(make_counter_video(tmp_path / "small.mp4", num_frames=10)))
    return log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_downloads_each_video_once_and_reports(tmp_path, stand_in):
    rows_file = tmp_path / "rows.jsonl"
    records = [
        {"YoutubeID": "AAAAAAAAAAA", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000", "Caption": "a"},
        {"YoutubeID": "AAAAAAAAAAA", "Start_timestamp": "00:00:03.000", "End_timestamp": "00:00:04.000", "Caption": "b"},
        {"YoutubeID": "-dashfirst_", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000", "Caption": "c"},
        {"YoutubeID": "FAILxxxxxxx", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000", "Caption": "d"},
        {"YoutubeID": "x; rm -rf ~", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000", "Caption": "e"},
        {"YoutubeID": "$(touch pwn", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000", "Caption": "f"},
    ]
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "videos"
    report = DownloadReport()
    download_videos(iter_rows(rows_file, report=report.rows), out, workers=2, report=report)
    assert sorted(report.done) == ["-dashfirst_", "AAAAAAAAAAA"]
    assert [f["youtube_id"] for f in report.failed] == ["FAILxxxxxxx"]
    assert "status 1" in report.failed[0]["reason"] and "Video unavailable" in report.failed[0]["reason"]
    assert report.rows.bad == 2  # the unsafe IDs stop at the reader
    # argv: a list (no shell), the URL after "--" so "-dashfirst_" is not an option; unsafe IDs never ran
    argvs = calls(stand_in)
    assert sorted(a[-1].rsplit("=", 1)[1] for a in argvs) == ["-dashfirst_", "AAAAAAAAAAA", "FAILxxxxxxx"]
    for argv in argvs:
        assert argv[-2] == "--" and argv[-1].startswith("https://www.youtube.com/watch?v=")
    assert not (tmp_path / "pwn").exists()
    # finished files only: no .part, no temporary folders
    assert sorted(os.listdir(out)) == ["-dashfirst_.mp4", "AAAAAAAAAAA.mp4", "download_report.json"]
    saved = json.loads((out / "download_report.json").read_text())
    assert saved["done"] == 2 and saved["rows"]["malformed"] == 2
    again = download_videos([parse_row(records[0])], out)
    assert again.existing == 1 and len(calls(stand_in)) == 3  # already there: yt-dlp not run again


def test_unsafe_id_never_reaches_a_subprocess(tmp_path, stand_in):
    result = download_video(find_yt_dlp(), "a;b`c$(d)e&", tmp_path)
    assert result.status == "failed" and "YouTube ID" in result.reason
    assert calls(stand_in) == []
    with pytest.raises(RowError):
        yt_dlp_command("yt-dlp", "../../etc/xx", tmp_path)


def test_percent_in_folder_is_escaped(tmp_path):
    argv = yt_dlp_command("yt-dlp", "AAAAAAAAAAA", tmp_path / "100%")
    assert argv[argv.index("-o") + 1] == str(tmp_path / "100%%" / "AAAAAAAAAAA.%(ext)s")


def test_missing_yt_dlp(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="yt-dlp not found"):
        download_videos([], tmp_path / "out")


def test_video2dataset_input(tmp_path):
    import pyarrow.parquet as pq

    rows = [parse_row({"YoutubeID": "AAAAAAAAAAA", "Start_timestamp": "00:00:01.500", "End_timestamp": "00:00:04.000",
                       "Caption": "a cat", "UMT_Score": 0.4})]
    assert write_video2dataset_input(rows, tmp_path / "v2d.parquet") == 1
    table = pq.read_table(tmp_path / "v2d.parquet").to_pylist()
    assert table == [{"url": "https://www.youtube.com/watch?v=AAAAAAAAAAA", "caption": "a cat", "clips": [[1.5, 4.0]],
                      "YoutubeID": "AAAAAAAAAAA", "Start_timestamp": "00:00:01.500", "End_timestamp": "00:00:04.000",
                      "Aesthetic_Score": None, "UMT_Score": 0.4}]
    with pytest.raises(InputError, match="parquet"):
        write_video2dataset_input(rows, tmp_path / "v2d.csv")
