"""Stories: continuity conditioning, every output file, subtitle timing, the page in a real browser, bad scripts."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.cli.main import main
from vidgen.errors import InputError
from vidgen.io import probe


@pytest.fixture(scope="module")
def story_dir(tiny_motion_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("story")
    rc = main(["story", "--model", str(tiny_motion_model), "--prompt", "a red circle moves right", "--prompt",
               "a red circle moves up", "--frames-per-clip", "6", "--overlap", "2", "--steps", "3", "--fps", "4",
               "--out", str(out), "sampling.height=16", "sampling.width=16"])
    assert rc == 0
    return out


def test_two_clip_story_writes_every_output_with_consistent_durations(story_dir):
    names = sorted(p.name for p in story_dir.iterdir())
    assert names == ["clip_000.mp4", "clip_001.mp4", "settings.json", "story.html", "story.jsonl", "story.mp4",
                     "story.srt", "story.vtt"]
    clips = [probe(story_dir / f"clip_00{i}.mp4") for i in range(2)]
    stitched = probe(story_dir / "story.mp4")
    assert [c.num_frames for c in clips] == [6, 6]
    assert stitched.num_frames == 6 + (6 - 2)  # the second clip's overlap is not repeated
    assert stitched.duration == pytest.approx(10 / 4)


def test_subtitles_and_document_time_each_caption_to_its_clip(story_dir):
    srt = (story_dir / "story.srt").read_text()
    assert "00:00:00,000 --> 00:00:01,500\na red circle moves right" in srt
    assert "00:00:01,500 --> 00:00:02,500\na red circle moves up" in srt
    vtt = (story_dir / "story.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "00:00:01.500 --> 00:00:02.500\na red circle moves up" in vtt
    doc = json.loads((story_dir / "story.jsonl").read_text())
    assert doc == [
        {"text": "a red circle moves right"}, {"video": "clip_000.mp4", "source": "story.mp4", "start": 0.0, "end": 1.5},
        {"text": "a red circle moves up"}, {"video": "clip_001.mp4", "source": "story.mp4", "start": 1.5, "end": 2.5},
    ]


HOSTILE = [
    "a red circle <script>alert(1)</script> & <img src=x onerror=alert(2)>",
    "moves up</track><b>bold</b>\n\n00:00:00.000 --> 00:00:09.000\ninjected cue {\\an8}<font color=red>x</font> a<b",
]


@pytest.fixture(scope="module")
def hostile_story(tiny_motion_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    script = root / "script.jsonl"
    script.write_text("".join(json.dumps({"caption": c}) + "\n" for c in HOSTILE))
    assert main(["story", "--model", str(tiny_motion_model), "--script", str(script), "--frames-per-clip", "4",
                 "--overlap", "1", "--steps", "2", "--fps", "4", "--out", str(root / "out"),
                 "sampling.height=16", "sampling.width=16"]) == 0
    return root / "out"


def _cues(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.strip().split("\n\n")]


def test_webvtt_escapes_captions_and_a_caption_cannot_start_a_cue(hostile_story):
    header, *cues = _cues((hostile_story / "story.vtt").read_text())
    assert header == ["WEBVTT"] and len(cues) == len(HOSTILE)
    for (timing, *text), caption in zip(cues, HOSTILE):
        assert " --> " in timing and len(text) == 1, cues
        assert "<" not in text[0] and ">" not in text[0] and "-->" not in text[0]
        assert not re.search(r"&(?!amp;|lt;|gt;)", text[0])  # every & is one of WebVTT's escapes
        assert html.unescape(text[0]) == " ".join(caption.split())  # shown as written, on one line


def test_subrip_drops_markup_and_a_caption_cannot_start_a_cue(hostile_story):
    blocks = _cues((hostile_story / "story.srt").read_text())
    assert [b[0] for b in blocks] == [str(i) for i in range(1, len(HOSTILE) + 1)]
    for number, timing, *text in blocks:
        assert " --> " in timing and len(text) == 1, blocks
        assert not re.search(r"[<>]|\{\\|-->", text[0]), text[0]
    assert "alert(1)" in blocks[0][2] and "injected cue" in blocks[1][2] and "bold" in blocks[1][2]


def test_story_page_escapes_the_same_captions(hostile_story):
    page = (hostile_story / "story.html").read_text()
    assert "<script" not in page and "<img" not in page and "</track>" not in page and "<b>" not in page
    for caption in HOSTILE:
        assert html.escape(caption) in page
    assert [segment["text"] for segment in json.loads((hostile_story / "story.jsonl").read_text())[::2]] == HOSTILE


@pytest.mark.slow
def test_continuity_pins_the_overlap_and_the_baseline_does_not(tiny_motion_model):
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.story import StoryPipeline

    story = StoryPipeline(load_pipeline(tiny_motion_model, device="cpu"))
    kwargs = dict(num_frames=5, overlap=2, height=16, width=16, num_inference_steps=3, seed=3)
    joined = story(["a", "b", "c"], **kwargs)
    for prev, nxt in zip(joined.clips, joined.clips[1:]):
        np.testing.assert_allclose(nxt.frames[:2], prev.frames[-2:], atol=1e-5)
    alone = story(["a", "b", "c"], mode="independent", **kwargs)
    assert np.abs(alone.clips[1].frames[:2] - alone.clips[0].frames[-2:]).max() > 1e-3
    assert joined.video.shape == alone.video.shape == (5 + 3 + 3, 16, 16, 3)
    np.testing.assert_array_equal(joined.clips[0].frames, alone.clips[0].frames)  # the first clip is the same


@pytest.mark.slow
def test_resampling_keeps_the_overlap_pinned_and_is_reproducible(tiny_motion_model):
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.story import StoryPipeline

    story = StoryPipeline(load_pipeline(tiny_motion_model, device="cpu"))
    kwargs = dict(num_frames=5, overlap=2, height=16, width=16, num_inference_steps=3, seed=3, guidance_scale=3.0)
    plain = story(["a", "b"], **kwargs)
    calls = []
    unet_forward = story.pipe.unet.forward
    story.pipe.unet.forward = lambda *a, **k: calls.append(1) or unet_forward(*a, **k)
    resampled = story(["a", "b"], resample=2, **kwargs)
    del story.pipe.unet.forward
    assert len(calls) == 3 + 3 + 2 * 2  # clip 1, clip 2, two rounds after each of clip 2's steps but the last
    np.testing.assert_allclose(resampled.clips[1].frames[:2], resampled.clips[0].frames[-2:], atol=1e-5)
    np.testing.assert_array_equal(resampled.clips[0].frames, plain.clips[0].frames)
    assert np.abs(resampled.clips[1].frames[2:] - plain.clips[1].frames[2:]).max() > 1e-4
    again = story(["a", "b"], resample=2, **kwargs)
    np.testing.assert_array_equal(again.video, resampled.video)
    assert resampled.meta["resample"] == 2
    # A guidance interval reaches the resampling rounds too: outside it they run the prompt alone (batch 1).
    sizes = []
    story.pipe.unet.forward = lambda *a, **k: sizes.append(a[0].shape[0]) or unet_forward(*a, **k)
    story.pipe.scheduler.set_timesteps(3)
    last = int(story.pipe.scheduler.timesteps[-1])
    limited = story(["a", "b"], resample=2, guidance_interval=(last + 1, 1000), **kwargs)
    del story.pipe.unet.forward
    assert sizes == [2, 2, 1] + [2, 2, 2, 2, 2, 2, 1]  # the resampling rounds follow the first two steps of clip 2
    assert limited.meta["guidance_interval"] == [last + 1, 1000]


def test_resampling_refuses_a_stateful_scheduler_and_a_negative_count(tiny_motion_model, tmp_path, capsys):
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.story import StoryPipeline

    story = StoryPipeline(load_pipeline(tiny_motion_model, device="cpu", scheduler="dpm++"))
    with pytest.raises(InputError, match="resample needs the ddim scheduler"):
        story(["a", "b"], num_frames=4, overlap=1, height=16, width=16, num_inference_steps=2, resample=1)
    story(["a", "b"], num_frames=4, overlap=1, height=16, width=16, num_inference_steps=2, resample=1, mode="independent")
    assert main(["story", "--model", str(tiny_motion_model), "--prompt", "a", "--prompt", "b", "--resample", "-1",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "argument --resample: must be an integer >= 0, got -1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_story_page_plays_in_headless_chromium(story_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    (story_dir / "probe.html").write_text("""<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="f" src="story.html"></iframe><script>
