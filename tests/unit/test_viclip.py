"""ViCLIP model: parity with a second implementation, checkpoint formats, masking, loss, CLIPTextModel export."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from vidgen.errors import ConfigError, InputError, ModelLoadError, OutputError
from vidgen.models.tokenizer import CLIPBPETokenizer, hf_clip_tokenizer
from vidgen.models.viclip import CONFIGS, ViCLIP, ViCLIPConfig, contrastive_loss, get_config
from vidgen.models.viclip_io import (infer_config, load_clip_text_model_into_viclip, load_viclip, save_viclip,
                                    viclip_text_to_clip_text_model)

CAPTIONS = ["a red circle moves left", "a blue square moving up on a white background", "green triangle"]


@pytest.fixture(scope="module")
def tiny() -> ViCLIP:
    torch.manual_seed(0)
    model = ViCLIP("tiny").eval()
    with torch.no_grad():  # a non-zero temporal embedding, so frame order matters in the checks
        model.vision_encoder.temporal_positional_embedding.normal_(std=0.1)
    return model


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return CLIPBPETokenizer(32)(CAPTIONS)


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.randn(3, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- a second implementation


def _mha_blocks(sd: dict, prefix: str, width: int, heads: int, layers: int) -> list[dict]:
    blocks = []
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        attn = nn.MultiheadAttention(width, heads)
        attn.load_state_dict({k[len(p) + 5:]: v for k, v in sd.items() if k.startswith(p + "attn.")})
        blocks.append(dict(attn=attn.eval(), **{n: (sd[f"{p}{n}.weight"], sd[f"{p}{n}.bias"]) for n in
                                                 ("ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj")}))
    return blocks


def _run_blocks(x: torch.Tensor, blocks: list[dict], mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sequence-first pre-LN blocks with torch's own nn.MultiheadAttention, as the released code runs them."""
    ln = torch.nn.functional.layer_norm
    for b in blocks:
        h = ln(x, x.shape[-1:], *b["ln_1"])
        x = x + b["attn"](h, h, h, need_weights=False, attn_mask=mask)[0]
        h = torch.nn.functional.linear(ln(x, x.shape[-1:], *b["ln_2"]), *b["mlp.c_fc"])
        x = x + torch.nn.functional.linear(h * torch.sigmoid(1.702 * h), *b["mlp.c_proj"])
    return x


@torch.no_grad()
def reference_video(sd: dict, c: ViCLIPConfig, video: torch.Tensor) -> torch.Tensor:
    """FORMATS.md's vision tower written out literally: Conv3d on [B,C,T,H,W], (b t) rows, `b (n t) m` tokens."""
    from einops import rearrange

    p = "vision_encoder."
    k = c.tubelet_size
    conv = nn.Conv3d(3, c.vision_width, (k, c.patch_size, c.patch_size), (k, c.patch_size, c.patch_size), bias=False)
    conv.weight.copy_(sd[p + "conv1.weight"])
    x = conv(video.permute(0, 2, 1, 3, 4))
    b, w, t, gh, gw = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(b * t, gh * gw, w)
    x = torch.cat([sd[p + "class_embedding"] + torch.zeros(b * t, 1, w), x], dim=1) + sd[p + "positional_embedding"]
    cls, x = x[:b, :1], x[:, 1:]
    x = rearrange(x, "(b t) n m -> (b n) t m", b=b, t=t) + sd[p + "temporal_positional_embedding"]
    x = rearrange(x, "(b n) t m -> b (n t) m", b=b, t=t)
    x = torch.cat([cls, x], dim=1)
    x = torch.nn.functional.layer_norm(x, (w,), sd[p + "ln_pre.weight"], sd[p + "ln_pre.bias"]).permute(1, 0, 2)
    x = _run_blocks(x, _mha_blocks(sd, p, w, c.vision_heads, c.vision_layers))
    x = torch.nn.functional.layer_norm(x, (w,), sd[p + "ln_post.weight"], sd[p + "ln_post.bias"])
    return x[0] @ sd[p + "proj"]


