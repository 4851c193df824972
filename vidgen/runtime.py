"""Process-wide settings for the libraries vidgen drives."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def silence_library_progress() -> None:
    """Hide diffusers'/transformers' own loading and saving progress bars (vidgen shows its own)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
