"""Opening the weights users hold: SD folders and single files + motion adapters, fp16 variants, LoRAs, pickles.

Every format is made in the test with diffusers' own classes at tiny sizes, and frames are compared with
diffusers' ``AnimateDiffPipeline`` on the same files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.weights_helpers import (motion_adapter, save_adapter_folder, save_config_folder, save_diffusers_lora,
                                   save_kohya_lora, save_original_adapter, save_sd_folder, save_single_file_sd,
                                   sd_pipeline)
from vidgen.errors import InputError, ModelLoadError
from vidgen.pipelines.loading import load_pipeline
from vidgen.pipelines.weights import WeightsSettings, open_motion_adapter, parse_lora_spec, resolve_variant

REPO = Path(__file__).resolve().parents[2]
KW = dict(num_frames=5, height=16, width=16, num_inference_steps=3, guidance_scale=6.0)


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """What users hold, written once: SD folder, fp16-only folder, single file + configs, adapters, LoRAs."""
    root = tmp_path_factory.mktemp("held")
    save_sd_folder(root / "sd")
    save_sd_folder(root / "sd_fp16", variant="fp16")
    save_single_file_sd(root / "sd.safetensors")
    save_config_folder(root / "sd_configs")
    save_adapter_folder(root / "adapter")
    save_original_adapter(root / "mm_original.safetensors", motion_adapter())
    save_diffusers_lora(root / "lora")
    save_kohya_lora(root / "lora_kohya.safetensors")
    return root


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def animatediff(sd, adapter, scheduler, lora=None, scale=1.0):
    from diffusers import AnimateDiffPipeline, MotionAdapter

    pipe = AnimateDiffPipeline.from_pretrained(str(sd), motion_adapter=MotionAdapter.from_pretrained(str(adapter)))
    if lora:
        pipe.load_lora_weights(str(lora), adapter_name="style")
        pipe.set_adapters(["style"], [scale])
    pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    return pipe


def frames_of(pipe, prompt="a red circle moves right", **kwargs):
    out = pipe(prompt, generator=gen(), negative_prompt="blurry", output_type="np", **{**KW, **kwargs}).frames
    return np.asarray(out)


def test_base_and_adapter_frames_equal_animatediff(held):
    ours = load_pipeline(weights=WeightsSettings(base=str(held / "sd"), motion_adapter=str(held / "adapter")), device="cpu")
    assert type(ours.unet).__name__ == "UNetMotionModel"
    theirs = animatediff(held / "sd", held / "adapter", ours.scheduler)
    np.testing.assert_allclose(frames_of(ours), frames_of(theirs), atol=1e-5)


def test_original_motion_module_file_opens_to_the_adapter_weights(held):
    """AnimateDiff's original layout, read with its config from the keys, equals the adapter (and diffusers' loader)."""
    from diffusers import MotionAdapter

    ours = open_motion_adapter(held / "mm_original.safetensors")
    reference = MotionAdapter.from_pretrained(str(held / "adapter"))
    assert dict(ours.config)["block_out_channels"] == (32, 64) or list(ours.config.block_out_channels) == [32, 64]
    a, b = ours.state_dict(), reference.state_dict()
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # diffusers' own single-file loader, given the adapter folder's config, reads the same file to the same weights
    theirs = MotionAdapter.from_single_file(str(held / "mm_original.safetensors"), config=str(held / "adapter"),
                                            local_files_only=True)
    assert all(torch.equal(a[k], theirs.state_dict()[k]) for k in a)


@pytest.mark.slow  # several CLI processes
def test_single_file_base_with_original_adapter_from_the_cli(held, tmp_path):
    out = tmp_path / "clip.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "vidgen", "sample", "--base", str(held / "sd.safetensors"), "--base-config",
         str(held / "sd_configs"), "--motion-adapter", str(held / "mm_original.safetensors"), "--prompt", "a red circle",
         "--frames", "4", "--steps", "2", "--height", "16", "--width", "16", "--out", str(out), "--no-progress"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.with_suffix(".yaml").is_file()
    settings = out.with_suffix(".yaml").read_text()
    assert "mm_original.safetensors" in settings and "base_config" in settings


@pytest.mark.slow  # several CLI processes
def test_story_and_eval_take_the_same_weight_flags(held, tmp_path):
    flags = ["--base", held / "sd_fp16", "--motion-adapter", held / "adapter", "--lora", f"{held / 'lora_kohya.safetensors'}:0.5",
             "--steps", "2", "--height", "16", "--width", "16"]
    story = run_cli("story", *flags, "--prompt", "a red circle", "--prompt", "a blue circle", "--frames-per-clip", "4",
                    "--out", tmp_path / "story")
    assert story.returncode == 0, story.stderr
    assert (tmp_path / "story" / "story.mp4").is_file()
    settings = json.loads((tmp_path / "story" / "settings.json").read_text())
    assert settings["model"].startswith(str(held / "sd_fp16")) and "lora_kohya" in settings["model"]
    assert settings["weights"]["motion_adapter"] == str(held / "adapter")
    evaluated = run_cli("eval", *flags, "--n", "2", "--frames", "8", "--batch-size", "2", "--out", tmp_path / "eval", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout)
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["config"]["model"].startswith(str(held / "sd_fp16"))
    assert summary["suite"] == "toyworld"


def test_single_file_base_equals_its_folder(held):
    folder = load_pipeline(weights=WeightsSettings(base=str(held / "sd"), motion_adapter=str(held / "adapter")), device="cpu")
    single = load_pipeline(weights=WeightsSettings(base=str(held / "sd.safetensors"), base_config=str(held / "sd_configs"),
                                                   motion_adapter=str(held / "mm_original.safetensors")), device="cpu")
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(folder, name).state_dict(), getattr(single, name).state_dict()
        assert set(a) == set(b), name
        assert all(torch.equal(a[k], b[k]) for k in a), name
    np.testing.assert_array_equal(frames_of(folder), frames_of(single))


def test_fp16_variant_only_folder_is_chosen_automatically(held):
    assert resolve_variant(held / "sd_fp16", ("vae", "text_encoder", "unet"), None) == "fp16"
    assert resolve_variant(held / "sd", ("vae", "text_encoder", "unet"), None) is None
    pipe = load_pipeline(weights=WeightsSettings(base=str(held / "sd_fp16"), motion_adapter=str(held / "adapter")), device="cpu")
    reference = sd_pipeline().unet.state_dict()
    loaded = pipe.unet.state_dict()
    assert pipe.unet.dtype == torch.float32  # fp16 files, loaded in the dtype asked for
    assert all(torch.equal(loaded[k], reference[k].half().float()) for k in reference)
    with pytest.raises(ModelLoadError, match="holds no 'bf16' weight variant"):
        load_pipeline(weights=WeightsSettings(base=str(held / "sd_fp16"), motion_adapter=str(held / "adapter"),
                                              variant="bf16"), device="cpu")


def test_several_variants_without_plain_files_ask_for_one(held, tmp_path):
    folder = shutil.copytree(held / "sd_fp16", tmp_path / "two")
    for f in list(folder.glob("*/*.fp16.safetensors")):
        shutil.copy(f, f.with_name(f.name.replace(".fp16.", ".bf16.")))
    with pytest.raises(ModelLoadError, match=r"several weight variants \(bf16, fp16\).*--variant"):
        resolve_variant(folder, ("vae", "text_encoder", "unet"), None)
    assert resolve_variant(folder, ("vae", "text_encoder", "unet"), "bf16") == "bf16"


def test_model_folder_with_fp16_variant_only(tiny_motion_model, tmp_path):
    """A complete video model folder whose weights are only the fp16 variant, as many published repos ship."""
    from vidgen.pipelines import TextToVideoPipeline

    folder = tmp_path / "video_fp16"
    reference = TextToVideoPipeline.from_pretrained(str(tiny_motion_model))
    reference.to(torch.float16).save_pretrained(str(folder), safe_serialization=True, variant="fp16")
    pipe = load_pipeline(folder, device="cpu")
    assert all(torch.equal(v, reference.unet.state_dict()[k]) for k, v in pipe.unet.state_dict().items())


@pytest.mark.parametrize("layout", ["diffusers", "kohya"])
def test_lora_frames_equal_animatediff_load_lora_weights(held, layout):
    lora = held / "lora" / "pytorch_lora_weights.safetensors" if layout == "diffusers" else held / "lora_kohya.safetensors"
    weights = WeightsSettings(base=str(held / "sd"), motion_adapter=str(held / "adapter"), lora=[f"{lora}:0.7"])
    ours = load_pipeline(weights=weights, device="cpu")
    theirs = animatediff(held / "sd", held / "adapter", ours.scheduler, lora=lora, scale=0.7)
    plain = load_pipeline(weights=WeightsSettings(base=str(held / "sd"), motion_adapter=str(held / "adapter")), device="cpu")
    a = frames_of(ours)
    np.testing.assert_allclose(a, frames_of(theirs), atol=1e-5)
    assert np.abs(a - frames_of(plain)).max() > 1e-3  # the LoRA changed the frames


def test_lora_on_a_model_folder_and_a_folder_spec(held, tiny_motion_model, tmp_path):
    """A LoRA for the tiny video model's own U-Net, given as its folder, applies to --model too."""
    from vidgen.pipelines import TextToVideoPipeline
    from tests.weights_helpers import lora_state

    unet = TextToVideoPipeline.from_pretrained(str(tiny_motion_model)).unet
    folder = tmp_path / "model_lora"
    save_diffusers_lora(folder, lora_state(unet=unet))
    pipe = load_pipeline(tiny_motion_model, device="cpu", weights=WeightsSettings(lora=[str(folder)]))
    assert pipe.get_active_adapters() == ["lora_0"]