@torch.no_grad()
def reference_text(sd: dict, c: ViCLIPConfig, ids: torch.Tensor) -> torch.Tensor:
    p = "text_encoder."
    x = (sd[p + "token_embedding.weight"][ids] + sd[p + "positional_embedding"]).permute(1, 0, 2)
    mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu_(1)
    x = _run_blocks(x, _mha_blocks(sd, p, c.text_width, c.text_heads, c.text_layers), mask).permute(1, 0, 2)
    x = torch.nn.functional.layer_norm(x, (c.text_width,), sd[p + "ln_final.weight"], sd[p + "ln_final.bias"])
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ sd[p + "text_projection"]


def test_parity_with_reference_layout(tiny, video, ids):
    sd = tiny.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(tiny.encode_video(video), reference_video(sd, tiny.config, video), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tiny.encode_text(ids), reference_text(sd, tiny.config, ids), atol=1e-5, rtol=1e-5)


def test_frame_order_and_single_frame(tiny, video):
    with torch.no_grad():
        fwd = tiny.encode_video(video)
        rev = tiny.encode_video(video.flip(1))
        assert not torch.allclose(fwd, rev, atol=1e-4)  # the temporal embedding makes order matter
        one = tiny.encode_video(video[:, :1])  # T = 1 uses the mean temporal embedding
        assert one.shape == fwd.shape
    with pytest.raises(InputError, match="4 frames"):
        tiny.encode_video(video[:, :3])
    with pytest.raises(InputError, match="32x32"):
        tiny.encode_video(torch.randn(1, 4, 3, 16, 16))


def test_tubelets_see_frame_order_from_the_start_and_round_trip(video, ids, tmp_path):
    config = dataclasses.replace(CONFIGS["tiny"], tubelet_size=2)
    torch.manual_seed(0)
    model = ViCLIP(config).eval()  # temporal embedding left at zero: only the tubelets can see order
    assert model.vision_encoder.conv1.weight.shape[2] == 2
    assert model.vision_encoder.temporal_positional_embedding.shape[1] == 2
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(video), reference_video(model.state_dict(), config, video),
                                   atol=1e-5, rtol=1e-5)
        assert (model.encode_video(video) - model.encode_video(video.flip(1))).abs().max() > 1e-3
        assert model.encode_video(video[:, :1]).shape == (3, config.embed_dim)  # an image fills a tubelet
        plain = ViCLIP("tiny").eval()  # per-frame patches, zero temporal embedding: order-blind
        torch.testing.assert_close(plain.encode_video(video), plain.encode_video(video.flip(1)), atol=1e-5, rtol=1e-5)
    save_viclip(model, tmp_path / "t")
    assert load_viclip(tmp_path / "t").config == config
    assert infer_config(model.state_dict()).tubelet_size == 2  # from the weights alone
    assert torch.equal(_features(load_viclip(tmp_path / "t"), video, ids)[0], _features(model, video, ids)[0])
    with pytest.raises(ConfigError, match="tubelet_size"):
        dataclasses.replace(CONFIGS["tiny"], tubelet_size=3)


