"""The toy-model recipe at tiny scale: VAE and ViCLIP trainers, base assembly, validation scores, eval suite."""

from __future__ import annotations

import json
import math

import pytest

from tests.train_helpers import ClipTensors, collate, tiny_config
from vidgen.cli.main import main
from vidgen.config import load_config

pytestmark = pytest.mark.slow  # the recipe tier: the toy world's trainers and scripts end to end


TINY_VICLIP = ["size=tiny", "model.image_size=16", "model.num_frames=4", "model.patch_size=8", "data.source=toyworld",
               "data.stream.render_size=16", "steps=3", "batch_size=4", "eval_clips=6", "log_every=1", "mixed_precision=no"]


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory):
    """A 3-step VAE (16x16, factor 2) and a 3-step tiny ViCLIP, trained with the real entry points."""
    from vidgen.toyworld.streams import VAE_SOURCES, VICLIP_STREAMS
    from vidgen.training.vae import VAETrainConfig, train_vae
    from vidgen.training.viclip import ViCLIPTrainConfig, train_viclip

    root = tmp_path_factory.mktemp("toy_recipe")
    vae_cfg = load_config(VAETrainConfig, overrides=[
        f"output_dir={root / 'vae'}", "model.block_out_channels=[32,32]", "data.source=toyworld", "data.size=16",
        "data.stream.eval_clips=2", "steps=3", "batch_size=4", "log_every=1", "mixed_precision=no"])
    vae_report = train_vae(vae_cfg, progress=False, sources=VAE_SOURCES)
    vc_cfg = load_config(ViCLIPTrainConfig, overrides=[f"output_dir={root / 'viclip'}", *TINY_VICLIP])
    vc_report = train_viclip(vc_cfg, progress=False, streams=VICLIP_STREAMS)
    return root, vae_report, vc_report


def test_vae_trainer_writes_a_scaled_vae_and_a_report(tiny_parts):
    from diffusers import AutoencoderKL

    root, report, _ = tiny_parts
    vae = AutoencoderKL.from_pretrained(str(root / "vae" / "vae"))
    assert vae.config.scaling_factor == pytest.approx(report["scaling_factor"]) and report["scaling_factor"] > 0
    assert {"psnr_db", "judge_color", "judge_shape", "judge_motion", "judge_background"} <= report.keys()
    assert len((root / "vae" / "vae_metrics.jsonl").read_text().splitlines()) == 3


def test_reconstruction_report_of_a_perfect_autoencoder_reads_the_true_shapes():
    """An identity "VAE" reconstructs exactly: every judge reading is right and the fills are the shapes' own."""
    from types import SimpleNamespace

    from vidgen.toyworld.streams import ToyFrames
    from vidgen.training.vae import VAETrainConfig

    class Identity:
        def encode(self, x):
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=x))

        def decode(self, z):
            return SimpleNamespace(sample=z)

    cfg = load_config(VAETrainConfig, overrides=["output_dir=unused", "data.source=toyworld", "data.size=32",
                                                 "data.stream.eval_clips=24"])
    report = ToyFrames(cfg.data).report(Identity())
    assert report["judge_shape"] == report["judge_color"] == 1.0 and report["psnr_db"] > 40
    assert {"fill_circle", "fill_square", "fill_triangle"} <= report.keys()
    assert report["fill_circle"] == pytest.approx(math.pi / 4, abs=0.03)
    assert report["fill_square"] == pytest.approx(1.0, abs=0.03)
    assert report["fill_triangle"] < 0.65


def test_viclip_trainer_writes_a_loadable_model_with_recall(tiny_parts):
    from vidgen.models.viclip_io import load_viclip

    root, _, report = tiny_parts
    model = load_viclip(root / "viclip" / "viclip")
    assert model.config.image_size == 16 and model.config.num_frames == 4
    assert 0.0 <= report["t2v_recall@1"] <= 1.0 and math.isfinite(report["clipsim_real"])


def test_a_trained_viclip_is_re_measured_on_the_same_held_out_clips(tiny_parts):
    """finalize_default_model re-measures the shipped ViCLIP this way; it must match the training report."""
    from vidgen.models.viclip_io import load_viclip
    from vidgen.toyworld.streams import heldout_retrieval
    from vidgen.training.viclip import ViCLIPTrainConfig

    root, _, report = tiny_parts
    cfg = load_config(ViCLIPTrainConfig, overrides=["output_dir=unused", *TINY_VICLIP])
    again = heldout_retrieval(load_viclip(root / "viclip" / "viclip").eval(), cfg)
    assert again.keys() == {"t2v_recall@1", "t2v_recall@5", "v2t_recall@1", "v2t_recall@5", "clipsim_real"}
    for key, value in again.items():
        assert value == pytest.approx(report[key], abs=1e-5), key


