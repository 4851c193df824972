"""InternVid data: rows, subsets, clips, shards, interleaved items, datasets, latent cache, the toy world."""
