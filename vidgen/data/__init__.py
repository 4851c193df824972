"""InternVid data: rows, subsets, clips, shards, interleaved items, datasets, latent cache.

Names are imported lazily, so ``import vidgen.data`` needs none of the
optional packages (pyarrow, webdataset, fsspec, matplotlib: the ``data``
extra); a feature that needs one says which when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "Row": "vidgen.data.rows",
    "RowError": "vidgen.data.rows",
    "parse_row": "vidgen.data.rows",
    "parse_timestamp": "vidgen.data.rows",
    "format_timestamp": "vidgen.data.rows",
    "RowReport": "vidgen.data.readers",
    "RowWriter": "vidgen.data.readers",
    "iter_rows": "vidgen.data.readers",
    "read_rows": "vidgen.data.readers",
    "write_rows": "vidgen.data.readers",
    "FilterSpec": "vidgen.data.filters",
    "filter_rows": "vidgen.data.filters",
    "filter_file": "vidgen.data.filters",
    "top_fraction_threshold": "vidgen.data.filters",
    "diversity_sample": "vidgen.data.sampling",
    "diversity_select": "vidgen.data.sampling",
    "sample_file": "vidgen.data.sampling",
    "file_stats": "vidgen.data.stats",
    "plot_stats": "vidgen.data.stats",
    "SourceIndex": "vidgen.data.clips",
    "cut_clip": "vidgen.data.clips",
    "cut_clips": "vidgen.data.clips",
    "download_videos": "vidgen.data.download",
    "write_video2dataset_input": "vidgen.data.download",
    "write_shards": "vidgen.data.shards",
    "expand_urls": "vidgen.data.shards",
    "build_items": "vidgen.data.interleave",
    "write_items": "vidgen.data.interleave",
    "read_items": "vidgen.data.interleave",
    "FramePolicy": "vidgen.data.frames",
    "load_clip": "vidgen.data.frames",
    "ClipFolderDataset": "vidgen.data.datasets",
    "ShardVideoDataset": "vidgen.data.datasets",
    "collate": "vidgen.data.datasets",
    "load_encoders": "vidgen.data.cache",
    "build_cache": "vidgen.data.cache",
    "CachedLatentDataset": "vidgen.data.cache",
    "collate_latents": "vidgen.data.cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidgen.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
