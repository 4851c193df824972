"""scripts/denoise_real.py: real toy clips noised to a level, denoised by a model, read back by the judge."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script():
    sys.path.insert(0, str(SCRIPTS))  # the script imports latent_probe beside it
    spec = importlib.util.spec_from_file_location("denoise_real", SCRIPTS / "denoise_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_model_keeps_triangles_from_a_low_noise_level(tmp_path, capsys):
    """Triangles are the shape the shipped model draws reliably: from the last level of the schedule it keeps them."""
    script = _script()
    out = tmp_path / "report.json"
    args = ["--attribute", "shape", "--value", "triangle", "--clips", "3", "--timesteps", "0,159", "--guidance", "1,3",
            "--out", str(out)]
    assert script.main(args) == 0
    report = json.loads(out.read_text())
    assert report["clips"] == 3 and report["vae_reconstruction"]["judged_right"] == 1.0
    low, high = report["levels"]
    assert low["t"] < high["t"] and low["snr"] > high["snr"]  # snapped onto the 25-step schedule, in order
    assert set(low) == {"t", "snr", "guidance 1", "guidance 3"}
    assert low["guidance 1"]["one_step"]["judged_right"] == 1.0
    assert 0.4 < low["guidance 1"]["one_step"]["fill_ratio"] < 0.75  # a triangle's fill, not a circle's
    assert "| t | SNR |" in capsys.readouterr().out

    # Bad input: one line, exit 2, the existing report kept.
    before = out.read_text()
    assert script.main(args) == 2
    assert script.main(["--attribute", "shape", "--value", "hexagon"]) == 2
    assert script.main(["--attribute", "size"]) == 2
    assert script.main(["--timesteps", "a,b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("denoise_real: error:") for line in err)
    assert "hexagon" in err[1] and out.read_text() == before