const f = document.getElementById("f");
f.onload = () => {
  const v = f.contentDocument.getElementById("story");
  const report = () => { document.getElementById("out").textContent = JSON.stringify({
      ready: v.readyState, duration: v.duration, tracks: v.textTracks.length,
      track_kind: v.textTracks.length ? v.textTracks[0].kind : null, error: v.error && v.error.code,
      clips: f.contentDocument.querySelectorAll("video.clip").length}); };
  v.addEventListener("loadedmetadata", report); v.addEventListener("error", report); v.load(); setTimeout(report, 4000);
};
</script></body></html>""")
    handler = partial(SimpleHTTPRequestHandler, directory=str(story_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/probe.html"
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        (story_dir / "probe.html").unlink()
    start = done.stdout.index('<pre id="out">') + len('<pre id="out">')
    state = json.loads(done.stdout[start : done.stdout.index("</pre>", start)].replace("&quot;", '"'))
    assert state["error"] is None and state["ready"] >= 1, state
    assert state["duration"] == pytest.approx(2.5, abs=0.1)
    assert state["tracks"] == 1 and state["track_kind"] == "subtitles"
    assert state["clips"] == 2


@pytest.mark.parametrize("script, message", [
    ("a red circle\n\na blue square\n", "line 2 is empty"),
    ("# only a comment\n", "has no captions"),
    ('{"caption": "ok"}\n{"frames": 4}\n', "line 2: no caption"),
])
def test_bad_scripts_are_one_clear_line(tiny_motion_model, tmp_path, capsys, script, message):
    suffix = ".jsonl" if script.startswith("{") else ".txt"
    path = tmp_path / f"script{suffix}"
    path.write_text(script)
    rc = main(["story", "--model", str(tiny_motion_model), "--script", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_script_that_is_not_utf8_is_one_line(tiny_motion_model, tmp_path, capsys):
    script = tmp_path / "script.txt"
    data = "a red circle\na café sign\n".encode("latin-1")  # é as the single byte 0xE9
    script.write_bytes(data)
    rc = main(["story", "--model", str(tiny_motion_model), "--script", str(script), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(script) in err and f"byte offset {data.index(0xE9)}" in err
    assert not (tmp_path / "out").exists()


def test_missing_script_and_bad_overlap(tiny_motion_model, tmp_path, capsys):
    assert main(["story", "--model", str(tiny_motion_model), "--script", str(tmp_path / "nope.txt")]) == 2
    assert "story script not found" in capsys.readouterr().err
    assert main(["story", "--model", str(tiny_motion_model), "--prompt", "a", "--prompt", "b", "--overlap", "4",
                 "--frames-per-clip", "4", "--out", str(tmp_path / "o")]) == 2
    assert "overlap 4 must be smaller than its 4 frames" in capsys.readouterr().err
    from vidgen.pipelines.story import read_script

    (tmp_path / "ok.txt").write_text("a red circle\n# comment\na blue square\n\n\n")
    assert [s.caption for s in read_script(tmp_path / "ok.txt")] == ["a red circle", "a blue square"]
    with pytest.raises(InputError):
        read_script(tmp_path / "nope.jsonl")


@pytest.mark.slow
def test_story_folder_scores_each_clip_against_its_caption(tiny_motion_model, tmp_path, capsys):
    """vidgen score on a story folder: per-clip CLIPSIM (captions from story.jsonl) and continuity measures."""
    import torch

    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import save_viclip

    torch.manual_seed(0)
    viclip = save_viclip(ViCLIP(get_config("tiny")), tmp_path / "viclip")  # 4 frames at 32 px
    story = tmp_path / "story"
    assert main(["story", "--model", str(tiny_motion_model), "--prompt", "a red circle moves right", "--prompt",
                 "a red circle moves up", "--frames-per-clip", "6", "--steps", "2", "--out", str(story),
                 "sampling.height=16", "sampling.width=16"]) == 0
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert main(["score", str(story), "--viclip", str(viclip), "--out", str(report), "--no-progress"]) == 0
    data = json.loads(report.read_text())
    assert [v["caption"] for v in data["videos"]] == ["a red circle moves right", "a red circle moves up"]
    measures = data["stories"][str(story)]
    assert len(measures["boundaries"]) == 1 and "pixel_change" in measures["boundaries"][0]
    assert math.isfinite(measures["median_pixel_change"])
    assert "pixel change at clip boundaries" in capsys.readouterr().out
    # The toy world's judge measures of the same folder (object jump, per-clip verdicts) come from vidgen eval.
    assert main(["eval", "--story", str(story)]) == 0
    assert "boundary jump median" in capsys.readouterr().out
    assert main(["eval", "--story", str(story), "--json"]) == 0
    toy = json.loads(capsys.readouterr().out)
    assert len(toy["boundaries"]) == 1 and len(toy["clips"]) == 2
    assert {"median_jump_px", "median_pixel_change", "motion_accuracy", "color_kept", "shape_kept"} <= toy.keys()
    assert toy["median_pixel_change"] == pytest.approx(measures["median_pixel_change"])


def test_boundary_measures_on_ground_truth_toy_stories():
    """Real toy stories join smoothly (about one frame's motion); shuffled clips jump far."""
    from vidgen.toyworld import make_story
    from vidgen.toyworld.suites import boundary_measures

    jumps, shuffled = [], []
    for i in range(6):
        clips = [s.frames for s in make_story(i, seed=1, num_clips=3, num_frames=8, size=32)]
        jumps += [b["jump_px"] for b in boundary_measures(clips)]
        other = [s.frames for s in make_story(100 + i, seed=1, num_clips=3, num_frames=8, size=32)]
        shuffled += [b["jump_px"] for b in boundary_measures([clips[0], other[1]])]
    assert np.median(jumps) <= 2.5
    assert np.median(shuffled) > 2 * np.median(jumps)


@pytest.mark.slow
def test_story_eval_suite_runs_both_modes(tiny_motion_model, tmp_path):
    from vidgen.config import load_config
    from vidgen.toyworld.suites import EvalConfig, run_story_eval

    cfg = load_config(EvalConfig, overrides=[f"model={tiny_motion_model}", "suite=story", "n=2", "sampling.steps=2",
                                             "sampling.frames=5", "sampling.height=16", "sampling.width=16",
                                             f"out={tmp_path / 'ev'}"])
    result = run_story_eval(cfg)
    assert set(result.summary) == {"continuity", "independent"}
    assert result.summary["continuity"]["boundaries"] == 4
    assert (tmp_path / "ev" / "table.md").read_text().startswith("| mode |")


@pytest.mark.slow
def test_clean_pinning_shows_the_denoiser_the_previous_frames_unchanged(tiny_motion_model):
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.story import StoryPipeline

    story = StoryPipeline(load_pipeline(tiny_motion_model, device="cpu"))
    kwargs = dict(num_frames=5, overlap=2, height=16, width=16, num_inference_steps=3, seed=3, guidance_scale=3.0)
    seen = {}
    unet_forward = story.pipe.unet.forward
    for pin in ("clean", "noised"):
        inputs = seen[pin] = []
        story.pipe.unet.forward = lambda sample, *a, _in=inputs, **k: _in.append(sample[:, :, :2].clone()) or unet_forward(sample, *a, **k)
        made = story(["a", "b"], pin=pin, **kwargs)
        np.testing.assert_allclose(made.clips[1].frames[:2], made.clips[0].frames[-2:], atol=1e-5)
        assert made.meta["pin"] == pin
    del story.pipe.unet.forward
    clean, noised = seen["clean"][3:], seen["noised"][3:]  # the second clip's three steps
    assert all(torch.equal(x, clean[0]) for x in clean)  # the same clean frames at every noise level
    assert not torch.equal(noised[0], noised[-1]) and not torch.allclose(noised[-1], clean[-1], atol=1e-3)
    with pytest.raises(InputError, match="pin must be one of"):
        story(["a", "b"], pin="sharp", **kwargs)
    # Euler-type schedulers keep latents on a sigma scale the clean frames are not on: refused, not mis-scaled.
    euler = StoryPipeline(load_pipeline(tiny_motion_model, device="cpu", scheduler="euler"))
    with pytest.raises(InputError, match="pin clean needs a scheduler"):
        euler(["a", "b"], pin="clean", **kwargs)
    assert euler(["a", "b"], pin="noised", **kwargs).meta["pin"] == "noised"


@pytest.mark.slow
def test_a_model_folder_can_default_stories_to_clean_pinning(tiny_motion_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_motion_model, model)
    (model / "sample_defaults.yaml").write_text("steps: 2\nscheduler: ddim\nstory:\n  pin: clean\n  resample: 1\n")
    out = tmp_path / "story"
    args = ["story", "--model", str(model), "--prompt", "a", "--prompt", "b", "--frames-per-clip", "4", "--overlap", "1",
            "sampling.height=16", "sampling.width=16"]
    assert main([*args, "--out", str(out)]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["pin"] == "clean" and settings["steps"] == 2 and settings["resample"] == 1
    # The model's RePaint rounds need its DDIM: another scheduler turns them off instead of failing...
    assert main([*args, "--out", str(tmp_path / "dpm"), "--scheduler", "dpm++"]) == 0
    assert json.loads((tmp_path / "dpm" / "settings.json").read_text())["resample"] == 0
    # ...while resampling asked for on the command line with it is refused.
    assert main([*args, "--out", str(tmp_path / "bad"), "--scheduler", "dpm++", "--resample", "1"]) == 2
    # What counts is the scheduler that runs, however it was named or wherever it came from.
    (model / "sample_defaults.yaml").write_text("steps: 2\nstory:\n  pin: clean\n  resample: 1\n")
    assert main([*args, "--out", str(tmp_path / "upper"), "--scheduler", "DDIM"]) == 0
    assert json.loads((tmp_path / "upper" / "settings.json").read_text())["resample"] == 1
    # vidgen sample reads the same file and takes only the keys it knows.
    assert main(["sample", "--model", str(model), "--prompt", "a", "--frames", "2", "--out", str(tmp_path / "a.mp4"),
                 "sampling.height=16", "sampling.width=16"]) == 0
    # ...but a key neither knows is a typo, named, not silently dropped.
    (model / "sample_defaults.yaml").write_text("steps: 2\npinn: clean\n")
    assert main(["sample", "--model", str(model), "--prompt", "a", "--frames", "2", "--out", str(tmp_path / "b.mp4"),
                 "sampling.height=16", "sampling.width=16"]) == 2
    assert not (tmp_path / "b.mp4").exists()
