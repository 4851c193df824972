"""Optional dependencies, with an error that names the extra that brings them.

Every feature that needs a package outside vidgen's core requirements imports it
through :func:`require` before any work, so a missing package is one line (exit
status 2 from the CLI) naming the package and the ``pip install "vidgen[EXTRA]"``
that brings it, never a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vidgen.errors import VidgenError

# module -> pip distribution, where the names differ
_DISTRIBUTIONS = {"yaml": "pyyaml", "cv2": "opencv-python-headless"}


class MissingExtraError(VidgenError, ImportError):
    """A feature needs a package from an optional extra that is not installed."""


def require(module: str, feature: str, extra: str | None = "data") -> ModuleType:
    """Import ``module`` for ``feature``, or explain which extra provides it.

    Args:
        module: the module to import (``"pyarrow.parquet"``, ``"webdataset"``...).
        feature: what needs it, for the message (``"reading .parquet rows"``).
        extra: the setup.py extra that lists it (``None``: no extra has it; the package alone is named).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: show that
        dist = _DISTRIBUTIONS.get(top, top)
        how = f'pip install "vidgen[{extra}]" (or pip install {dist})' if extra else f"pip install {dist}"
        raise MissingExtraError(f"{feature} needs the optional package {dist!r}: {how}") from None
