"""`vidgen score` and vidgen.metrics: a trained tiny ViCLIP ranks its own captions first; bad input is reported."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.cli.main import main
from vidgen.models.viclip import ViCLIP, contrastive_loss
from vidgen.models.viclip_io import load_viclip, save_viclip

CAPTIONS = {
    "red": "a red circle moves left",
    "blue": "a blue square moving up",
    "green": "a green triangle slides right",
}
COLOURS = {"red": (230, 30, 30), "blue": (30, 60, 230), "green": (30, 200, 60)}
MOTION = {"red": (-3, 0), "blue": (0, -3), "green": (3, 0)}


def _toy_frames(name: str, n: int = 12, size: int = 48) -> np.ndarray:
    """A frame tinted with the object's colour and a dark block moving across it."""
    frames = np.empty((n, size, size, 3), np.uint8)
    frames[:] = COLOURS[name]
    dx, dy = MOTION[name]
    for t in range(n):
        x, y = 17 + dx * t // 2, 17 + dy * t // 2
        frames[t, max(0, y) : y + 14, max(0, x) : x + 14] = 20
    return frames


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Three toy videos with captions and a tiny ViCLIP trained on them through the contrastive loss."""
    from vidgen.io.writer import write_video
    from vidgen.metrics.preprocess import get_preprocess
    from vidgen.models.tokenizer import CLIPBPETokenizer

    root = tmp_path_factory.mktemp("toy")
    videos = {name: write_video(root / f"{name}.mp4", _toy_frames(name), fps=8) for name in CAPTIONS}
    torch.manual_seed(0)
    model = ViCLIP("tiny")
    prep = get_preprocess("demo", model.config.num_frames, model.config.image_size)
    batch = torch.stack([prep.load(videos[n])[0] for n in CAPTIONS])
    ids = CLIPBPETokenizer(32)(list(CAPTIONS.values()))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with torch.no_grad():
        model.temp.fill_(0.07)  # CLIP's starting temperature suits training from scratch better than 0.01
    model.train()
    losses = []
    for _ in range(25):
        out = model(batch, ids, masking_prob=0.25)  # a training forward with token masking
        loss = contrastive_loss(out.video_embeds, out.text_embeds, model.temp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    save_viclip(model.eval(), root / "viclip")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"video": f"{n}.mp4", "caption": c}) + "\n" for n, c in CAPTIONS.items()))
    return {"root": root, "videos": videos, "model": root / "viclip", "pairs": pairs}


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["score", "--no-progress", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_own_caption_scores_highest_and_recall_is_perfect(toy, capsys, tmp_path):
    report = tmp_path / "r.json"
    rc, out, err = _run(capsys, toy["pairs"], "--viclip", toy["model"], "--out", report, "--batch-size", 2)
    assert rc == 0, err
    data = json.loads(report.read_text())
    assert data["scored"] == 3 and data["skipped_count"] == 0
    assert "frames[::n // 4][:4]" in data["definitions"]["viclip"]["preprocess"]["frames"]
    own = {Path(v["video"]).stem: v["scores"]["viclip"] for v in data["videos"]}
    # the same videos against the other captions
    model = load_viclip(toy["model"])
    from vidgen.metrics.clipsim import ViCLIPScorer

    scorer = ViCLIPScorer(model, "demo")
    video_emb = scorer.embed_videos(torch.stack([scorer.load_video(toy["videos"][n])[0] for n in CAPTIONS]))
    cos = video_emb @ scorer.embed_texts(list(CAPTIONS.values())).T
    for i, name in enumerate(CAPTIONS):
        assert own[name] == pytest.approx(float(cos[i, i]), abs=1e-5)
        assert all(cos[i, i] > cos[i, j] for j in range(3) if j != i)
    assert "ViCLIP CLIPSIM: mean" in out

    rc, out, err = _run(capsys, toy["pairs"], "--viclip", toy["model"], "--retrieve", "--topk", 3)
    assert rc == 0, err
    assert "video->text R@1 1.000" in out and "text->video R@1 1.000" in out
    # the reverse direction: each caption's videos, best first
    lines = out.splitlines()
    first_video = lines[lines.index(f"{CAPTIONS['green']!r}:") + 1]
    assert first_video.endswith("green.mp4")


def test_zero_shot_labels_with_retrieve(toy, capsys):
    rc, out, err = _run(capsys, toy["videos"]["blue"], "--viclip", toy["model"], "--retrieve",
                        *sum((["--prompt", c] for c in CAPTIONS.values()), []))
    assert rc == 0, err
    first_ranked = out.splitlines()[1]
    assert CAPTIONS["blue"] in first_ranked


def test_bad_videos_are_skipped_and_reported(toy, capsys, tmp_path):
    from vidgen.io.writer import write_video

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(toy["videos"]["red"].read_bytes()[:600])  # a truncated file
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    short = write_video(tmp_path / "short.mp4", _toy_frames("red", n=2), fps=8)  # tiny ViCLIP needs 4 frames
    report = tmp_path / "r.csv"
    rc, out, err = _run(capsys, toy["videos"]["red"], corrupt, empty, short, tmp_path / "missing.mp4",
                        "--prompt", CAPTIONS["red"], "--viclip", toy["model"], "--out", report)
    assert rc == 0, err
    assert "over 1 videos" in out and "skipped 4 video(s)" in out
    rows = {Path(r["video"]).name: r for r in csv.DictReader(report.open())}
    assert rows["red.mp4"]["status"] == "ok" and float(rows["red.mp4"]["viclip"]) > 0
    assert "2 frames; 4 are needed" in rows["short.mp4"]["status"]
    assert "empty" in rows["empty.mp4"]["status"] and "not found" in rows["missing.mp4"]["status"]
    assert rows["corrupt.mp4"]["status"].startswith("skipped: ")
    source = rows["red.mp4"]["viclip source"]  # the CSV says where the number came from
    assert str(toy["model"]) in source and "preprocess demo" in source and "frames[::n // " in source


def test_a_truncated_video_is_scored_on_the_frames_that_decode_and_the_report_says_so(toy, capsys, tmp_path):
    """A cut-off MP4 announcing 48 frames once was scored on a spread over the first few, with no word about it."""
    from tests.conftest import truncated_copy
    from vidgen.io.writer import write_video
    from vidgen.metrics.preprocess import get_preprocess

    whole = write_video(tmp_path / "whole.mp4", _toy_frames("red", n=48), fps=8)
    decodable, announced = truncated_copy(whole, tmp_path / "cut.mp4", range(8, 40))
    truncated_copy(whole, tmp_path / "stub.mp4", range(1, 4))  # fewer than the tiny ViCLIP's 4 frames
    report = tmp_path / "r.json"
    rc, out, err = _run(capsys, tmp_path / "cut.mp4", tmp_path / "stub.mp4", "--prompt", CAPTIONS["red"],
                        "--viclip", toy["model"], "--out", report)
    assert rc == 0, err
    saved = json.loads(report.read_text())
    [row] = saved["videos"]
    expected = f"truncated: {decodable} of {announced} frames decodable"
    assert expected in row["note"] and expected in out
    assert row["frames"]["viclip"] == get_preprocess("demo", num_frames=4).frame_indices(decodable)
    [skipped] = saved["skipped"]
    assert skipped["video"].endswith("stub.mp4") and skipped["reason"].startswith("truncated: ")
    assert f" of {announced} frames decodable" in skipped["reason"]


def test_html_report_is_self_contained(toy, capsys, tmp_path):
    page = tmp_path / "pages" / "report.html"
    rc, _, err = _run(capsys, toy["pairs"], "--viclip", toy["model"], "--html", page)
    assert rc == 0, err
    text = page.read_text()
    assert text.count("<video ") == 3 and "<script" not in text and "http" not in text
    assert "src='../../" in text or "src='../" in text  # relative to the page's folder
    for caption in CAPTIONS.values():
        assert caption in text


def test_html_report_escapes_hostile_captions(toy, capsys, tmp_path):
    hostile = ["a red circle <script>alert(1)</script> & <img src=x onerror=alert(2)>",
               "moves up</track><b>bold</b>\n\n00:00:00.000 --> 00:00:09.000\ninjected cue", "it's \"quoted\" <i>x</i>"]
    pairs = tmp_path / "hostile.jsonl"
    pairs.write_text("".join(json.dumps({"video": str(toy["videos"][n]), "caption": c}) + "\n" for n, c in zip(CAPTIONS, hostile)))
    page = tmp_path / "report.html"
    rc, _, err = _run(capsys, pairs, "--viclip", toy["model"], "--html", page, "--retrieve")
    assert rc == 0, err
    text = page.read_text()
    assert "<script" not in text and "<img" not in text and "</track>" not in text and "<b>bold" not in text and "<i>x" not in text
    for caption in hostile:
        assert html.escape(caption.strip()) in text


def test_sidecar_captions_from_vidgen_sample(toy, capsys, tmp_path):
    import shutil

    video = tmp_path / "000-a-blue-square-s0.mp4"
    shutil.copy(toy["videos"]["blue"], video)
    video.with_suffix(".yaml").write_text(f"prompts:\n- {CAPTIONS['blue']}\nseed: 0\n")
    rc, out, err = _run(capsys, tmp_path, "--viclip", toy["model"])
    assert rc == 0, err
    assert CAPTIONS["blue"] in out


def test_vbench_preprocess_is_reported(toy, capsys, tmp_path):
    report = tmp_path / "r.json"
    # a key=value override among the videos sets the same field as --preprocess
    rc, _, err = _run(capsys, toy["pairs"], "preprocess=vbench", "--viclip", toy["model"], "--out", report)
    assert rc == 0, err
    prep = json.loads(report.read_text())["definitions"]["viclip"]["preprocess"]
    assert prep["name"] == "vbench" and "CLIP mean" in prep["normalisation"] and "centre crop" in prep["resize"]


class _Opaque:  # unpickling an instance needs this class: code, which weights_only refuses
    pass


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("vidgen score: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_whole_run_problems_are_one_line_exit_2(toy, capsys, tmp_path, monkeypatch):
    no_col = tmp_path / "caps.csv"
    no_col.write_text("video,text_en\nred.mp4,a red circle\n")
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--captions", no_col, "--viclip", toy["model"])[::2], "no caption column")

    pickle_ckpt = tmp_path / "code.pth"
    torch.save({"model": {}, "args": _Opaque()}, pickle_ckpt)
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--prompt", "x", "--viclip", pickle_ckpt)[::2], "weights_only")

    import vidgen.models.viclip_io as vio

    monkeypatch.setattr(vio, "DEFAULT_VICLIP_DIR", tmp_path / "no-such-dir")
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--prompt", "x")[::2], "pass --viclip")

    _one_line_error(*_run(capsys, tmp_path / "empty-folder-does-not-matter.jsonl", "--viclip", toy["model"])[::2], "not found")
    (tmp_path / "emptydir").mkdir()
    _one_line_error(*_run(capsys, tmp_path / "emptydir", "--prompt", "x", "--viclip", toy["model"])[::2], "no videos found")
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--viclip", toy["model"])[::2], "no caption for any video")
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--prompt", "a", "--prompt", "b", "--viclip", toy["model"])[::2], "--retrieve")
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--prompt", "a", "--metric", "clip")[::2], "--clip DIR")

    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    _one_line_error(*_run(capsys, toy["videos"]["red"], "--prompt", "a", "--viclip", toy["model"], "--out", existing)[::2], "--overwrite")
    assert existing.read_text() == "{}"


def test_caption_files_with_a_byte_order_mark_or_not_in_utf8(toy, capsys, tmp_path):
    """Spreadsheets save CSV with a byte-order mark: it once hid the 'video' column ("found \\ufeffvideo")."""
    videos = [toy["videos"][name] for name in CAPTIONS]
    table = tmp_path / "caps.csv"
    table.write_bytes(b"\xef\xbb\xbf" + ("video,caption\n" + "".join(f"{v},{c}\n" for v, c in zip(videos, CAPTIONS.values()))).encode())
    lines = tmp_path / "caps.txt"
    lines.write_bytes(b"\xef\xbb\xbf" + "".join(c + "\n" for c in CAPTIONS.values()).encode())
    for captions in (table, lines):
        report = tmp_path / f"{captions.suffix[1:]}.json"
        rc, _, err = _run(capsys, *videos, "--captions", captions, "--viclip", toy["model"], "--out", report)
        assert rc == 0, err
        assert [v["caption"] for v in json.loads(report.read_text())["videos"]] == list(CAPTIONS.values())
    latin = tmp_path / "latin.txt"
    data = "".join(c + "\n" for c in ("a red circle", "a blue café", "a green sign")).encode("latin-1")
    latin.write_bytes(data)
    _one_line_error(*_run(capsys, *videos, "--captions", latin, "--viclip", toy["model"])[::2], str(latin), "not UTF-8",
                    f"byte offset {data.index(0xE9)}")


def test_frame_level_clip_matches_manual_computation(toy, capsys, tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16,
    )
    folder = tmp_path / "clip"
    CLIPModel(cfg).save_pretrained(str(folder))
    report = tmp_path / "r.json"
    rc, out, err = _run(capsys, toy["pairs"], "--viclip", toy["model"], "--metric", "both", "--clip", folder, "--out", report)
    assert rc == 0, err
    data = json.loads(report.read_text())
    row = next(v for v in data["videos"] if v["video"].endswith("red.mp4"))
    assert row["frames"]["clip"] == list(range(12))  # a 12-frame video: every frame

    from vidgen.io.video import read_frames
    from vidgen.metrics.preprocess import CLIP_MEAN, CLIP_STD
    from vidgen.models.tokenizer import hf_clip_tokenizer

    model = CLIPModel.from_pretrained(str(folder)).eval()
    frames = torch.from_numpy(read_frames(toy["videos"]["red"])).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(frames, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    x = (x.clamp(0, 255).round() / 255 - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    ids = torch.tensor([hf_clip_tokenizer(77)(CAPTIONS["red"])["input_ids"]])
    with torch.no_grad():
        out_ = model(input_ids=ids, pixel_values=x)
    manual = float((out_.image_embeds @ out_.text_embeds[0]).mean())
    assert row["scores"]["clip"] == pytest.approx(manual, abs=1e-4)
    assert "CLIP CLIPSIM (frame-level): mean" in out


def test_text_embeddings_are_cached(toy):
    from vidgen.metrics.clipsim import ViCLIPScorer

    model = load_viclip(toy["model"])
    calls = []
    original = model.encode_text
    model.encode_text = lambda ids: (calls.append(ids.shape[0]), original(ids))[1]
    scorer = ViCLIPScorer(model)
    first = scorer.embed_texts(["a", "b", "a"])
    second = scorer.embed_texts(["b", "a", "c"])
    assert calls == [2, 1]
    assert torch.equal(first[0], second[1]) and torch.equal(first[0], first[2])
