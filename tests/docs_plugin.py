"""The README's and docs' code blocks run as tests (pytest-codeblocks), as a reader would run them.

pytest.ini loads this plugin and ``--codeblocks``: every ``python``/``bash`` block of README.md and
docs/*.md becomes a test, run in order in a fresh temporary folder per file (with ``configs/`` and
``scripts/`` and ``checkpoints/`` linked in, as a checkout has them), so the files one block makes are there for the
next. The community weights the docs name (``stable-diffusion-v1-5/``, ``mm_sd_v15_v2.safetensors``,
``animatediff-motion-adapter-v1-5-2/``, ``style.safetensors``) are put there as tiny random stand-ins of
the same formats (:data:`STAND_INS`), so those commands run as written. A block that needs what a
test cannot have (real InternVid files, a GPU, a download, a full-size checkpoint) carries the
plugin's own ``<!--pytest.mark.skip(reason=...)-->`` marker and says in the text what it needs.
The blocks run sampling and training, so they count as ``slow``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINKED = ("configs", "scripts", "checkpoints")
_folders: dict[Path, Path] = {}


def _stand_ins() -> dict:
    from tests import weights_helpers as w

    return {
        "stable-diffusion-v1-5": lambda path: w.save_sd_folder(path),
        "animatediff-motion-adapter-v1-5-2": lambda path: w.save_adapter_folder(path),
        "mm_sd_v15_v2.safetensors": lambda path: w.save_original_adapter(path),
        "style.safetensors": lambda path: w.save_kohya_lora(path),
    }


def _put_stand_ins(doc: Path, folder: Path) -> None:
    """Tiny stand-ins, in the real formats, for the community files ``doc`` names."""
    text = doc.read_text(encoding="utf-8")
    for name, make in _stand_ins().items():
        if name in text:
            make(folder / name)
_cwd: dict[str, str] = {}


def _is_block(item) -> bool:
    return type(item).__name__ == "TestBlock"  # pytest-codeblocks' item class


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if _is_block(item):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item) -> None:
    if not _is_block(item):
        return
    folder = _folders.get(item.path)
    if folder is None:
        folder = _folders[item.path] = Path(tempfile.mkdtemp(prefix=f"docs-{item.path.stem}-"))
        for name in LINKED:
            (folder / name).symlink_to(REPO / name, target_is_directory=True)
        _put_stand_ins(item.path, folder)
    if item.obj.syntax in ("bash", "sh") and not item.obj.code.startswith("set -e\n"):
        item.obj.code = "set -e\n" + item.obj.code  # a failing line fails the block, as in a reader's terminal
    _cwd[item.nodeid] = os.getcwd()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.chdir(folder)


def pytest_runtest_teardown(item) -> None:
    if item.nodeid in _cwd:
        os.chdir(_cwd.pop(item.nodeid))


def pytest_sessionfinish(session) -> None:
    for folder in _folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    _folders.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed shell block reports the command's stderr, not only its exit status."""
    outcome = yield
    report = outcome.get_result()
    error = getattr(call.excinfo, "value", None) if call.excinfo else None
    if _is_block(item) and report.failed and hasattr(error, "stderr"):
        stderr = (error.stderr or b"").decode(errors="replace")[-3000:]
        code = item.obj.code.removeprefix("set -e\n")
        report.longrepr = f"{item.path.name} {item.name}: exit status {error.returncode}\n{code}\n{stderr}"
