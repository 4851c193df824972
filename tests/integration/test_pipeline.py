"""TextToVideoPipeline on tiny random models: shapes, determinism, round trips, schedulers, parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidgen.errors import InputError, ModelLoadError
from vidgen.pipelines import TextToVideoPipeline, load_pipeline, make_scheduler, scheduler_names

SMALL = dict(num_frames=4, height=16, width=24, num_inference_steps=3)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def loaded():
    """Each tiny model folder opened once for this module (opening one takes longer than most tests)."""
    return {}


@pytest.fixture
def pipe(tiny_model, loaded):
    if tiny_model not in loaded:
        loaded[tiny_model] = load_pipeline(tiny_model, device="cpu")
    pipe = loaded[tiny_model]
    scheduler = pipe.scheduler
    yield pipe
    pipe.scheduler = scheduler  # a test may switch it


def test_output_shape_and_range(pipe):
    frames = pipe("a red circle moves left", generator=gen(0), **SMALL).frames
    assert frames.shape == (1, 4, 16, 24, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0


def test_same_seed_same_frames_and_other_seed_differs(pipe):
    a = pipe("a red circle", generator=gen(3), **SMALL).frames
    b = pipe("a red circle", generator=gen(3), **SMALL).frames
    c = pipe("a red circle", generator=gen(4), **SMALL).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_batching_does_not_change_results(pipe):
    together = pipe(["a red circle", "a blue square"], generator=[gen(1), gen(2)], **SMALL).frames
    alone = pipe("a blue square", generator=gen(2), **SMALL).frames
    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)


def test_negative_prompt_changes_the_result(pipe):
    a = pipe("a red circle", generator=gen(0), **SMALL).frames
    b = pipe("a red circle", negative_prompt="a blue square", generator=gen(0), **SMALL).frames
    assert np.abs(a - b).max() > 1e-4


@pytest.mark.slow
def test_save_load_round_trip(tiny_model, tmp_path):
    pipe = load_pipeline(tiny_model, device="cpu")
    pipe.save_pretrained(str(tmp_path / "copy"), safe_serialization=True)
    again = load_pipeline(tmp_path / "copy", device="cpu")
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(pipe("x", generator=gen(0), **SMALL).frames, again("x", generator=gen(0), **SMALL).frames)


@pytest.mark.parametrize("name", scheduler_names())
def test_every_scheduler_name_samples(tiny_motion_model, loaded, name):
    if tiny_motion_model not in loaded:
        loaded[tiny_motion_model] = load_pipeline(tiny_motion_model, device="cpu")
    shared = loaded[tiny_motion_model]
    pipe = TextToVideoPipeline(**{**shared.components, "scheduler": make_scheduler(name, shared.scheduler.config)})
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a green triangle", generator=gen(0), num_frames=2, height=16, width=16, num_inference_steps=4).frames
    assert frames.shape == (1, 2, 16, 16, 3) and np.isfinite(frames).all()


def test_unknown_scheduler_is_rejected(pipe):
    with pytest.raises(InputError, match="unknown scheduler 'warp'"):
        make_scheduler("warp", pipe.scheduler.config)


def test_matches_diffusers_animatediff_pipeline(tiny_motion_model):
    """Parity with a second implementation: diffusers' AnimateDiffPipeline on the same weights."""
    from diffusers import AnimateDiffPipeline

    ours = load_pipeline(tiny_motion_model, device="cpu", scheduler="dpm++")
    theirs = AnimateDiffPipeline(
        vae=ours.vae, text_encoder=ours.text_encoder, tokenizer=ours.tokenizer, unet=ours.unet,
        scheduler=ours.scheduler, motion_adapter=None,
    )
    theirs.set_progress_bar_config(disable=True)
    kwargs = dict(num_frames=6, height=16, width=16, num_inference_steps=4, guidance_scale=6.0, negative_prompt=["blurry", "dark"])
    a = ours(["a red circle", "a cat"], generator=[gen(1), gen(2)], **kwargs).frames
    b = np.asarray(theirs(["a red circle", "a cat"], generator=[gen(1), gen(2)], output_type="np", **kwargs).frames)
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("output_type, shape", [("pt", (1, 4, 3, 16, 24)), ("latent", (1, 4, 4, 8, 12))])
def test_tensor_output_types(pipe, output_type, shape):
    frames = pipe("x", generator=gen(0), output_type=output_type, **SMALL).frames
    assert tuple(frames.shape) == shape


def test_pil_output_and_decode_slicing_agree(pipe):
    whole = pipe("x", generator=gen(0), decode_chunk_size=16, **SMALL).frames
    sliced = pipe("x", generator=gen(0), decode_chunk_size=1, **SMALL).frames
    np.testing.assert_allclose(whole, sliced, atol=1e-5)
    pil = pipe("x", generator=gen(0), output_type="pil", **SMALL).frames
    assert len(pil) == 1 and len(pil[0]) == 4 and pil[0][0].size == (24, 16)


def test_guidance_one_skips_the_unconditional_branch(pipe):
    calls = []
    hook = pipe.unet.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    try:
        pipe("x", generator=gen(0), guidance_scale=1.0, **SMALL)
        pipe("x", generator=gen(0), guidance_scale=5.0, **SMALL)
    finally:
        hook.remove()
    assert calls == [1] * 3 + [2] * 3