def test_parse_lora_spec(tmp_path):
    assert parse_lora_spec("style.safetensors") == (Path("style.safetensors"), 1.0)
    assert parse_lora_spec("a/b.safetensors:0.5") == (Path("a/b.safetensors"), 0.5)
    assert parse_lora_spec("C:/loras/x.safetensors") == (Path("C:/loras/x.safetensors"), 1.0)
    named = tmp_path / "style:v2.safetensors"
    named.write_bytes(b"")
    assert parse_lora_spec(str(named)) == (named, 1.0)  # an existing file with ':' in its name
    for bad in ("x.safetensors:nan", "x.safetensors:big", ":0.5"):
        with pytest.raises(InputError):
            parse_lora_spec(bad)


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written

def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vidgen", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow  # several CLI processes
def test_adapter_that_does_not_fit_the_base(held, tmp_path):
    save_adapter_folder(tmp_path / "wide", channels=(64, 128))  # another base's shape (as SDXL's is to SD 1.5)
    out = tmp_path / "v.mp4"
    result = run_cli("sample", "--base", held / "sd", "--motion-adapter", tmp_path / "wide", "--prompt", "x", "--out", out)
    one_line_error(result, "does not fit the base U-Net", "[64, 128]", "[32, 64]")
    assert not out.exists()