def test_an_export_written_before_tubelets_keeps_its_config(tiny, tmp_path):
    save_viclip(tiny, tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["tubelet_size"]
    config["masking_prob"] = 0.5
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert load_viclip(tmp_path / "old").config == dataclasses.replace(tiny.config, masking_prob=0.5)


# ----------------------------------------------------------------------------- checkpoints


def _convert_script():
    """``main`` of scripts/convert_viclip.py (run in-process: a subprocess would re-import torch)."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "convert_viclip.py"
    return runpy.run_path(str(script), run_name="convert_viclip")["main"]


def _features(model: ViCLIP, video: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode_video(video), model.encode_text(ids)


def test_pth_safetensors_and_hf_folder_give_identical_features(tiny, video, ids, tmp_path):
    from safetensors.torch import save_file

    reference = _features(tiny, video, ids)
    pth = tmp_path / "ViClip-tiny.pth"
    # a training checkpoint: the state dict under "model", plus optimizer state and counters
    torch.save({"model": tiny.state_dict(), "optimizer": {"state": {}}, "epoch": 3, "global_step": 100}, pth)
    from_pth = load_viclip(pth)
    assert from_pth.config == tiny.config and not from_pth.training

    export = tmp_path / "export"
    assert _convert_script()([str(pth), str(export)]) == 0
    from_export = load_viclip(export)

    hf = tmp_path / "ViCLIP-tiny-hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["ViCLIP"], "model_type": "ViCLIP",
                                                 "tokenizer_path": "bpe_simple_vocab_16e6.txt.gz"}))
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(hf / "model.safetensors"))
    from_hf = load_viclip(hf)  # no size in config.json: inferred from the weights

    for model in (from_pth, from_export, from_hf):
        for got, want in zip(_features(model, video, ids), reference):
            assert torch.equal(got, want)
    assert json.loads((export / "config.json").read_text())["vision_width"] == 32


def test_size_inferred_from_weights_for_released_shapes():
    for name in ("b16", "l14"):
        with torch.device("meta"):
            state = ViCLIP(name, init=False).state_dict()
        assert infer_config(state) == CONFIGS[name]
    custom = dataclasses.replace(CONFIGS["tiny"], vision_width=64, vision_heads=4, text_width=128, text_heads=8)
    with torch.device("meta"):
        state = ViCLIP(custom, init=False).state_dict()
    inferred = infer_config(state)  # unnamed shapes: 64-wide heads assumed
    assert (inferred.vision_heads, inferred.text_heads, inferred.vision_width) == (1, 2, 64)


def test_wrong_keys_are_listed(tiny, tmp_path):
    state = dict(tiny.state_dict())
    state.pop("text_encoder.ln_final.bias")
    state["vision_encoder.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save({"model": state}, bad)
    with pytest.raises(ModelLoadError, match=r"missing keys: text_encoder\.ln_final\.bias.*unexpected keys: vision_encoder\.extra\.weight"):
        load_viclip(bad, size="tiny")
    # a size that does not fit the weights
    good = tmp_path / "good.pth"
    torch.save({"model": tiny.state_dict()}, good)
    with pytest.raises(ModelLoadError, match="missing keys"):
        load_viclip(good, size="b16")


class _Config:  # an arbitrary class: unpickling it would need code
    lr = 1e-3


def test_pickle_with_code_is_refused(tiny, tmp_path):
    path = tmp_path / "with_code.pth"
    torch.save({"model": tiny.state_dict(), "config": _Config()}, path)
    with pytest.raises(ModelLoadError, match="pickle that needs code.*weights_only=True"):
        load_viclip(path)


def test_unreadable_and_missing_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="junk.pth"):
        load_viclip(junk)
    with pytest.raises(ModelLoadError, match="not found"):
        load_viclip(tmp_path / "nope.pth")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        load_viclip(empty)
    with pytest.raises(ConfigError, match="unknown ViCLIP size"):
        get_config("xl")


def test_save_refuses_to_overwrite(tiny, tmp_path, capsys):
    save_viclip(tiny, tmp_path / "m")
    with pytest.raises(OutputError, match="exists"):
        save_viclip(tiny, tmp_path / "m")
    save_viclip(tiny, tmp_path / "m", overwrite=True)
    # the converter reports the same problem as one line and exit status 2
    assert _convert_script()([str(tmp_path / "m"), str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists" in err and "--overwrite" in err


def test_config_validation():
    with pytest.raises(ConfigError, match="patch_size"):
        ViCLIPConfig(image_size=30, patch_size=8)
    with pytest.raises(ConfigError, match="masking_prob"):
        ViCLIPConfig(masking_prob=1.0)
    with pytest.raises(ConfigError, match="heads"):
        ViCLIPConfig(text_width=30, text_heads=4)


# ----------------------------------------------------------------------------- training


def test_masking_only_in_training(tiny, video, ids):
    seen = []
    hook = tiny.vision_encoder.ln_pre.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        tokens = 4 * 16 + 1  # 4 frames x 4x4 patches + class token
        with torch.no_grad():
            a = tiny.encode_video(video)
            b = tiny.encode_video(video)
        assert torch.equal(a, b) and seen == [tokens, tokens]  # eval: deterministic, nothing masked
        tiny.train()
        try:
            torch.manual_seed(0)
            with torch.no_grad():
                m1 = tiny.encode_video(video)
                m2 = tiny.encode_video(video)
            assert seen[-1] == 1 + 64 - int(0.9 * 64)
            assert not torch.allclose(m1, m2)
            with torch.no_grad():
                full = tiny.encode_video(video, masking_prob=0.0)
            torch.testing.assert_close(full, a)
        finally:
            tiny.eval()
    finally:
        hook.remove()


def test_contrastive_loss_matches_formula_and_trains_temperature(tiny, video, ids):
    model = ViCLIP("tiny")
    model.load_state_dict(tiny.state_dict())
    model.train()
    with torch.no_grad():
        model.temp.fill_(0.001)  # below the floor: the training forward clamps it
    out = model(video, ids, masking_prob=0.5)
    assert model.temp.item() == pytest.approx(0.01)
    loss = contrastive_loss(out.video_embeds, out.text_embeds, model.temp)
    v = torch.nn.functional.normalize(out.video_embeds, dim=-1)
    t = torch.nn.functional.normalize(out.text_embeds, dim=-1)
    logits = v @ t.T / model.temp
    manual = -(logits.log_softmax(1).diag().mean() + logits.T.log_softmax(1).diag().mean()) / 2
    torch.testing.assert_close(loss, manual)
    loss.backward()
    assert model.temp.grad is not None and model.vision_encoder.proj.grad is not None
    assert model.text_encoder.token_embedding.weight.grad is not None
    # samples 0 and 1 show the same clip: both captions are positives for both
    ids2 = torch.tensor([7, 7, 3])
    shared = contrastive_loss(out.video_embeds.detach(), out.text_embeds.detach(), 0.05, ids2)
    l2 = (v @ t.T / 0.05).detach()
    target = torch.tensor([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1.0]])
    expected = (-(l2.log_softmax(1) * target).sum(1).mean() - (l2.T.log_softmax(1) * target).sum(1).mean()) / 2
    torch.testing.assert_close(shared, expected)


# ----------------------------------------------------------------------------- text tower as transformers CLIP


def test_clip_text_model_conversion_parity(tiny, ids):
    hf_ids = torch.tensor(hf_clip_tokenizer(32, pad_token="!")(CAPTIONS, padding="max_length", max_length=32)["input_ids"])
    assert torch.equal(hf_ids, ids)  # zero padding as ViCLIP pads
    plain = viclip_text_to_clip_text_model(tiny)
    projected = viclip_text_to_clip_text_model(tiny, with_projection=True)
    with torch.no_grad():
        hidden = tiny.text_encoder.hidden_states(ids)
        ours = tiny.encode_text(ids)
        out = plain(input_ids=ids)
        torch.testing.assert_close(out.last_hidden_state, hidden, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.pooler_output @ tiny.text_encoder.text_projection, ours, atol=1e-5, rtol=0)
        torch.testing.assert_close(projected(input_ids=ids).text_embeds, ours, atol=1e-5, rtol=0)
    assert plain.config.max_position_embeddings == 32 and plain.config.hidden_act == "quick_gelu"


def test_clip_text_model_loads_back_into_a_viclip_text_tower(tiny, ids, tmp_path):
    folder = tmp_path / "text_encoder"
    viclip_text_to_clip_text_model(tiny).save_pretrained(folder)
    torch.manual_seed(1)
    other = ViCLIP("tiny").eval()
    projection = other.text_encoder.text_projection.detach().clone()
    assert not torch.allclose(other.text_encoder.hidden_states(ids), tiny.text_encoder.hidden_states(ids))
    load_clip_text_model_into_viclip(other, folder)  # from a folder, as a pipeline's text_encoder/ is stored
    with torch.no_grad():
        torch.testing.assert_close(other.text_encoder.hidden_states(ids), tiny.text_encoder.hidden_states(ids),
                                   atol=1e-5, rtol=0)
    assert torch.equal(other.text_encoder.text_projection, projection)  # the projection is the tower's own
    wider = ViCLIP(dataclasses.replace(get_config("tiny"), text_width=2 * get_config("tiny").text_width))
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_clip_text_model_into_viclip(wider, folder)
    with pytest.raises(ModelLoadError, match="config.json missing"):
        load_clip_text_model_into_viclip(other, tmp_path / "nowhere")


def test_sharded_export_loads_identically(tmp_path):
    import torch

    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import load_viclip, save_viclip

    torch.manual_seed(0)
    model = ViCLIP(get_config("tiny")).eval()
    save_viclip(model, tmp_path / "sharded", max_shard_bytes=200_000)
    shards = sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    again = load_viclip(tmp_path / "sharded")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    shard = tmp_path / "sharded" / shards[-1]
    shard.unlink()
    from vidgen.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="missing"):
        load_viclip(tmp_path / "sharded")
