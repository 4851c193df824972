"""Fine-tune from what users hold, give back what others open.

Train 2 steps from a Stable Diffusion folder + an AnimateDiff motion adapter, export every format, open each
with plain diffusers in a process that never imports vidgen, and compare its frames with vidgen's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tests.train_helpers import ClipTensors, collate, tiny_config
from tests.weights_helpers import save_adapter_folder, save_original_adapter, save_sd_folder
from vidgen.errors import InputError
from vidgen.pipelines.loading import load_pipeline
from vidgen.pipelines.weights import WeightsSettings

pytestmark = pytest.mark.slow  # each test trains, exports and opens the result in a second process

SAMPLE = dict(prompt="a red circle moves right", negative_prompt="blurry", num_frames=5, height=16, width=16,
              num_inference_steps=3, guidance_scale=6.0)

# Runs in a fresh interpreter: plain diffusers only, and proves it never imported vidgen.
PLAIN_DIFFUSERS = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from diffusers import AnimateDiffPipeline, DiffusionPipeline, MotionAdapter
    task = json.loads(sys.argv[1])
    sample = task["sample"]

    def frames(pipe):
        pipe.set_progress_bar_config(disable=True)
        out = pipe(**sample, generator=torch.Generator().manual_seed(1), output_type="np").frames
        return np.asarray(out)

    result = {}
    if "folder" in task:
        pipe = DiffusionPipeline.from_pretrained(task["folder"])
        result["folder_class"] = type(pipe).__name__
        np.save(task["out"] + "/folder.npy", frames(pipe))
    if "adapter" in task:
        adapter = MotionAdapter.from_pretrained(task["adapter"])
        pipe = AnimateDiffPipeline.from_pretrained(task["sd"], motion_adapter=adapter)
        np.save(task["out"] + "/adapter.npy", frames(pipe))
        single = MotionAdapter.from_single_file(task["single"], config=task["adapter"], local_files_only=True)
        a, b = adapter.state_dict(), single.state_dict()
        result["single_equals_adapter"] = set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    if "lora" in task:
        pipe = AnimateDiffPipeline.from_pretrained(task["sd"], motion_adapter=MotionAdapter.from_pretrained(task["base_adapter"]))
        pipe.load_lora_weights(task["lora"])
        np.save(task["out"] + "/lora.npy", frames(pipe))
    result["vidgen_imported"] = any(name == "vidgen" or name.startswith("vidgen.") for name in sys.modules)
    print(json.dumps(result))
""")


def plain_diffusers(tmp_path, **task):
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_DIFFUSERS)
    task = {"sample": SAMPLE, "out": str(tmp_path), **{k: str(v) for k, v in task.items()}}
    result = subprocess.run([sys.executable, str(script), json.dumps(task)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("vidgen_imported") is False
    return report


def vidgen_frames(pipe):
    out = pipe(**SAMPLE, generator=torch.Generator().manual_seed(1), output_type="np").frames
    return np.asarray(out)


def safetensors_dtypes(folder):
    from safetensors import safe_open

    found = set()
    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            found |= {str(handle.get_slice(k).get_dtype()) for k in handle.keys()}
    return found


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    root = tmp_path_factory.mktemp("held_export")
    save_sd_folder(root / "sd")
    save_adapter_folder(root / "adapter")
    save_original_adapter(root / "mm_original.safetensors")
    return root


def train_run(held, out, *overrides):
    from vidgen.training.loop import train

    cfg = tiny_config(held / "sd", out, "model.denoiser=adapter", f"model.motion_adapter={held / 'adapter'}",
                      "train.max_steps=2", "data.num_frames=4", "data.height=16", "data.width=16", *overrides)
    return train(cfg, dataset=ClipTensors(), collate_fn=collate)


def test_adapter_run_trains_motion_modules_and_every_export_opens_in_plain_diffusers(held, tmp_path):
    from diffusers import MotionAdapter, UNet2DConditionModel

    from vidgen.training.export import export_model

    run = train_run(held, tmp_path / "run")
    folder = export_model(tmp_path / "run", tmp_path / "model", use_ema=False)
    adapter_dir = export_model(tmp_path / "run", tmp_path / "adapter", use_ema=False, format="motion-adapter")
    single = export_model(tmp_path / "run", tmp_path / "mm_finetuned.safetensors", use_ema=False, format="single-file")
    assert run.checkpoint.is_dir()

    # temporal-only by default: the image weights are Stable Diffusion's to the bit, the motion modules moved
    sd_unet = UNet2DConditionModel.from_pretrained(str(held / "sd" / "unet")).state_dict()
    ours = load_pipeline(folder, device="cpu")
    trained = ours.unet.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in sd_unet.items() if k in trained)
    before = MotionAdapter.from_pretrained(str(held / "adapter")).state_dict()
    after = MotionAdapter.from_pretrained(str(adapter_dir)).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if not k.endswith("pe"))
    assert safetensors_dtypes(folder) == {"F32"}

    report = plain_diffusers(tmp_path, folder=folder, sd=held / "sd", adapter=adapter_dir, single=single)
    assert report == {"folder_class": "AnimateDiffPipeline", "single_equals_adapter": True}
    np.testing.assert_allclose(np.load(tmp_path / "folder.npy"), vidgen_frames(ours), atol=1e-5)
    assembled = load_pipeline(weights=WeightsSettings(base=str(held / "sd"), motion_adapter=str(single)), device="cpu")
    np.testing.assert_allclose(np.load(tmp_path / "adapter.npy"), vidgen_frames(assembled), atol=1e-5)


