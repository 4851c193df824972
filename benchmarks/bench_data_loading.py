"""Training-data throughput: clips/s into batches of 16 frames at 256x256.

Three ways to feed a latent video model, side by side on the same clips:

1. ``ShardVideoDataset`` over WebDataset shards, 2 DataLoader workers:
   decode + resize + crop only (pixels ready for a VAE).
2. On the fly: (1) plus VAE encoding of every frame and text encoding of
   every caption, with Stable Diffusion 1.5-shaped VAE and CLIP text encoder
   (random weights: the cost is the same as trained ones).
3. ``CachedLatentDataset`` over the latent cache of the same clips, 2
   workers: latents ``[4, 16, 32, 32]`` and text states ``[77, 768]`` read
   from safetensors (fp16) and a posterior sample drawn (1024 random draws
   per epoch, so worker start-up does not dominate).

The cache is built with a VAE of SD 1.5's geometry (8x downsampling, 4 latent
channels) but narrow layers, so building it here is quick; the cached
tensors have exactly the shapes (and bytes) of an SD 1.5 cache.

    PYTHONPATH=$PWD python benchmarks/bench_data_loading.py --clips 32 --repeats 3 --vae-clips 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data_clips import make_source  # noqa: E402


def build(tmp: Path, clips: int):
    from vidgen.data.rows import parse_row
    from vidgen.data.shards import write_shards

    folder = tmp / "clips"
    folder.mkdir()
    rows = []
    for i in range(clips):
        row = parse_row({"YoutubeID": f"vid{i:08d}", "Start_timestamp": 0, "End_timestamp": 3,
                         "Caption": f"a person walks a dog along the beach at sunset, clip {i}"})
        rows.append(row)
        if i == 0:
            make_source(folder / row.clip_name, 3.0, size=(456, 256))  # a 3 s InternVid clip cut to short side 256
        else:
            os.link(folder / rows[0].clip_name, folder / row.clip_name)
    write_shards(rows, folder, tmp / "shards", max_count=max(1, clips // 4), verify=False)
    return rows


def loader_rate(dataset, collate, repeats: int, draws: int | None = None) -> float:
    """Median clips/s over ``repeats`` epochs (of ``draws`` random items for a map-style dataset)."""
    times = []
    for epoch in range(repeats):
        dataset.set_epoch(epoch)
        sampler = None if draws is None else torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=draws)
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate, sampler=sampler)
        t = time.perf_counter()
        n = sum(len(batch["key"]) for batch in loader)
        times.append(n / (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vae-clips", type=int, default=2, help="clips to encode on the fly with the SD 1.5 VAE")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from vidgen.data.cache import CacheEncoders, CachedLatentDataset, build_cache, collate_latents, shards_from_urls
    from vidgen.data.datasets import ShardVideoDataset, collate
    from vidgen.data.frames import FramePolicy
    from vidgen.models.t2v import build_text_encoder, build_vae
    from vidgen.models.tokenizer import hf_clip_tokenizer

    policy = FramePolicy(num_frames=16, height=256, width=256, window="random", crop="center")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build(tmp, args.clips)
        shards = tmp / "shards"

        pixels = loader_rate(ShardVideoDataset(shards, policy=policy, seed=0), collate, args.repeats)
        print(f"1. shards -> pixels [16, 3, 256, 256], 2 workers:        {pixels:8.2f} clips/s", flush=True)

        torch.manual_seed(0)
        sd_vae = build_vae("sd15").eval()
        sd_text = build_text_encoder("sd15").eval()
        sd = CacheEncoders(sd_vae, sd_text, hf_clip_tokenizer(77))
        dataset = ShardVideoDataset(shards, policy=policy, seed=0, shuffle_shards=False, split_by_node=False)
        done, t = 0, time.perf_counter()
        for item in dataset:
            sd.encode_video(item["pixel_values"], chunk=4)
            sd.encode_text([item["caption"]])
            done += 1
            if done >= args.vae_clips:
                break
        on_the_fly = done / (time.perf_counter() - t)
        print(f"2. shards -> pixels -> SD1.5 VAE + CLIP text, on the fly: {on_the_fly:8.4f} clips/s "
              f"({1 / on_the_fly:.1f} s per clip, {done} clips)", flush=True)

        narrow = build_vae("sd15", block_out_channels=(8, 8, 8, 8), norm_num_groups=8, layers_per_block=1).eval()
        encoders = CacheEncoders(narrow, sd_text, hf_clip_tokenizer(77),
                                 identity={"vae": "narrow sd15 geometry", "text_encoder": "sd15 shape"})
        t = time.perf_counter()
        build_cache(shards_from_urls(shards), encoders, tmp / "cache", policy=policy, store_dtype="fp16")
        build_seconds = time.perf_counter() - t
        cached = CachedLatentDataset(tmp / "cache", caption_dropout=0.1)
        sample = cached[0]
        cached_rate = loader_rate(cached, collate_latents, args.repeats, draws=1024)
        print(f"3. latent cache -> latents {list(sample['latents'].shape)} + text {list(sample['text_embeds'].shape)}, "
              f"2 workers: {cached_rate:8.1f} clips/s (cache built in {build_seconds:.0f} s with the narrow VAE)")
        print(f"cache vs on the fly: {cached_rate / on_the_fly:,.0f}x; cache vs decoding alone: {cached_rate / pixels:.1f}x")
        size = sum(p.stat().st_size for p in (tmp / "cache").glob("*.safetensors")) / args.clips
        print(f"cache size: {size / 1e6:.2f} MB per clip (fp16)")


if __name__ == "__main__":
    main()
