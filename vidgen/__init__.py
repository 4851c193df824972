"""vidgen: text-to-video generation around InternVid and ViCLIP.

The public API is imported lazily, so ``import vidgen`` (and the CLI's
``--help``) stays fast; ``from vidgen import TextToVideoPipeline`` loads torch
and diffusers on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "TextToVideoPipeline": "vidgen.pipelines.text_to_video",
    "TextToVideoOutput": "vidgen.pipelines.text_to_video",
    "load_pipeline": "vidgen.pipelines.loading",
    "make_scheduler": "vidgen.pipelines.schedulers",
    "scheduler_names": "vidgen.pipelines.schedulers",
    "SampleConfig": "vidgen.pipelines.sample",
    "run_sample": "vidgen.pipelines.sample",
    "build_components": "vidgen.models.t2v",
    "load_config": "vidgen.config",
    "read_frames": "vidgen.io.video",
    "probe": "vidgen.io.video",
    "write_video": "vidgen.io.writer",
    "VidgenError": "vidgen.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
