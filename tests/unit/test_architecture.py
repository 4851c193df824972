"""The structure the folder names promise: an import contract (import-linter) that CI runs, and that fails when broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOMS = {"io", "data", "models", "pipelines", "training", "metrics", "toyworld", "cli"}


def _lint(root: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports") or pytest.skip("import-linter is not installed (pip install 'vidgen[test]')")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([lint, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_package_shows_one_room_per_job():
    rooms = {p.name for p in (REPO / "vidgen").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert ROOMS <= rooms, ROOMS - rooms


def test_the_import_contracts_hold():
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("module", ["metrics/clipsim.py", "training/loop.py", "cli/sample.py"])
def test_a_core_module_that_imports_the_toy_world_breaks_the_contract(tmp_path, module):
    shutil.copytree(REPO / "vidgen", tmp_path / "vidgen", ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    shutil.copy(REPO / ".importlinter", tmp_path)
    with open(tmp_path / "vidgen" / module, "a", encoding="utf-8") as f:
        f.write("\n\ndef _leak():\n    from vidgen.toyworld.judge import judge_frames  # a lazy import counts too\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "vidgen.toyworld" in done.stdout and "BROKEN" in done.stdout


def test_cli_help_lists_every_command_and_no_missing_one():
    import re

    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "vidgen", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0
    from vidgen.cli.main import COMMANDS

    block = done.stdout.split("COMMAND\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [re.match(r"^    (\S+) +\S", line).group(1) for line in block] == list(COMMANDS)  # one line each
    for name in COMMANDS:
        assert (REPO / "vidgen" / "cli" / f"{name}.py").is_file()


def test_every_general_module_is_under_the_toy_world_contract():
    """A new general module must be listed in .importlinter's toyworld-boundary contract, or it would be unguarded."""
    import configparser
    import pkgutil

    import vidgen

    contract = configparser.ConfigParser()
    contract.read(REPO / ".importlinter")
    sources = set(contract["importlinter:contract:toyworld-boundary"]["source_modules"].split())
    entry_points = {"vidgen.cli.eval", "vidgen.cli.data", "vidgen.cli.train"}  # the commands that name the toy world
    general = {f"vidgen.{m.name}" for m in pkgutil.iter_modules(vidgen.__path__)} - {"vidgen.toyworld", "vidgen.cli",
                                                                                    "vidgen.__main__"}
    import vidgen.cli

    general |= {f"vidgen.cli.{m.name}" for m in pkgutil.iter_modules(vidgen.cli.__path__)} - entry_points
    assert general <= sources, sorted(general - sources)
