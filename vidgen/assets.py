"""Where the shipped default model is, in a source checkout and in an install.

The model lives in the repository's top-level ``checkpoints/`` folder. An
install (``pip install .``, a wheel) carries a copy of it inside the package, as
``vidgen/checkpoints/`` (setup.py maps the folder there). An editable install
imports vidgen from the checkout, so it uses the checkout's folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

MODEL_FOLDER = "checkpoints"


def checkout_root() -> Path | None:
    """The source tree vidgen is imported from, or ``None`` when it is an installed copy."""
    root = Path(__file__).resolve().parent.parent
    if (root / "setup.py").is_file() or (root / "pyproject.toml").is_file():
        return root
    return None


def _installed_model_dir() -> Path:
    """The copy an install carries: ``checkpoints/`` inside the vidgen package."""
    package = resources.files(__package__ or "vidgen")
    if isinstance(package, Path):
        return package / MODEL_FOLDER
    # Not a plain folder (a zip import): name where it would be; loaders need real files.
    return Path(__file__).resolve().parent / MODEL_FOLDER


def shipped_model_dir() -> Path:
    """The shipped default model folder.

    The checkout's top-level ``checkpoints/`` when vidgen is imported from a
    source tree (including an editable install), else the copy inside the
    installed package. This only says where the folder should be; callers
    check that it holds what they need and name this path when it does not.
    """
    root = checkout_root()
    if root is not None:
        return root / MODEL_FOLDER
    return _installed_model_dir()
