"""The shipped default model in checkpoints/: it loads, samples what it is asked for, and stories continue.

These tests use the real shipped weights (no download: they are in the repository).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vidgen.cli.main import main
from vidgen.pipelines.loading import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.slow  # every test here samples or trains with the shipped model

# Seen combinations, one per colour family and motion; seeds fixed, so the outcome is exact on a given build.
PROMPTS = [
    "a red circle moves left on a white background",
    "a blue triangle moves up on a black background",
    "a green square moves right on a gray background",
    "a yellow circle stays still on a black background",
    "a magenta square moves down on a white background",
    "a cyan triangle moves left on a gray background",
]


@pytest.fixture(scope="module")
def pipe():
    from vidgen.pipelines.loading import load_pipeline

    return load_pipeline(DEFAULT_MODEL_DIR, device="cpu")


def test_shipped_folder_is_complete_and_small():
    files = [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert {"model_index.json", "sample_defaults.yaml", "README.md"} <= {p.name for p in files}
    assert {p.parent.name for p in weights} >= {"unet", "vae", "text_encoder", "viclip"}
    assert sum(p.stat().st_size for p in files) <= 60 * 2**20
    # Shards of at most 6 MB; the text towers' token tables are trimmed to the toy vocabulary (844 of 49408 rows).
    assert max(p.stat().st_size for p in files) < 8 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]  # no pickles shipped


def test_shipped_vocabulary_is_the_toy_worlds_and_tokenises_its_captions_as_clip():
    from vidgen.toyworld import make_sample
    from vidgen.toyworld.captions import vocabulary_texts
    from vidgen.models.tokenizer import CLIPBPETokenizer, Vocabulary
    from vidgen.models.viclip_io import load_viclip

    clip = Vocabulary.clip()
    shipped = Vocabulary.from_folder(DEFAULT_MODEL_DIR / "tokenizer")
    assert shipped == clip.trimmed(vocabulary_texts())  # what scripts/finalize_default_model.py makes
    assert load_viclip(DEFAULT_MODEL_DIR / "viclip").vocabulary == shipped
    captions = [make_sample(i, seed=5, num_frames=2, size=16).caption.text for i in range(400)] + PROMPTS
    rows = torch.tensor(shipped.ids_in(clip))
    assert torch.equal(rows[CLIPBPETokenizer(32, vocabulary=shipped)(captions)], CLIPBPETokenizer(32)(captions))


def test_the_judge_reads_back_what_the_prompts_ask_for(pipe):
    from vidgen.io.writer import to_uint8_frames
    from vidgen.toyworld.judge import faithfulness, judge_frames

    guidance = yaml.safe_load((DEFAULT_MODEL_DIR / "sample_defaults.yaml").read_text())["guidance"]
    agree, motion = {}, {}
    for i, prompt in enumerate(PROMPTS):
        frames = pipe(prompt, num_frames=8, height=32, width=32, num_inference_steps=25, guidance_scale=guidance,
                      generator=torch.Generator().manual_seed(i)).frames[0]
        verdict = judge_frames(to_uint8_frames(frames))
        agree[prompt], motion[prompt] = faithfulness(verdict, prompt).matches, verdict.motion
    colour = [m["color"] for m in agree.values()]
    background = [m["background"] for m in agree.values()]
    shape = [m["shape"] for m in agree.values()]
    assert all(colour) and all(background), agree
    assert sum(shape) >= len(PROMPTS) // 2, agree
    # Whether the object moves follows the prompt; its direction (90% in the 120-prompt eval, see
    # checkpoints/README.md) is measured there, not asserted per prompt here.
    assert [m == "still" for m in motion.values()] == ["still" in p for p in PROMPTS], motion


def test_same_seed_same_clip_and_the_quick_start_command(pipe, tmp_path, capsys):
    a = pipe(PROMPTS[0], num_frames=8, generator=torch.Generator().manual_seed(7), num_inference_steps=5).frames
    b = pipe(PROMPTS[0], num_frames=8, generator=torch.Generator().manual_seed(7), num_inference_steps=5).frames
    np.testing.assert_array_equal(a, b)
    out = tmp_path / "red.mp4"
    assert main(["sample", "--prompt", PROMPTS[0], "--out", str(out), "--steps", "5"]) == 0  # no --model: the default
    from vidgen.io import probe

    info = probe(out)
    assert (info.num_frames, info.width, info.height) == (8, 128, 128)  # 8 frames of 32x32 upscaled x4


def test_shipped_viclip_ranks_generated_clips_with_their_own_captions(pipe):
    from vidgen.io.writer import to_uint8_frames
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.models.viclip_io import load_viclip

    scorer = ViCLIPScorer(load_viclip(DEFAULT_MODEL_DIR / "viclip"))
    prompts = PROMPTS[:4]  # differ in colour, shape, motion and background
    clips = [pipe(p, num_frames=8, height=32, width=32, num_inference_steps=25, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(i)).frames[0] for i, p in enumerate(prompts)]
    clips = [to_uint8_frames(c) for c in clips]
    pre = scorer.preprocess
    videos = torch.stack([pre.transform(c[pre.frame_indices(len(c))]) for c in clips])
    cos = scorer.embed_videos(videos) @ scorer.embed_texts(prompts).T
    assert (cos.argmax(dim=1) == torch.arange(len(prompts))).all(), cos


def test_continuity_beats_independent_clips_on_the_shipped_model(pipe):
    from vidgen.io.writer import to_uint8_frames
    from vidgen.toyworld.suites import boundary_measures, toy_story_scripts
    from vidgen.pipelines.story import StoryPipeline

    story = StoryPipeline(pipe)
    jumps = {"continuity": [], "independent": []}
    for i, captions in enumerate(toy_story_scripts(4, seed=0, num_clips=2)):
        for mode in jumps:
            made = story(captions, num_frames=8, overlap=2, height=32, width=32, num_inference_steps=25,
                         guidance_scale=5.0, seed=1000 * i, mode=mode)
            parts = [to_uint8_frames(c.new_frames) for c in made.clips]
            jumps[mode] += [b["jump_px"] for b in boundary_measures(parts)]
    cont, ind = (np.nanmedian(jumps[m]) for m in ("continuity", "independent"))
    assert cont < ind, jumps
    assert sum(c < i for c, i in zip(jumps["continuity"], jumps["independent"])) >= 3, jumps


def test_default_model_path_is_inside_the_repository():
    assert DEFAULT_MODEL_DIR == Path(__file__).resolve().parents[2] / "checkpoints"


def test_the_tiny_training_config_fine_tunes_on_the_shipped_parts(tmp_path):
    """configs/train/tiny.yaml as the README runs it: toy-world clips, the shipped VAE and text encoder."""
    data = tmp_path / "toy_tiny"
    assert main(["data", "toyworld", "-o", str(data), "num_videos=4", "width=32", "height=32", "layout=clips",
                 "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--config", str(Path(__file__).resolve().parents[2] / "configs/train/tiny.yaml"),
                 f"output_dir={run}", f"model.base={DEFAULT_MODEL_DIR}", f"data.path={data}", f"data.rows={data / 'rows.jsonl'}",
                 "train.max_steps=3", "logging.tracker=none", "logging.progress=false"]) == 0
    assert (run / "checkpoint-000003" / "trainer_state.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [3] and all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert any("val/judge_all" in r for r in rows)  # the toy world's judge scored the validation video


def test_plain_diffusers_opens_the_shipped_model_as_animatediff(pipe, tmp_path):
    """The shipped folder is an AnimateDiff pipeline to diffusers, in a process that never imports vidgen."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, torch\n"
        "from diffusers import DiffusionPipeline\n"
        "pipe = DiffusionPipeline.from_pretrained(sys.argv[1], torch_dtype=torch.float32)\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "out = pipe('a red circle moves right on a white background', num_frames=8, num_inference_steps=4,\n"
        "           guidance_scale=7.5, generator=torch.Generator().manual_seed(3), output_type='np').frames\n"
        "np.save(sys.argv[2], np.asarray(out))\n"
        "print(type(pipe).__name__, any(m.startswith('vidgen') for m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(DEFAULT_MODEL_DIR), str(tmp_path / "f.npy")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["AnimateDiffPipeline", "False"]
    ours = pipe("a red circle moves right on a white background", num_frames=8, num_inference_steps=4, guidance_scale=7.5,
                generator=torch.Generator().manual_seed(3)).frames
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), ours, atol=1e-5)


