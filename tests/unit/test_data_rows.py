"""InternVid rows: exact timestamps, validation, streamed readers and atomic writers."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from vidgen.data.readers import RowReport, RowWriter, iter_rows, read_rows, row_format, write_rows
from vidgen.data.rows import Row, RowError, format_timestamp, parse_row, parse_timestamp
from vidgen.errors import DataError, OutputError, TextEncodingError


def record(vid="qJrOyggIB-w", start="00:07:33.689", end="00:07:51.085", caption="a screen shot of heroes", **extra):
    return {"YoutubeID": vid, "Start_timestamp": start, "End_timestamp": end, "Caption": caption,
            "Aesthetic_Score": 4.29296875, "UMT_Score": 0.4501953125, **extra}


def write_jsonl(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("text, seconds", [
    ("00:07:33.689", 453.689), ("00:00:00.000", 0.0), ("01:02:03.5", 3723.5), ("10:00:00", 36000.0),
    ("123:00:00.001", 442800.001), ("12.25", 12.25), (7, 7.0), (1.5, 1.5),
])
def test_timestamps_parse_exactly(text, seconds):
    assert parse_timestamp(text) == seconds  # exact float equality: decimal parsing, no drift


def test_timestamps_round_trip_text():
    for text in ("00:07:33.689", "00:00:00.001", "23:59:59.999", "100:00:00.000"):
        assert format_timestamp(parse_timestamp(text)) == text


@pytest.mark.parametrize("bad", ["7:33", "00:61:00.000", "00:00:75.000", "abc", "", "00:00:01,5", None, True, -1.0,
                                 float("nan"), "-00:00:01.000", [1]])
def test_bad_timestamps_raise(bad):
    with pytest.raises(RowError, match="timestamp"):
        parse_timestamp(bad)


def test_parse_row_fields_and_extras():
    row = parse_row(record(Language="en", ASR="hello"))
    assert row.youtube_id == "qJrOyggIB-w"
    assert (row.start, row.end) == (453.689, 471.085)
    assert row.duration == pytest.approx(17.396)
    assert row.aesthetic_score == 4.29296875 and row.umt_score == 0.4501953125
    assert row.extra == {"Language": "en", "ASR": "hello"}
    assert row.clip_name == "qJrOyggIB-w_00:07:33.689_00:07:51.085.mp4"
    assert row.key == "qJrOyggIB-w_453689_471085" and "." not in row.key
    assert parse_row(row.to_record()) == row


def test_parse_row_snake_case_and_missing_scores():
    row = parse_row({"youtube_id": "abcdefghijk", "start": 1.0, "end": "00:00:02.000", "caption": "x",
                     "umt_score": float("nan"), "aesthetic_score": ""})
    assert row.start == 1.0 and row.end == 2.0 and row.umt_score is None and row.aesthetic_score is None
    assert "UMT_Score" not in row.to_record()


def test_path_in_place_of_id_keeps_the_path():
    row = parse_row(record(vid="/data/videos/qJrOyggIB-w_480p.mp4"))
    assert row.youtube_id == "qJrOyggIB-w"
    assert row.extra["video_path"] == "/data/videos/qJrOyggIB-w_480p.mp4"


@pytest.mark.parametrize("rec, message", [
    ({"YoutubeID": "qJrOyggIB-w", "Caption": "x"}, "missing fields Start_timestamp, End_timestamp"),
    (record(end="00:07:33.000"), "is not after start"),
    (record(end="00:07:33.689"), "is not after start"),
    (record(start="7 minutes"), "timestamp"),
    (record(vid="short"), "not 11 characters"),
    (record(vid="abc;rm -rf/"), "not 11 characters"),
    (record(vid="qJrOyggIB-w1"), "not 11 characters"),
    (record(vid="$(reboot)ab"), "not 11 characters"),
    (record(vid=12345678901), "not 11 characters"),
    (record(caption=None), "Caption None is not text"),
    (record(Aesthetic_Score="high"), "Aesthetic_Score 'high' is not a number"),
    ([1, 2], "expected an object"),
])
def test_bad_rows_name_the_problem(rec, message):
    with pytest.raises(RowError, match=message):
        parse_row(rec)


def test_jsonl_reader_skips_and_reports_line_numbers(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [
        record(), "", "{not json", record(vid="bad"), record(start="00:00:05.000", end="00:00:04.000"),
        record(caption="ok"), {"YoutubeID": "qJrOyggIB-w"},
    ])
    report = RowReport()
    rows = list(iter_rows(path, report=report))
    assert [r.caption for r in rows] == ["a screen shot of heroes", "ok"]
    assert (report.read, report.valid, report.bad) == (6, 2, 4)
    assert [line for line, _ in report.problems] == [3, 4, 5, 7]
    assert "not valid JSON" in report.problems[0][1]


def test_strict_stops_with_the_line_number(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [record(), record(vid="bad")])
    with pytest.raises(RowError, match=r"rows.jsonl:2: YoutubeID 'bad'"):
        list(iter_rows(path, strict=True))


def test_csv_reader_with_ragged_lines(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(
        "YoutubeID,Start_timestamp,End_timestamp,Caption,UMT_Score\n"
        "qJrOyggIB-w,00:00:01.000,00:00:02.500,\"a cat, sleeping\",0.4\n"
        "qJrOyggIB-w,00:00:03.000\n"
        "qJrOyggIB-w,00:00:03.000,00:00:04.000,x,0.3,extra\n"
        "abcdefghijk,00:00:03.000,00:00:04.000,y,\n"
    )
    report = RowReport()
    rows = read_rows(path, report=report)
    assert [(r.caption, r.umt_score) for r in rows] == [("a cat, sleeping", 0.4), ("y", None)]
    assert [line for line, _ in report.problems] == [3, 4]
    assert "missing fields End_timestamp, Caption" in report.problems[0][1]


def test_formats_round_trip(tmp_path):
    rows = [parse_row(record(caption=f"clip {i}", start=f"00:00:{i:02d}.125", end=f"00:00:{i + 1:02d}.250", lang="en"))
            for i in range(5)]
    for name in ("r.jsonl", "r.csv", "r.parquet", "r.jsonl.gz", "r.csv.gz"):
        assert write_rows(tmp_path / name, rows) == 5
        back = read_rows(tmp_path / name)
        assert back == rows, name
    with gzip.open(tmp_path / "r.jsonl.gz", "rt") as f:
        assert json.loads(f.readline())["Start_timestamp"] == "00:00:00.125"


def test_parquet_reports_row_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([record(), record(vid="bad!bad!bad"), record(end="00:00:00.100")])
    pq.write_table(table, tmp_path / "r.parquet")
    report = RowReport()
    assert len(read_rows(tmp_path / "r.parquet", report=report)) == 1
    assert [line for line, _ in report.problems] == [2, 3]


def test_writer_leaves_nothing_on_error_and_refuses_to_overwrite(tmp_path):
    rows = [parse_row(record()), parse_row(record(Language="en"))]
    with pytest.raises(DataError, match="'Language'"):
        write_rows(tmp_path / "out.csv", rows)  # CSV fixes its columns from the first row
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        with RowWriter(tmp_path / "out.jsonl") as writer:
            writer.write(rows[0])
            raise ValueError("interrupted")
    assert os.listdir(tmp_path) == []
    write_rows(tmp_path / "out.jsonl", rows)
    with pytest.raises(OutputError, match="exists"):
        write_rows(tmp_path / "out.jsonl", rows)
    write_rows(tmp_path / "out.jsonl", rows[:1], overwrite=True)
    assert len(read_rows(tmp_path / "out.jsonl")) == 1


def test_unreadable_inputs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(iter_rows(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="row format"):
        row_format("rows.txt")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(DataError, match="not UTF-8"):
        list(iter_rows(tmp_path / "bin.jsonl"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read parquet"):
        list(iter_rows(tmp_path / "bad.parquet"))


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl", "r.csv.gz"])
def test_a_byte_order_mark_loses_no_row(tmp_path, name):
    """Spreadsheet programs start UTF-8 CSV files with a byte-order mark; it once renamed the first column."""
    rows = [parse_row(record(caption=f"clip {i} é")) for i in range(3)]
    plain = tmp_path / ("plain" + name[1:])
    write_rows(plain, rows)
    data = b"\xef\xbb\xbf" + (gzip.decompress(plain.read_bytes()) if name.endswith(".gz") else plain.read_bytes())
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    report = RowReport()
    back = read_rows(tmp_path / name, report=report)
    assert (report.valid, report.bad) == (3, 0)
    assert [r.caption for r in back] == [r.caption for r in rows]


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl.gz"])
def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path, name):
    good = "".join(json.dumps(record(caption=f"clip {i}")) + "\n" for i in range(400)).encode()  # past one read chunk
    if name.endswith(".csv"):
        good = b"YoutubeID,Start_timestamp,End_timestamp,Caption\n" + b"qJrOyggIB-w,1,2,caf\xc3\xa9\n" * 400
    data = good + b"qJrOyggIB-w,1,2,caf\xe9\n"  # Latin-1, as an old export writes it
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(TextEncodingError) as caught:
        list(iter_rows(tmp_path / name))
    message = str(caught.value)
    assert str(tmp_path / name) in message and f"byte offset {len(data) - 2}" in message
    assert isinstance(caught.value, DataError) and len(message.splitlines()) == 1


def test_reads_fsspec_urls(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/rows/r.jsonl", "w") as f:
        f.write(json.dumps(record()) + "\n")
    assert read_rows("memory://rows/r.jsonl")[0].youtube_id == "qJrOyggIB-w"


def test_row_is_a_value():
    a, b = parse_row(record()), parse_row(record())
    assert a == b and isinstance(a, Row)


def test_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    from vidgen.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "r.parquet").write_bytes(b"PAR1")
    with pytest.raises(MissingExtraError, match=r'pip install "vidgen\[data\]"'):
        list(iter_rows(tmp_path / "r.parquet"))
    write_rows(tmp_path / "r.jsonl", [parse_row(record())])  # JSONL needs no extra
    assert len(read_rows(tmp_path / "r.jsonl")) == 1
