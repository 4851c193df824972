"""``vidgen train plot RUN``: training curves from a run's ``metrics.jsonl`` as one PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vidgen.errors import DataError, InputError


def read_metrics(run: str | os.PathLike) -> list[dict]:
    """The records of ``RUN/metrics.jsonl`` (malformed lines are skipped).

    Raises:
        InputError: the run has no metrics file.
    """
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise InputError(f"no metrics.jsonl in {str(run)!r} (is it a training run folder?)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            records.append(row)
    return records


def plot_run(run: str | os.PathLike, out: str | os.PathLike | None = None, overwrite: bool = True) -> Path:
    """Plot loss (with a moving average), learning rate, throughput and validation scores.

    Returns:
        The PNG path (default ``RUN/curves.png``).

    Raises:
        InputError: no metrics; DataError: no training records in them.
    """
    from vidgen.extras import require
    from vidgen.io.files import atomic_output

    require("matplotlib", "vidgen train plot", "train").use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run)
    train = [r for r in records if "loss" in r]
    if not train:
        raise DataError(f"{str(run)!r}: metrics.jsonl has no training records yet")
    val_keys = sorted({k for r in records for k in r if k.startswith("val/")})
    panels = [("loss", "loss"), ("lr", "learning rate"), ("samples_per_s", "samples / s")] + [(k, k) for k in val_keys]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (key, title) in zip(axes[:, 0], panels):
        rows = [r for r in records if key in r]
        steps, values = [r["step"] for r in rows], [r[key] for r in rows]
        ax.plot(steps, values, marker="o" if len(rows) < 20 else None, lw=1)
        if key == "loss" and len(values) >= 10:
            k = max(2, len(values) // 20)
            smooth = [sum(values[max(0, i - k + 1) : i + 1]) / len(values[max(0, i - k + 1) : i + 1]) for i in range(len(values))]
            ax.plot(steps, smooth, lw=2, label=f"mean of {k}")
            ax.legend()
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(str(Path(run).name))
    fig.tight_layout()
    out = Path(out) if out else Path(run) / "curves.png"
    with atomic_output(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