def test_a_long_video_keeps_its_object_and_moves_as_asked(pipe):
    """32 frames (4x the trained 8) with the model's context windows: the whole video moves as asked and has
    the asked shape (the model reads shapes right 69% of the time), every 8-frame window keeps the colour, and
    the object never jumps (one window of 32 frames without
    rescheduling is the failure this guards against: objects split and jump between windows)."""
    from vidgen.pipelines.settings import SamplingSettings, pipeline_kwargs, read_model_defaults
    from vidgen.toyworld.judge import judge_frames

    settings = pipeline_kwargs(SamplingSettings(**read_model_defaults(DEFAULT_MODEL_DIR).sampling))
    settings.update(num_frames=32, output_type="np")
    assert settings["context_length"] < 32  # the shipped defaults denoise 32 frames in windows
    for prompt, (color, shape, motion) in [(PROMPTS[0], ("red", "circle", "left")), (PROMPTS[1], ("blue", "triangle", "up")),
                                           (PROMPTS[2], ("green", "square", "right"))]:
        video = (pipe(prompt, generator=torch.Generator().manual_seed(0), **settings).frames[0] * 255).round().astype(np.uint8)
        whole = judge_frames(video)
        assert (whole.motion, whole.shape) == (motion, shape), prompt
        for start in range(0, 32, 8):
            assert judge_frames(video[start : start + 8]).color == color, (prompt, start)
        jumps = np.hypot(*np.diff(whole.track, axis=0).T)
        assert np.nanmax(jumps) < 4.0, (prompt, np.round(jumps, 1))
