"""The latent cache: written per shard, read back equal to a fresh encode, deterministic draws, process slices."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.conftest import make_counter_video
from vidgen.data.cache import (CachedLatentDataset, build_cache, collate_latents, load_encoders, process_slice,
                               shards_from_folder, shards_from_urls)
from vidgen.data.frames import FramePolicy, load_clip
from vidgen.data.rows import parse_row
from vidgen.data.shards import write_shards
from vidgen.errors import DataError, InputError, ModelLoadError

POLICY = FramePolicy(num_frames=4, stride=2, height=16, width=16, window="start")


@pytest.fixture
def shard_dir(tmp_path, bikes):
    """Two shards: three counter clips and a real clip (bikes), plus one corrupt clip skipped at cache time."""
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for i in range(5):
        row = parse_row({"YoutubeID": f"vid{i:08d}", "Start_timestamp": 0, "End_timestamp": 1, "Caption": f"a red circle {i}"})
        rows.append(row)
        if i == 3:
            (clips / row.clip_name).write_bytes(bikes.read_bytes()[:200_000])  # cut mid-stream: decodes partly
        elif i == 4:
            (clips / row.clip_name).symlink_to(bikes)
        else:
            make_counter_video(clips / row.clip_name, num_frames=12, fps=10.0, size=(24, 16))
    write_shards(rows, clips, tmp_path / "shards", max_count=3, verify=False)
    return tmp_path / "shards", clips, rows


@pytest.fixture(scope="module")
def encoders(tiny_motion_model):
    return load_encoders(model=tiny_motion_model)


def test_cache_reads_back_a_fresh_encode(tmp_path, shard_dir, encoders, tiny_motion_model):
    shards, clips, rows = shard_dir
    out = tmp_path / "cache"
    report = build_cache(shards_from_urls(shards), encoders, out, policy=POLICY, store_dtype="fp32")
    assert report.clips == 4 and report.shards_done == 2 and report.skipped == {"corrupt": 1}
    assert sorted(os.listdir(out)) == ["shard-000000.json", "shard-000000.safetensors",
                                       "shard-000001.json", "shard-000001.safetensors"]
    dataset = CachedLatentDataset(out, sample_posterior=False)
    assert len(dataset) == 4
    from vidgen import load_pipeline

    pipe = load_pipeline(tiny_motion_model, device="cpu")
    good = [r for i, r in enumerate(rows) if i != 3]
    for index, row in enumerate(good):
        item = dataset[index]
        assert item["key"] == row.key and item["caption"] == row.caption
        with torch.no_grad():
            posterior = pipe.vae.encode(load_clip(clips / row.clip_name, POLICY)).latent_dist
            text = pipe.encode_prompt([row.caption], torch.device("cpu"))[0]
        expected = (posterior.mean * pipe.vae.config.scaling_factor).permute(1, 0, 2, 3)
        assert item["latents"].shape == (4, 4, 8, 8)  # [C, T, h, w]
        torch.testing.assert_close(item["latents"], expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(item["text_embeds"], text, rtol=1e-5, atol=1e-6)
    from safetensors import safe_open

    with safe_open(str(out / "shard-000000.safetensors"), framework="pt") as f:
        meta = f.metadata()
        assert float(meta["scaling_factor"]) == pipe.vae.config.scaling_factor
        assert json.loads(meta["keys"]) == [r.key for r in rows[:3]]
        assert json.loads(meta["encoders"])["tokenizer"]["class"].startswith("CLIPTokenizer")
        assert f.get_tensor("mean").shape == (3, 4, 4, 8, 8) and f.get_tensor("text").shape == (3, 77, 32)
        with torch.no_grad():
            torch.testing.assert_close(f.get_tensor("uncond"), pipe.encode_prompt([""], torch.device("cpu"))[0])


def test_posterior_draws_and_caption_dropout(tmp_path, shard_dir, encoders):
    shards, _, _ = shard_dir
    out = tmp_path / "cache"
    build_cache(shards_from_urls(shards), encoders, out, policy=POLICY)  # fp16 storage
    mean_ds = CachedLatentDataset(out, sample_posterior=False)
    a = CachedLatentDataset(out, seed=5, caption_dropout=0.5)
    b = CachedLatentDataset(out, seed=5, caption_dropout=0.5)
    torch.manual_seed(123)
    for i in range(len(a)):
        x, y = a[i], b[i]
        torch.testing.assert_close(x["latents"], y["latents"], rtol=0, atol=0)  # same (seed, epoch, index)
        assert not torch.equal(x["latents"], mean_ds[i]["latents"])  # a real draw around the mean
        if x["caption"] == "":
            torch.testing.assert_close(x["text_embeds"], a._handle(a.shards[0]["path"]).get_tensor("uncond").float())
    a.set_epoch(1)
    assert not torch.equal(a[0]["latents"], b[0]["latents"])
    captions = []
    for epoch in range(40):
        a.set_epoch(epoch)
        captions.append(a[1]["caption"])
    assert 8 <= captions.count("") <= 32
    batch = collate_latents([mean_ds[0], mean_ds[1]])
    assert batch["latents"].shape == (2, 4, 4, 8, 8) and batch["text_embeds"].shape == (2, 77, 32)
    loader = torch.utils.data.DataLoader(a, batch_size=2, num_workers=2, collate_fn=collate_latents)
    assert sum(len(b["key"]) for b in loader) == 4  # picklable: workers reopen the files


def test_process_slices_and_resume(tmp_path, shard_dir, encoders):
    shards, _, _ = shard_dir
    units = shards_from_urls(shards)
    assert [u.name for u in process_slice(units, 0, 2)] == ["shard-000000"]
    assert [u.name for u in process_slice(units, 1, 2)] == ["shard-000001"]
    assert process_slice(units, 2, 3) == []
    with pytest.raises(InputError):
        process_slice(units, 2, 2)
    out = tmp_path / "cache"
    first = build_cache(units, encoders, out, policy=POLICY, process_index=1, num_processes=2)
    assert (first.shards_done, first.clips) == (1, 1)  # shard 1: the corrupt clip and bikes
    both = build_cache(units, encoders, out, policy=POLICY)
    assert (both.shards_done, both.shards_existing) == (1, 1)  # the finished shard is not redone
    assert len(CachedLatentDataset(out)) == 4


def test_clip_folder_input(tmp_path, shard_dir, encoders):
    _, clips, rows = shard_dir
    units = shards_from_folder(clips, [r for i, r in enumerate(rows) if i != 3], clips_per_shard=3)
    assert [len(u.clips) for u in units] == [3, 1]
    build_cache(units, encoders, tmp_path / "cache", policy=POLICY)
    assert [item["key"] for item in CachedLatentDataset(tmp_path / "cache")] == [r.key for i, r in enumerate(rows) if i != 3]


def test_cache_errors(tmp_path, shard_dir, encoders, tiny_motion_model):
    shards, _, _ = shard_dir
    with pytest.raises(ModelLoadError, match="vae folder not found"):
        load_encoders(vae=tmp_path / "none", text_encoder=tmp_path, tokenizer=tmp_path)
    with pytest.raises(ModelLoadError, match="cannot load vae"):
        load_encoders(model=tiny_motion_model, vae=tiny_motion_model / "unet")
    with pytest.raises(InputError, match="no tokenizer folder"):
        load_encoders(vae=tiny_motion_model / "vae", text_encoder=tiny_motion_model / "text_encoder")
    with pytest.raises(DataError, match="no cached shards"):
        CachedLatentDataset(tmp_path)
    out = tmp_path / "cache"
    build_cache(shards_from_urls(shards), encoders, out, policy=POLICY)
    index = json.loads((out / "shard-000001.json").read_text())
    index["scaling_factor"] = 0.5
    (out / "shard-000001.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="scaling_factor"):
        CachedLatentDataset(out)