def test_motion_lora_run_exports_a_lora_animatediff_applies(held, tmp_path):
    from vidgen.training.export import export_model

    train_run(held, tmp_path / "run", "model.trainable=lora", "model.lora_layers=motion", "model.lora_rank=4",
              "model.lora_alpha=8", "optim.lr=0.05")  # alpha != rank: the file must carry the scaling
    lora = export_model(tmp_path / "run", tmp_path / "lora", use_ema=False, format="lora")
    from safetensors.torch import load_file

    keys = list(load_file(str(lora / "pytorch_lora_weights.safetensors")))
    assert keys and all(k.startswith("unet.") and ".motion_modules." in k for k in keys)
    report = plain_diffusers(tmp_path, sd=held / "sd", base_adapter=held / "adapter", lora=lora)
    assert report == {}
    ours = load_pipeline(weights=WeightsSettings(base=str(held / "sd"), motion_adapter=str(held / "mm_original.safetensors"),
                                                 lora=[str(lora)]), device="cpu")
    np.testing.assert_allclose(np.load(tmp_path / "lora.npy"), vidgen_frames(ours), atol=1e-5)
    plain = load_pipeline(weights=WeightsSettings(base=str(held / "sd"), motion_adapter=str(held / "adapter")), device="cpu")
    assert np.abs(vidgen_frames(plain) - vidgen_frames(ours)).max() > 1e-4  # the trained LoRA does something
    fused = export_model(tmp_path / "run", tmp_path / "fused", use_ema=False)  # the same LoRA fused into a folder
    np.testing.assert_allclose(vidgen_frames(load_pipeline(fused, device="cpu")), vidgen_frames(ours), atol=1e-4)


def test_spatial_lora_targets_only_image_layers(held):
    from vidgen.pipelines.weights import motion_unet, open_base, open_motion_adapter
    from vidgen.training.config import ModelConfig
    from vidgen.training.models import select_trainable

    unet = motion_unet(open_base(held / "sd")["unet"], open_motion_adapter(held / "adapter"))
    cfg = ModelConfig(base=str(held / "sd"), denoiser="adapter", motion_adapter=str(held / "adapter"),
                      trainable="lora", lora_layers="spatial", lora_rank=2)
    select_trainable(unet, cfg)
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "motion_modules" not in n for n in names)


def test_fp16_export_and_format_errors(held, tmp_path):
    from vidgen.training.export import export_model

    train_run(held, tmp_path / "run")
    half = export_model(tmp_path / "run", tmp_path / "half", use_ema=False, dtype="fp16")
    assert safetensors_dtypes(half) == {"F16"}
    adapter = export_model(tmp_path / "run", tmp_path / "adapter16", use_ema=False, dtype="fp16", format="motion-adapter")
    assert safetensors_dtypes(adapter) == {"F16"}
    with pytest.raises(InputError, match="needs a run trained with model.trainable=lora"):
        export_model(tmp_path / "run", tmp_path / "x", format="lora")
    with pytest.raises(InputError, match="does not end in .safetensors"):
        export_model(tmp_path / "run", tmp_path / "mm.ckpt", format="single-file")
    result = subprocess.run([sys.executable, "-m", "vidgen", "export", str(tmp_path / "run"), "--out", str(tmp_path / "half"),
                             "--format", "motion-adapter"], capture_output=True, text=True)
    assert result.returncode == 2 and "exists" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_adapter_training_config_needs_its_adapter(held):
    from vidgen.errors import ConfigError
    from vidgen.training.config import ModelConfig

    with pytest.raises(ConfigError, match="model.denoiser=adapter and model.motion_adapter go together"):
        ModelConfig(base=str(held / "sd"), denoiser="adapter")
    assert ModelConfig(base=str(held / "sd"), denoiser="adapter", motion_adapter="x").trainable == "temporal"
    assert ModelConfig(base=str(held / "sd"), denoiser="inflate").trainable == "all"


def test_single_file_refuses_motion_modules_other_tools_would_misread(tmp_path):
    """The original layout cannot say the number of heads: a 4-head model (the shipped one's) is refused."""
    from vidgen.models.t2v import build_unet
    from vidgen.training.export import _write_original_motion_modules

    with pytest.raises(InputError, match="4 and 32"):
        _write_original_motion_modules(build_unet("motion", "tiny"), tmp_path / "mm.safetensors", overwrite=False)
    assert not (tmp_path / "mm.safetensors").exists()


def test_training_refuses_a_misspelt_variant(held):
    from vidgen.errors import ModelLoadError
    from vidgen.training.models import load_training_models

    cfg = tiny_config(held / "sd", "/nonexistent", "model.denoiser=adapter", f"model.motion_adapter={held / 'adapter'}",
                      "model.variant=fp61")
    with pytest.raises(ModelLoadError, match="holds no 'fp61' weight variant"):
        load_training_models(cfg.model)