@pytest.mark.slow  # several CLI processes
def test_adapter_file_with_missing_or_foreign_keys(held, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(held / "mm_original.safetensors"))
    cut = {k: v for k, v in state.items() if "attention_blocks.1" not in k}
    save_file(cut, str(tmp_path / "cut.safetensors"))
    result = run_cli("sample", "--base", held / "sd", "--motion-adapter", tmp_path / "cut.safetensors", "--prompt", "x",
                     "--out", tmp_path / "v.mp4")
    one_line_error(result, "cut.safetensors", "does not fit a MotionAdapter", "missing")
    save_file({"model.diffusion_model.conv_in.weight": torch.zeros(1)}, str(tmp_path / "sd_unet.safetensors"))
    result = run_cli("sample", "--base", held / "sd", "--motion-adapter", tmp_path / "sd_unet.safetensors", "--prompt", "x")
    one_line_error(result, "holds no AnimateDiff motion modules")


@pytest.mark.slow  # several CLI processes
def test_pickle_with_code_is_refused_and_plain_pickles_open(held, tmp_path):
    from safetensors.torch import load_file

    class Boom:
        def __reduce__(self):
            return (print, ("unpickled with code",))

    torch.save({"state_dict": Boom()}, tmp_path / "evil.ckpt")
    result = run_cli("sample", "--base", held / "sd", "--motion-adapter", tmp_path / "evil.ckpt", "--prompt", "x")
    one_line_error(result, "evil.ckpt", "needs code to load", "weights_only=True")
    assert "unpickled with code" not in result.stdout
    torch.save(load_file(str(held / "mm_original.safetensors")), tmp_path / "mm.ckpt")  # how AnimateDiff ships it
    adapter = open_motion_adapter(tmp_path / "mm.ckpt")
    assert list(adapter.config.block_out_channels) == [32, 64]


