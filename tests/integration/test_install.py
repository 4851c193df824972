"""A non-editable install carries the shipped default model and finds it.

Builds the sdist from a copy of the source tree, a wheel from that sdist, installs
the wheel into a fresh venv (``--system-site-packages``: torch and diffusers come
from this environment) and samples with the default model from a folder outside
the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a red circle moves left on a white background"
# Top-level folders of a checkout that are not sources (all git-ignored or git's own).
NOT_SOURCES = {".git", "build", "dist", "outputs", "runs", ".venv", ".gl", ".whl", ".pytest_cache"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == REPO
    return {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".pyc"))
            or (top and n in NOT_SOURCES)}


def _run(cmd: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _model_files() -> set[str]:
    """The shipped model's files an install must carry (all but the example GIFs), relative to checkpoints/."""
    root = REPO / "checkpoints"
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != "examples"}


@pytest.mark.slow
def test_a_wheel_install_finds_and_samples_the_shipped_model(tmp_path):
    model_files = _model_files()
    assert {"model_index.json", "sample_defaults.yaml", "unet/config.json", "viclip/model.safetensors"} <= model_files

    # sdist from a copy (keeps build/ and egg-info out of the checkout), wheel from the sdist.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_ignore)
    _run([sys.executable, "-c", f"from setuptools import build_meta as b; b.build_sdist({str(tmp_path / 'sdist')!r})"], src)
    (sdist,) = (tmp_path / "sdist").glob("vidgen-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        in_sdist = {n.split("/", 1)[1] for n in names if "/" in n}
        tar.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    assert {f"checkpoints/{f}" for f in model_files} <= in_sdist
    junk = {n for n in in_sdist if n.split("/")[0] in ("tests", "benchmarks", "scripts", "configs")
            or n.startswith("checkpoints/examples")}
    assert not junk, sorted(junk)[:10]

    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir",
          "-w", tmp_path / "wheel", tmp_path / "unpacked" / top], tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("vidgen-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
    assert {f"vidgen/checkpoints/{f}" for f in model_files} <= in_wheel
    strays = {n for n in in_wheel if n.split("/")[0] != "vidgen" and not n.split("/")[0].endswith(".dist-info")}
    assert not strays, sorted(strays)[:10]
    assert not any(n.startswith("vidgen/checkpoints/examples/") for n in in_wheel)

    # A fresh venv that sees this environment's packages (torch, diffusers); this pip installs into it.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], tmp_path)
    python, vidgen = venv / "bin" / "python", venv / "bin" / "vidgen"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", "-q", wheel], tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = ("import json, vidgen\n"
             "from vidgen.pipelines.loading import default_model_dir\n"
             "from vidgen.models.viclip_io import default_viclip_path\n"
             "print(json.dumps([vidgen.__file__, str(default_model_dir()), str(default_viclip_path())]))\n")
    where = json.loads(_run([python, "-c", probe], work).stdout.strip().splitlines()[-1])
    package, model, viclip = (Path(p).resolve() for p in where)
    venv = venv.resolve()
    assert package.is_relative_to(venv) and not package.is_relative_to(REPO), package
    assert model.is_relative_to(venv) and model == package.parent / "checkpoints", model
    assert (model / "model_index.json").is_file()
    assert viclip == model / "viclip"

    out = work / "x.mp4"
    _run([vidgen, "sample", "--prompt", PROMPT, "--out", out, "--steps", "2"], work, timeout=180)
    assert out.is_file() and out.stat().st_size > 0