def test_viclip_stream_adds_reversed_twins_with_the_opposite_direction(tmp_path):
    import numpy as np

    from vidgen.toyworld import is_held_out, make_sample, parse_caption
    from vidgen.toyworld.judge import judge_frames
    from vidgen.errors import ConfigError
    from vidgen.metrics.preprocess import get_preprocess
    from vidgen.toyworld.streams import reversed_twin, viclip_stream
    from vidgen.training.viclip import ViCLIPTrainConfig

    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    rng = np.random.default_rng(0)
    twins = 0
    for index in range(30):
        sample = make_sample(index, num_frames=8, size=32, split="train")
        twin = reversed_twin(sample, rng)
        if sample.attrs.motion.value == "still":
            assert twin is None
            continue
        if twin is None:  # the flipped direction would be a held-out combination
            assert is_held_out(type(sample.attrs)(**{**sample.attrs.as_dict(), "motion": opposite[sample.attrs.motion.value]}))
            continue
        twins += 1
        assert np.array_equal(twin.frames, sample.frames[::-1])
        assert twin.attrs.motion.value == opposite[sample.attrs.motion.value] == parse_caption(twin.caption.text)["motion"]
        assert judge_frames(twin.frames).motion == twin.attrs.motion.value and not is_held_out(twin.attrs)
    assert twins >= 10

    cfg = load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", "size=tiny", "batch_size=20",
                                                   "data.source=toyworld", "data.stream.reversed_twins=0.3",
                                                   "data.stream.render_size=16"])
    stream = viclip_stream(cfg, get_preprocess("demo", 4, 16))
    videos, captions, groups = stream.batch(0, cfg.batch_size)
    assert videos.shape[:2] == (20, 4) and len(captions) == groups.shape[0] == 20
    assert len(set(groups.tolist())) >= 15  # twins differ from their originals in the direction
    bad = load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", "data.source=toyworld",
                                                    "data.stream.reversed_twins=1.0"])
    with pytest.raises(ConfigError, match="data.stream.reversed_twins"):
        viclip_stream(bad, get_preprocess("demo", 4, 16))


@pytest.mark.parametrize("temporal_init", ["zeros", "normal"])
def test_viclip_temporal_init_decides_whether_a_fresh_model_sees_frame_order(tmp_path, temporal_init):
    import numpy as np
    import torch

    from vidgen.toyworld import make_sample
    from vidgen.metrics.preprocess import get_preprocess
    from vidgen.training.viclip import ViCLIPTrainConfig, build_model

    cfg = load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", "size=tiny", "model.image_size=16",
                                                   "model.num_frames=4", f"temporal_init={temporal_init}"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    frames = make_sample(1, num_frames=4, size=16).frames
    preprocess = get_preprocess("demo", 4, 16)
    video = torch.stack([preprocess.transform(frames), preprocess.transform(np.ascontiguousarray(frames[::-1]))])
    with torch.no_grad():
        forward, backward = model.encode_video(video)
    gap = float((forward - backward).abs().max())
    if temporal_init == "zeros":
        assert gap < 1e-4  # attention over all tokens without a time signal cannot tell the order
    else:
        assert gap > 1e-3


def test_viclip_locked_to_a_pipeline_text_encoder_keeps_that_encoder(tiny_parts, tmp_path):
    """The shipped ViCLIP's recipe: a video tower trained against the denoiser's own frozen text encoder."""
    import torch

    from vidgen.errors import ConfigError
    from vidgen.models.tokenizer import CLIPBPETokenizer
    from vidgen.models.viclip_io import load_viclip, viclip_text_to_clip_text_model
    from vidgen.toyworld.streams import VICLIP_STREAMS
    from vidgen.training.viclip import ViCLIPTrainConfig, build_model, train_viclip

    root = tiny_parts[0]
    first = load_viclip(root / "viclip" / "viclip")
    encoder = viclip_text_to_clip_text_model(first)
    with torch.no_grad():  # stands in for the sharpened encoder: a tower that differs from the first ViCLIP's
        for p in encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    encoder.save_pretrained(tmp_path / "text_encoder")
    overrides = [f"init_text={root / 'viclip' / 'viclip'}", f"text_encoder={tmp_path / 'text_encoder'}",
                 "freeze_text=true", "train_text_projection=true", *TINY_VICLIP, "steps=4"]
    train_viclip(load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path / 'final'}", *overrides]),
                 progress=False, streams=VICLIP_STREAMS)
    final = load_viclip(tmp_path / "final" / "viclip")
    ids = CLIPBPETokenizer(32)(["a red circle moves left", "a blue square moves up on a white background"])
    with torch.no_grad():
        torch.testing.assert_close(final.text_encoder.hidden_states(ids), encoder(input_ids=ids).last_hidden_state,
                                   atol=1e-3, rtol=0)  # the saved tower is the encoder, untouched by training
        assert not torch.allclose(final.text_encoder.text_projection, first.text_encoder.text_projection)
    with pytest.raises(ConfigError, match="train_text_projection"):
        load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", "train_text_projection=true"])
    with pytest.raises(ConfigError, match="init takes the whole model"):
        build_model(load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", f"init={root / 'viclip' / 'viclip'}",
                                                             f"text_encoder={tmp_path / 'text_encoder'}"]))
    with pytest.raises(ConfigError, match="text_encoder: .*config.json missing"):
        build_model(load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", *TINY_VICLIP,
                                                             f"text_encoder={tmp_path / 'nowhere'}"]))