@pytest.mark.slow  # several CLI processes
def test_lora_for_another_architecture(held, tmp_path):
    from safetensors.torch import save_file

    save_file({"lora_unet_input_blocks_9_1_proj_in.lora_down.weight": torch.zeros(4, 1280),
               "lora_unet_input_blocks_9_1_proj_in.lora_up.weight": torch.zeros(1280, 4)}, str(tmp_path / "xl.safetensors"))
    result = run_cli("sample", "--base", held / "sd", "--motion-adapter", held / "adapter", "--lora",
                     tmp_path / "xl.safetensors", "--prompt", "x", "--out", tmp_path / "v.mp4")
    one_line_error(result, "xl.safetensors", "does not fit this model")
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.slow  # several CLI processes
def test_base_without_its_parts(held, tmp_path):
    folder = shutil.copytree(held / "sd", tmp_path / "novae")
    shutil.rmtree(folder / "vae")
    result = run_cli("sample", "--base", folder, "--motion-adapter", held / "adapter", "--prompt", "x")
    one_line_error(result, "missing its vae/ subfolder")
    from safetensors.torch import load_file, save_file

    unet_only = {k: v for k, v in load_file(str(held / "sd.safetensors")).items() if k.startswith("model.")}
    save_file(unet_only, str(tmp_path / "unet_only.safetensors"))
    result = run_cli("sample", "--base", tmp_path / "unet_only.safetensors", "--base-config", held / "sd_configs",
                     "--motion-adapter", held / "adapter", "--prompt", "x")
    one_line_error(result, "holds the U-Net only", "VAE and text encoder")


def _to_pickle(weights: Path) -> None:
    """Replace a component's safetensors file by the same weights as a pickle (as older repositories hold them)."""
    from safetensors.torch import load_file

    torch.save(load_file(str(weights)), weights.with_suffix(".bin"))
    weights.unlink()


@pytest.mark.slow  # several CLI processes
def test_loaders_print_only_vidgen_s_one_line(held, tiny_motion_model, tmp_path):
    """diffusers logs its own "An error occurred while trying to fetch ..." before raising; vidgen says it once."""
    model = shutil.copytree(tiny_motion_model, tmp_path / "model")
    _to_pickle(model / "unet" / "diffusion_pytorch_model.safetensors")
    shutil.copy(model / "vae" / "diffusion_pytorch_model.safetensors", model / "unet" / "decoy.safetensors")
    one_line_error(run_cli("sample", "--model", model, "--prompt", "x", "--out", tmp_path / "v.mp4"),
                   "unet/ holds only pickle weights (diffusion_pytorch_model.bin)", "decoy.safetensors")
    base = shutil.copytree(held / "sd", tmp_path / "sd_vae_bin")
    _to_pickle(base / "vae" / "diffusion_pytorch_model.safetensors")
    shutil.copy(base / "unet" / "diffusion_pytorch_model.safetensors", base / "vae" / "decoy.safetensors")
    one_line_error(run_cli("sample", "--base", base, "--motion-adapter", held / "adapter", "--prompt", "x",
                           "--out", tmp_path / "v.mp4"), "vae/ holds only pickle weights (diffusion_pytorch_model.bin)")
    (base / "vae" / "decoy.safetensors").unlink()
    one_line_error(run_cli("train", "--config", REPO / "configs" / "train" / "tiny.yaml", f"model.base={base}",
                           "model.denoiser=inflate", "model.preset=null", f"output_dir={tmp_path / 'run'}", cwd=tmp_path),
                   "vae/ holds only pickle weights (diffusion_pytorch_model.bin)")
    assert not (tmp_path / "v.mp4").exists() and not list(tmp_path.glob("run/checkpoint-*"))


@pytest.mark.parametrize("args, fragment", [
    (["--base", "SD"], "needs weights.motion_adapter"),
    (["--motion-adapter", "MA"], "needs weights.base"),
    (["--model", "M", "--base", "SD", "--motion-adapter", "MA"], "not both"),
    (["--lora", "x.safetensors:inf"], "finite"),
    (["--variant", "../x"], "weights.variant"),
])
def test_bad_weight_flags(args, fragment, tmp_path):
    one_line_error(run_cli("sample", *args, "--prompt", "x", "--out", tmp_path / "v.mp4"), fragment)


def test_video_model_given_as_base_points_at_model(held, tiny_motion_model):
    with pytest.raises(ModelLoadError, match="pass it as --model"):
        load_pipeline(weights=WeightsSettings(base=str(tiny_motion_model), motion_adapter=str(held / "adapter")))


def test_index_of_the_sd15_configs_is_complete():
    from vidgen.pipelines.weights import SD15_CONFIG_DIR

    index = json.loads((SD15_CONFIG_DIR / "model_index.json").read_text())
    for name in ("unet", "vae", "text_encoder", "scheduler"):
        assert name in index and (SD15_CONFIG_DIR / name).is_dir()
    unet = json.loads((SD15_CONFIG_DIR / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["cross_attention_dim"] == 768
