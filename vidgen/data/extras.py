"""Optional dependencies of the data tools, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from vidgen.errors import VidgenError

# module -> pip distribution, for the message
_DISTRIBUTIONS = {"pyarrow": "pyarrow", "webdataset": "webdataset", "fsspec": "fsspec", "matplotlib": "matplotlib"}


class MissingExtraError(VidgenError, ImportError):
    """A feature needs a package from an optional extra that is not installed."""


def require(module: str, feature: str, extra: str = "data") -> ModuleType:
    """Import ``module`` for ``feature``, or explain which extra provides it.

    Args:
        module: the module to import (``"pyarrow.parquet"``, ``"webdataset"``...).
        feature: what needs it, for the message (``"reading .parquet rows"``).
        extra: the setup.py extra that lists it.

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
        raise MissingExtraError(
            f"{feature} needs the optional package {dist!r}: pip install 'vidgen[{extra}]' (or pip install {dist})"
        ) from None