def test_viclip_trainer_rejects_unknown_model_fields(tmp_path):
    from vidgen.errors import ConfigError
    from vidgen.training.viclip import ViCLIPTrainConfig, build_model

    cfg = load_config(ViCLIPTrainConfig, overrides=[f"output_dir={tmp_path}", "size=tiny", "model.widht=3"])
    with pytest.raises(ConfigError, match="widht"):
        build_model(cfg)


def test_base_folder_trains_and_validates_with_judge_and_viclip(tiny_parts, tmp_path):
    from transformers import CLIPTokenizer

    from vidgen.models.assemble import write_base_folder
    from vidgen.toyworld.streams import SCORERS
    from vidgen.training.loop import train

    root, _, _ = tiny_parts
    base = write_base_folder(root / "vae" / "vae", root / "viclip" / "viclip", tmp_path / "base")
    tok = CLIPTokenizer.from_pretrained(str(base / "tokenizer"))
    assert tok.model_max_length == 32 and tok("a red circle", padding="max_length").input_ids[-1] == 0
    cfg = tiny_config(base, tmp_path / "run", "model.denoiser=fresh", "model.preset=tiny", "train.max_steps=2",
                      "model.prediction_type=v_prediction", "validation.prompts=[a red circle moves left on a white background]",
                      "validation.sampling.frames=4", "validation.sampling.height=16", "validation.sampling.width=16",
                      "validation.sampling.steps=2", f"validation.viclip={root / 'viclip' / 'viclip'}",
                      "validation.scorers=[judge]")
    result = train(cfg, dataset=ClipTensors(size=16), collate_fn=collate, scorers=SCORERS)
    assert {"clipsim", "judge_color", "judge_shape", "judge_motion", "judge_background", "judge_all"} <= result.validation.keys()
    assert (tmp_path / "run" / "validation" / "step-000002" / "000-a-red-circle-moves-left-on-a-white-background.mp4").is_file()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val/judge_all" in r for r in logged)