def test_guidance_interval_guides_only_the_steps_inside_it(pipe):
    pipe.scheduler.set_timesteps(3)
    steps = [int(t) for t in pipe.scheduler.timesteps]  # e.g. 999, 666, 333 for trailing spacing
    calls = []
    hook = pipe.unet.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    try:
        outside = pipe("x", generator=gen(0), guidance_scale=5.0, guidance_interval=(steps[1], 1000), output_type="latent",
                       **SMALL).frames
    finally:
        hook.remove()
    assert calls == [2, 2, 1]  # the last step runs the prompt alone: one pass of batch 1
    every = pipe("x", generator=gen(0), guidance_scale=5.0, output_type="latent", **SMALL).frames
    covering = pipe("x", generator=gen(0), guidance_scale=5.0, guidance_interval=[0, 1000], output_type="latent", **SMALL).frames
    torch.testing.assert_close(covering, every, rtol=0, atol=0)
    assert not torch.equal(outside, every)  # (a tiny random model barely listens to the prompt: small, not zero)
    # An interval with no step in it is guidance 1, with or without a negative prompt.
    none = pipe("x", generator=gen(0), guidance_scale=5.0, guidance_interval=(1001, 2000), negative_prompt="y",
                output_type="latent", **SMALL).frames
    plain = pipe("x", generator=gen(0), guidance_scale=1.0, output_type="latent", **SMALL).frames
    torch.testing.assert_close(none, plain, rtol=0, atol=0)
    for bad in ((500, 100), (-1, 10), (1, 2, 3), "ab", (0, float("nan"))):
        with pytest.raises(InputError, match="guidance_interval"):
            pipe("x", guidance_interval=bad, **SMALL)


def test_callback_can_replace_latents(pipe):
    seen = []

    def pin_first_frame(p, step, timestep, tensors):
        latents = tensors["latents"].clone()
        latents[:, :, 0] = 0.0
        seen.append(step)
        return {"latents": latents}

    out = pipe("x", generator=gen(0), output_type="latent", callback_on_step_end=pin_first_frame, **SMALL).frames
    assert seen == [0, 1, 2]
    assert torch.count_nonzero(out[:, :, 0]) == 0


def test_sdpa_and_math_attention_agree(tiny_motion_model):
    pipe = load_pipeline(tiny_motion_model, device="cpu", attention="sdpa")
    a = pipe("x", generator=gen(0), **SMALL).frames
    pipe.set_attention_backend("math")
    b = pipe("x", generator=gen(0), **SMALL).frames
    np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(InputError, match="xformers"):
        pipe.set_attention_backend("xformers")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt=""), "prompt 0 is empty"),
        (dict(prompt=["ok", "   "]), "prompt 1 is empty"),
        (dict(prompt=[]), "prompt list is empty"),
        (dict(prompt=None), "prompt is required"),
        (dict(prompt=3), "prompt must be a string"),
        (dict(height=17), "height=17 is not divisible by the VAE factor 2"),
        (dict(width=0), "width must be a positive integer"),
        (dict(num_frames=0), "num_frames must be a positive integer"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(guidance_scale=float("nan")), "guidance_scale"),
        (dict(output_type="mp4"), "output_type"),
        (dict(prompt=["a", "b"], negative_prompt=["x", "y", "z"]), "negative_prompt has 3 entries"),
        (dict(generator=[torch.Generator(), torch.Generator()]), "got 2 generators for 1 videos"),
        (dict(latents=torch.zeros(1, 4, 4, 2, 2)), "latents must have shape"),
    ],
)
def test_bad_arguments_raise_input_error(pipe, kwargs, message):
    args = dict(prompt="a red circle", **SMALL)
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        pipe(**args)


def test_a_context_window_longer_than_the_motion_model_takes(tiny_motion_model):
    pipe = load_pipeline(tiny_motion_model, device="cpu")
    with pytest.raises(InputError, match="context_length=33 exceeds this model's limit of 32 frames"):
        pipe("x", num_frames=33, height=16, width=16, context_length=33)


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_model_folder_checks(tiny_motion_model, tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_pipeline(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        load_pipeline(tmp_path / "empty")
    broken = _copy_model(tiny_motion_model, tmp_path / "broken")
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="malformed"):
        load_pipeline(broken)
    no_unet = _copy_model(tiny_motion_model, tmp_path / "no_unet")
    import shutil

    shutil.rmtree(no_unet / "unet")
    with pytest.raises(ModelLoadError, match="missing its unet/ subfolder"):
        load_pipeline(no_unet)
    pickled = _copy_model(tiny_motion_model, tmp_path / "pickled")
    weights = next((pickled / "unet").glob("*.safetensors"))
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelLoadError, match="only pickle weights"):
        load_pipeline(pickled)
    other = _copy_model(tiny_motion_model, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="UNet2DConditionModel"):
        load_pipeline(other)
    garbage = _copy_model(tiny_motion_model, tmp_path / "garbage")
    next((garbage / "vae").glob("*.safetensors")).write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="cannot load model folder"):
        load_pipeline(garbage)


def test_pipeline_class_is_a_diffusion_pipeline(tiny_motion_model):
    from diffusers import DiffusionPipeline

    pipe = TextToVideoPipeline.from_pretrained(str(tiny_motion_model))
    assert isinstance(pipe, DiffusionPipeline)
    assert type(pipe.unet).__name__ == "UNetMotionModel"
