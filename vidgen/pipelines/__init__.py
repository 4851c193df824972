"""Sampling: the text-to-video pipeline, schedulers by name, model loading, stories.

Names are imported on first use, so importing a light submodule of this
package (e.g. ``vidgen.pipelines.schedulers``) does not load diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SCHEDULERS": "vidgen.pipelines.schedulers",
    "make_scheduler": "vidgen.pipelines.schedulers",
    "scheduler_names": "vidgen.pipelines.schedulers",
    "TextToVideoOutput": "vidgen.pipelines.text_to_video",
    "TextToVideoPipeline": "vidgen.pipelines.text_to_video",
    "check_model_folder": "vidgen.pipelines.loading",
    "default_model_dir": "vidgen.pipelines.loading",
    "load_pipeline": "vidgen.pipelines.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidgen.pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