def test_eval_suite_writes_table_json_and_contact_sheet(tiny_motion_model, tiny_parts, tmp_path, capsys):
    root, _, _ = tiny_parts
    out = tmp_path / "eval"
    rc = main(["eval", "--model", str(tiny_motion_model), "--viclip", str(root / "viclip" / "viclip"), "--n", "4",
               "--out", str(out), "--steps", "2", "sampling.frames=6", "sampling.height=16", "sampling.width=16", "--fvd"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| held_out | 2 |" in printed and "| seen | 2 |" in printed
    assert "ViCLIP FVD over 4 clips: generated vs real" in printed
    results = json.loads((out / "results.json").read_text())
    fvd = results["summary"]["fvd"]
    assert fvd["clips"] == 4 and math.isfinite(fvd["generated_vs_real"]) and math.isfinite(fvd["real_vs_real"])
    assert len(results["items"]) == 4
    assert {i["split"] for i in results["items"]} == {"seen", "held_out"}
    assert all(math.isfinite(i["clipsim"]) and math.isfinite(i["clipsim_real"]) for i in results["items"])
    from PIL import Image

    with Image.open(out / "contact_sheet.png") as im:
        assert im.width > 100 and im.height > 40
    assert main(["eval", "--model", str(tiny_motion_model), "--n", "4", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_eval_prompts_cover_held_out_pairs():
    from vidgen.toyworld import is_held_out, parse_caption
    from vidgen.toyworld.suites import EvalConfig, eval_prompts

    plan = eval_prompts(EvalConfig(n=120))
    held = [p for p in plan if p[1] == "held_out"]
    assert len(held) == 60 and all(is_held_out(attrs) for _, _, attrs, _ in held)
    assert all(not is_held_out(attrs) for _, split, attrs, _ in plan if split == "seen")
    for prompt, _, attrs, stated in plan:
        assert parse_caption(prompt) == {**attrs.as_dict(), "size": None}


def test_every_config_the_recipe_script_names_exists_and_loads():
    """scripts/train_default_model.sh must not name a config that is gone (it once lost the config of a stage)."""
    import re
    from pathlib import Path

    from vidgen.toyworld import ToyWorldConfig
    from vidgen.training.config import TrainConfig
    from vidgen.training.vae import VAETrainConfig
    from vidgen.training.viclip import ViCLIPTrainConfig

    root = Path(__file__).resolve().parents[2]
    script = (root / "scripts" / "train_default_model.sh").read_text()
    named = sorted(set(re.findall(r"configs/[\w/.-]+\.yaml", script)))
    schemas = {"vae": VAETrainConfig, "viclip": ViCLIPTrainConfig, "world": ToyWorldConfig}
    assert "configs/train/toy.yaml" in named and len(named) >= 4  # vae, viclip, world, denoiser
    for rel in named:
        assert (root / rel).is_file(), f"{rel} is named by the recipe but missing"
        load_config(schemas.get(Path(rel).stem.split("_")[0], TrainConfig), [root / rel])
    for script_name in re.findall(r"scripts/[\w.-]+\.py", script):
        assert (root / script_name).is_file(), script_name


def _run_recipe(tmp_path, fail_on: str | None = None):
    """Run scripts/train_default_model.sh with ``vidgen`` and ``python`` replaced by loggers; returns (rc, calls)."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name in ("vidgen", "python"):
        (fake / name).write_text(f"""#!/usr/bin/env bash
echo "{name} $*" >> "{log}"
if [[ -n "${{FAIL_ON:-}}" && "$*" == *"$FAIL_ON"* ]]; then exit 3; fi
""")
        (fake / name).chmod(0o755)
    log.write_text("")
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "ckpt"),
           "FAIL_ON": fail_on or ""}
    proc = subprocess.run(["bash", str(root / "scripts" / "train_default_model.sh")], env=env, capture_output=True, text=True)
    return proc.returncode, log.read_text().splitlines()


def test_recipe_skips_finished_steps_and_resumes_a_cut_denoiser_stage(tmp_path):
    stages = ["first", "shift", "order", "order2", "order3"]
    rc, calls = _run_recipe(tmp_path, fail_on="denoiser_order ")  # the first third-stage run fails
    assert rc == 3
    done = {p.name for p in (tmp_path / "run" / "done").iterdir()}
    assert done == {"vae", "viclip", "base", "world", "filter", "text", "viclip_final", "clips", "shards", "cache",
                    "denoiser_first",
                    "denoiser_shift"}  # a failed step leaves no marker
    assert all(f.read_text().endswith(" s\n") for f in (tmp_path / "run" / "done").iterdir())
    assert not any("--resume" in c for c in calls)
    # The cut stage left a checkpoint: the re-run skips every finished step and resumes that stage.
    checkpoint = tmp_path / "run" / "denoiser_order" / "checkpoint-000250"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    rc, calls = _run_recipe(tmp_path)
    assert rc == 0
    assert calls[0].startswith("vidgen train --config configs/train/toy_order.yaml") and calls[0].endswith("--resume latest")
    assert [c.split()[:2] for c in calls] == [["vidgen", "train"], ["vidgen", "export"]] * 3 + [
        ["python", "scripts/finalize_default_model.py"]]
    rc, calls = _run_recipe(tmp_path)
    assert rc == 0 and calls == []
    # Redoing a step redoes every later one, and a later stage's checkpoints are stale then: no resume.
    (tmp_path / "run" / "done" / "cache").unlink()
    rc, calls = _run_recipe(tmp_path)
    assert rc == 0
    exports = [c.split()[2] for c in calls if c.startswith("vidgen export")]
    assert calls[0].startswith("vidgen data cache") and exports == [str(tmp_path / "run" / f"denoiser_{s}") for s in stages]
    assert calls[-1].startswith("python scripts/finalize_default_model.py --model " + str(tmp_path / "run" / "model_order3"))
    assert not any("--resume" in c for c in calls) and not checkpoint.exists()


def _card_inputs():
    summary = {split: {"n": 2, **{a: 1.0 for a in ("color", "shape", "motion", "background", "all")}}
               for split in ("all", "seen", "held_out")}
    reports = {"vae": {"psnr_db": 29.0, "judge_color": 1.0, "judge_shape": 0.9, "judge_motion": 1.0, "judge_background": 1.0},
               "viclip": {"t2v_recall@1": 0.9, "t2v_recall@5": 1.0, "v2t_recall@1": 0.9},
               "text_encoder": {f"separation_{w}": {k: 0.5 for k in ("left/right", "up/down", "circle/square")}
                                for w in ("before", "after")}}
    return summary, "| table |", reports, 0.001, [("a red circle", "00.gif", True)], 3.0


def test_model_card_lists_the_recipe_steps_in_order_with_their_times(tmp_path):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("finalize_default_model", root / "scripts" / "finalize_default_model.py")
    finalize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finalize)
    done = tmp_path / "done"
    done.mkdir()
    for name, text in [("cache", "200 s"), ("vae", "1860 s (an earlier run (same config))"), ("denoiser_first", "2000 s"),
                       ("zz", "5 s"), ("text", ""), ("finalize", "9 s"), ("world.tmp", "3")]:
        (done / name).write_text(text + "\n")
    steps = finalize._step_times(tmp_path)
    assert steps == [("vae", 1860.0, "an earlier run (same config)"), ("text", None, ""), ("cache", 200.0, ""),
                     ("denoiser_first", 2000.0, ""), ("zz", 5.0, "")]
    card = finalize.model_card(*_card_inputs(), steps, "a 2-core CPU")
    assert "about 1.1 h on a 2-core CPU" in card  # 4065 s; the hand-made marker counts nothing
    assert "| vae | 31.0 | an earlier run (same config) |" in card and "| text | ? |" in card
    assert "vocabulary trimmed" not in card
    assert "vocabulary trimmed to the 844 of CLIP's 49408" in finalize.model_card(*_card_inputs(), steps, vocabulary=844)


def test_text_encoder_tuning_pushes_direction_captions_apart(tiny_parts, tmp_path):
    """scripts/tune_text_encoder.py --separate: captions differing only in direction end further apart."""
    import importlib.util
    from pathlib import Path

    from vidgen.toyworld import make_sample
    from vidgen.models.assemble import write_base_folder

    root = tiny_parts[0]
    base = write_base_folder(root / "vae" / "vae", root / "viclip" / "viclip", tmp_path / "base")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"Caption": make_sample(i, size=16, num_frames=1).caption.text}) + "\n"
                            for i in range(64)))
    path = Path(__file__).resolve().parents[2] / "scripts" / "tune_text_encoder.py"
    spec = importlib.util.spec_from_file_location("tune_text_encoder", path)
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    out = tmp_path / "tuned"
    assert tune.main(["--base", str(base), "--rows", str(rows), "--out", str(out), "--steps", "30",
                      "--batch-size", "16", "--lr", "1e-3", "--separate", "1", "--keep", "0.1"]) == 0
    report = json.loads((out / "text_encoder_report.json").read_text())
    before, after = report["separation_before"], report["separation_after"]
    assert after["left/right"] > before["left/right"] + 0.1 and after["up/down"] > before["up/down"] + 0.1, report
    assert {p.name for p in out.iterdir()} >= {"vae", "tokenizer", "scheduler", "text_encoder"}
    assert tune.main(["--base", str(base), "--rows", str(rows), "--out", str(out), "--steps", "1"]) == 2  # no --overwrite


def test_finalize_writes_the_story_and_guidance_defaults_into_the_shipped_folder(tiny_motion_model, tiny_parts, tmp_path):
    """The fp16 copy keeps the export's sampling defaults and adds the shipped story and guidance-interval ones."""
    import importlib.util
    import shutil
    from pathlib import Path

    import yaml

    root = tiny_parts[0]
    spec = importlib.util.spec_from_file_location("finalize_default_model",
                                                  Path(__file__).resolve().parents[2] / "scripts" / "finalize_default_model.py")
    finalize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finalize)
    model = tmp_path / "model"
    shutil.copytree(tiny_motion_model, model)
    (model / "sample_defaults.yaml").write_text("frames: 4\nsteps: 2\nscheduler: ddim\nstory:\n  pin: clean\n")
    finalize._fp16_full_copy(model, root / "viclip" / "viclip", tmp_path / "out")
    written = yaml.safe_load((tmp_path / "out" / "sample_defaults.yaml").read_text())
    assert (written["frames"], written["steps"], written["guidance_interval"]) == (4, 2, [200, 1000])
    assert written["story"] == {"pin": "clean", "resample": 1}
