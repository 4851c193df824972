"""Subsets: threshold filters, the exact UMT top fraction, diversity sampling, statistics."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

import vidgen.data.filters as filters
from vidgen.data.filters import FilterSpec, filter_file, filter_rows, top_fraction_threshold
from vidgen.data.readers import read_rows, write_rows
from vidgen.data.rows import parse_row
from vidgen.data.sampling import diversity_sample, diversity_select, sample_file
from vidgen.data.stats import file_stats, plot_stats
from vidgen.errors import InputError


def make_row(i, vid=None, aes=None, umt=None, dur=2.0, caption="a dog runs on the beach", **extra):
    rec = {"YoutubeID": vid or f"video{i:06d}", "Start_timestamp": i * 10.0, "End_timestamp": i * 10.0 + dur,
           "Caption": caption, **extra}
    if aes is not None:
        rec["Aesthetic_Score"] = aes
    if umt is not None:
        rec["UMT_Score"] = umt
    return parse_row(rec)


def test_aes18m_threshold_counts():
    # aesthetic scores 3.0, 3.25, ..., 5.75: those >= 4 are 4.0 .. 5.75 -> 8 of 12
    rows = [make_row(i, aes=3 + i / 4) for i in range(12)] + [make_row(99)]
    dropped = Counter()
    kept = list(filter_rows(rows, FilterSpec(min_aesthetic=4), dropped=dropped))
    assert [r.aesthetic_score for r in kept] == [4 + i / 4 for i in range(8)]
    assert dropped == {"aesthetic score": 4, "no aesthetic score": 1}


def test_duration_caption_and_language_bounds():
    rows = [
        make_row(0, dur=0.5), make_row(1, dur=3.0), make_row(2, dur=30.0),
        make_row(3, caption="two words"), make_row(4, caption=" ".join(["w"] * 40)),
        make_row(5, language="EN"), make_row(6, lang="de"), make_row(7),
    ]
    spec = FilterSpec(min_duration=1, max_duration=10, min_caption_words=3, max_caption_words=30, languages=("en",))
    dropped = Counter()
    kept = list(filter_rows(rows, spec, dropped=dropped))
    assert [r.start for r in kept] == [50.0]
    assert dropped == {"duration": 2, "caption length": 2, "language": 1, "no language": 2}


def test_umt_top_fraction_is_exact(tmp_path):
    # UMT 0.30 .. 0.39; top 30% = 0.37, 0.38, 0.39
    rows = [make_row(i, umt=0.30 + i / 100) for i in range(10)]
    write_rows(tmp_path / "in.jsonl", rows)
    report = filter_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", FilterSpec(umt_top=0.3))
    assert [round(r.umt_score, 2) for r in read_rows(tmp_path / "out.jsonl")] == [0.37, 0.38, 0.39]
    assert report.kept == 3 and report.dropped == {"UMT top fraction": 7}
    assert report.umt_threshold == pytest.approx(0.37)


def test_umt_top_is_taken_after_the_other_bounds(tmp_path):
    # Only the 6 rows with aes >= 4 compete; top half of their UMT scores = 3 rows.
    rows = [make_row(i, aes=3.0 if i < 4 else 4.5, umt=i / 10) for i in range(10)]
    write_rows(tmp_path / "in.jsonl", rows)
    filter_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", FilterSpec(min_aesthetic=4, umt_top=0.5))
    assert [r.umt_score for r in read_rows(tmp_path / "out.jsonl")] == [0.7, 0.8, 0.9]


def test_umt_ties_are_all_kept():
    threshold, n = top_fraction_threshold(lambda: [0.1, 0.5, 0.5, 0.5, 0.2], 0.2)
    assert (threshold, n) == (0.5, 5)


@pytest.mark.parametrize("distinct_limit", [10**9, 3])
def test_threshold_matches_a_sort(monkeypatch, distinct_limit):
    # The radix-histogram path (few distinct counts allowed) must agree with the exact count path and with a sort.
    monkeypatch.setattr(filters, "MAX_DISTINCT_SCORES", distinct_limit)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.35, 0.05, 5000), rng.normal(-2, 1, 100), [0.0, -0.0, 1e-30]]).astype(np.float32)
    for fraction in (0.3, 0.01, 1.0, 0.5):
        threshold, n = top_fraction_threshold(lambda: values.tolist(), fraction)
        k = math.ceil(fraction * len(values))
        assert n == len(values)
        assert threshold == float(np.sort(values)[::-1][k - 1]), fraction


def test_bad_filter_specs():
    for kwargs, message in [({"umt_top": 0}, "umt_top"), ({"umt_top": 1.5}, "umt_top"),
                            ({"min_aesthetic": 5, "max_aesthetic": 4}, "above"), ({"min_duration": -1}, ">= 0"),
                            ({"min_umt": float("nan")}, "finite")]:
        with pytest.raises(InputError, match=message):
            FilterSpec(**kwargs)


def inclusion_probabilities(weights, k):
    """Exact P(item in sample) for k successive weighted draws without replacement, by enumeration."""
    probs = [0.0] * len(weights)
    for order in itertools.permutations(range(len(weights)), k):
        p, left = 1.0, sum(weights)
        for item in order:
            p *= weights[item] / left
            left -= weights[item]
        for item in order:
            probs[item] += p
    return probs


def test_diversity_sampling_weights_match_successive_draws():
    # video A: 1 clip (weight 1), B: 2 clips (1/2 each), C: 3 clips (1/3 each)
    ids = ["A", "B", "B", "C", "C", "C"]
    weights = [1 / Counter(ids)[v] for v in ids]
    expected = inclusion_probabilities(weights, 2)
    trials = 4000
    hits = Counter()
    for seed in range(trials):
        hits.update(diversity_sample(ids, 2, seed=seed))
    observed = [hits[i] / trials for i in range(len(ids))]
    assert sum(expected) == pytest.approx(2)
    assert observed == pytest.approx(expected, abs=0.03)
    # one draw: each video is equally likely (its clips' weights sum to 1), whatever its clip count
    firsts = Counter(ids[diversity_sample(ids, 1, seed=seed)[0]] for seed in range(trials))
    assert [firsts[v] / trials for v in "ABC"] == pytest.approx([1 / 3] * 3, abs=0.03)


def test_diversity_sampling_is_deterministic_and_bounded():
    ids = [f"v{i % 37}" for i in range(1000)]
    first = diversity_sample(ids, 100, seed=42)
    assert first == diversity_sample(ids, 100, seed=42)
    assert first != diversity_sample(ids, 100, seed=43)
    assert len(first) == 100 == len(set(first))
    assert diversity_sample(ids, 5000) == list(range(1000))
    assert diversity_sample(ids, 0) == []
    positions, rows, videos = diversity_select(lambda: iter(ids), 10)
    assert (len(positions), rows, videos) == (10, 1000, 37)
    with pytest.raises(InputError):
        diversity_sample(ids, -1)


def test_sample_file_keeps_order_and_count(tmp_path):
    rows = [make_row(i, vid=f"vid{i % 4:08d}") for i in range(40)]
    write_rows(tmp_path / "in.jsonl", rows)
    (tmp_path / "in.jsonl").open("a").write("{broken\n")
    report = sample_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", 10, seed=42)
    out = read_rows(tmp_path / "out.jsonl")
    assert len(out) == 10 == report.kept
    assert [r.start for r in out] == sorted(r.start for r in out)
    assert (report.rows.valid, report.rows.bad, report.videos) == (40, 1, 4)
    expected = [rows[i] for i in diversity_sample([r.youtube_id for r in rows], 10, seed=42)]
    assert out == expected


def test_stats_counts_and_plot(tmp_path):
    rows = [make_row(i, aes=4.05, umt=0.355, dur=1.5 + i, caption="one two three") for i in range(5)] + [make_row(9, dur=100)]
    write_rows(tmp_path / "in.jsonl", rows)
    stats = file_stats(tmp_path / "in.jsonl")
    d = stats.to_dict()
    assert d["rows"]["valid"] == 6
    assert d["missing_aesthetic_score"] == 1 and d["missing_umt_score"] == 1
    assert d["duration_s"]["counts"][1:6] == [1, 1, 1, 1, 1] and d["duration_s"]["above"] == 1
    assert d["aesthetic_score"]["counts"][40] == 5 and d["aesthetic_score"]["mean"] == pytest.approx(4.05)
    assert d["umt_score"]["counts"][35] == 5
    assert d["caption_words"]["counts"][3] == 5 and d["caption_words"]["counts"][6] == 1
    json.dumps(d)
    png = plot_stats(stats, tmp_path / "stats.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filter_keeps_every_row_of_a_csv_with_a_byte_order_mark(tmp_path, capsys):
    """Spreadsheet programs save UTF-8 CSV with a byte-order mark: `vidgen data filter` once kept 0 of 0 rows."""
    from vidgen.cli.main import main

    plain = tmp_path / "plain.csv"
    write_rows(plain, [make_row(i, aes=3 + i / 2) for i in range(10)])
    (tmp_path / "rows.csv").write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert main(["data", "filter", str(tmp_path / "rows.csv"), "-o", str(tmp_path / "out.csv"), "--min-aesthetic", "4"]) == 0
    assert "kept 8 of 10 valid rows" in capsys.readouterr().out
    assert [r.aesthetic_score for r in read_rows(tmp_path / "out.csv")] == [3 + i / 2 for i in range(2, 10)]


def test_filter_of_a_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    from vidgen.cli.main import main

    data = b"YoutubeID,Start_timestamp,End_timestamp,Caption\nvideo000001,0,2,caf\xe9\n"  # Latin-1
    (tmp_path / "rows.csv").write_bytes(data)
    assert main(["data", "filter", str(tmp_path / "rows.csv"), "-o", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rows.csv" in err and "not UTF-8" in err
    assert f"byte offset {data.index(0xE9)}" in err
    assert not (tmp_path / "out.csv").exists()
