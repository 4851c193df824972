"""Score reports: per-video scores, summary statistics, skipped videos; written as JSON, CSV or a self-contained HTML page."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import statistics
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from vidgen.errors import InputError

METRIC_TITLES = {"viclip": "ViCLIP CLIPSIM", "clip": "CLIP CLIPSIM (frame-level)"}


@dataclass
class VideoScore:
    """Scores of one video against its caption; ``frames`` maps a metric to the frame indices it used."""

    video: str
    caption: Optional[str]
    scores: dict[str, float] = field(default_factory=dict)
    frames: dict[str, list[int]] = field(default_factory=dict)
    caption_source: Optional[str] = None
    ranked_texts: list[tuple[str, float, float]] = field(default_factory=list)  # (text, cosine, probability)
    note: Optional[str] = None  # how the frames were read when not as asked (a truncated file)


@dataclass
class Skipped:
    """A video that could not be scored, and why."""

    video: str
    reason: str


@dataclass
class ScoreReport:
    """Everything a ``vidgen score`` run found."""

    metrics: list[str]
    definitions: dict[str, Any]
    rows: list[VideoScore] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    retrieval: Optional[dict[str, Any]] = None
    stories: Optional[dict[str, Any]] = None  # story folder -> continuity measures
    set_level: dict[str, Any] = field(default_factory=dict)  # numbers about the whole set (VBench dimensions, FVD)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per metric: count, mean, sample standard deviation, min, median, max."""
        out = {}
        for metric in self.metrics:
            values = [r.scores[metric] for r in self.rows if metric in r.scores]
            out[metric] = summarize(values)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {m: METRIC_TITLES.get(m, m) for m in self.metrics},
            "definitions": self.definitions,
            "summary": self.summary(),
            "scored": len(self.rows),
            "skipped_count": len(self.skipped),
            "skipped": [asdict(s) for s in self.skipped],
            "videos": [
                {k: v for k, v in asdict(r).items() if k not in ("ranked_texts", "note") or v}
                for r in self.rows
            ],
            **({"retrieval": self.retrieval} if self.retrieval is not None else {}),
            **({"stories": self.stories} if self.stories else {}),
            **({"set_level": self.set_level} if self.set_level else {}),
        }


def summarize(values: list[float]) -> dict[str, float]:
    """``count, mean, std (sample), min, median, max``; NaN statistics when ``values`` is empty."""
    if not values:
        return {"count": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "median": math.nan, "max": math.nan}
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def summary_lines(report: ScoreReport) -> list[str]:
    """Human-readable summary: one line per metric, then the skipped count."""
    lines = [f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}"
             for name, value in report.set_level.items() if not isinstance(value, (dict, list))]
    for metric, s in report.summary().items():
        title = METRIC_TITLES.get(metric, metric)
        if s["count"]:
            lines.append(f"{title}: mean {s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f}) over {s['count']} videos")
        else:
            lines.append(f"{title}: no video scored")
    for folder, m in (report.stories or {}).items():
        lines.append(f"story {folder}: pixel change at clip boundaries x{m['median_pixel_change']:.2f} of the change "
                     f"inside clips (median of {len(m['boundaries'])})")
    noted = [r for r in report.rows if r.note]
    if noted:
        lines.append(f"scored {len(noted)} video(s) on fewer frames than their files announce:")
        lines.extend(f"  {r.video}: {r.note}" for r in noted)
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} video(s):")
        lines.extend(f"  {s.video}: {s.reason}" for s in report.skipped)
    return lines


def report_json(report: ScoreReport) -> str:
    """The report as JSON text (NaN written as null)."""
    from vidgen.io.files import json_ready

    return json.dumps(json_ready(report.to_dict()), indent=2, ensure_ascii=False) + "\n"


def _source(definition: dict[str, Any]) -> str:
    """Where a metric's numbers come from, in one cell: checkpoint, preprocessing, frame choice, resize."""
    prep = definition.get("preprocess", definition)
    model = definition.get("checkpoint") or definition.get("model") or definition.get("model_size", "")
    parts = [f"model {model}", f"preprocess {prep['name']}" if "name" in prep else "", f"frames: {prep.get('frames', '')}",
             f"resize: {prep.get('resize', '')}"]
    return "; ".join(p for p in parts if p)


def report_csv(report: ScoreReport) -> str:
    """One row per video (scored or skipped): video, caption, one column per metric, frames, status, and per metric
    the model, preprocessing and frame choice its number came from."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    sources = [_source(report.definitions.get(m, {})) for m in report.metrics]
    writer.writerow(["video", "caption", *report.metrics, "frames", "status", *(f"{m} source" for m in report.metrics)])
    for r in report.rows:
        frames = r.frames.get(report.metrics[0], [])
        writer.writerow([r.video, r.caption or "", *(f"{r.scores[m]:.6f}" if m in r.scores else "" for m in report.metrics),
                         " ".join(map(str, frames)), f"ok; {r.note}" if r.note else "ok", *sources])
    for s in report.skipped:
        writer.writerow([s.video, "", *([""] * len(report.metrics)), "", f"skipped: {s.reason}", *sources])
    return buf.getvalue()


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.5em;vertical-align:top;text-align:left}
video,img{width:256px;max-height:256px;background:#000}.score{font-family:monospace;font-size:1.2em}
.path{font-size:.8em;color:#666;word-break:break-all}.defs{font-size:.85em;color:#444}.skip{color:#a00}
ol{margin:0;padding-left:1.2em}
"""


def _media_src(video: str, page_dir: Path) -> str:
    target = Path(video).resolve()
    try:
        rel = os.path.relpath(target, page_dir.resolve())
    except ValueError:  # another drive on Windows: no relative path exists
        rel = str(target)
    return urllib.parse.quote(Path(rel).as_posix())


def report_html(report: ScoreReport, page_path: str | os.PathLike) -> str:
    """A self-contained page (inline CSS, no scripts) showing each video playing beside its caption and scores.

    Video sources are relative to the page's folder, so the page and the
    videos can move together.
    """
    page_dir = Path(page_path).parent
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>vidgen score</title>", f"<style>{_STYLE}</style></head><body>",
           "<h1>vidgen score</h1>"]
    for line in summary_lines(ScoreReport(report.metrics, report.definitions, report.rows, [], set_level=report.set_level)):
        out.append(f"<p><b>{e(line)}</b></p>")
    out.append("<div class='defs'><ul>")
    for key, value in report.definitions.items():
        out.append(f"<li><b>{e(str(key))}</b>: {e(json.dumps(value, ensure_ascii=False))}</li>")
    out.append("</ul></div><table><tr><th>video</th><th>caption</th>")
    out.extend(f"<th>{e(METRIC_TITLES.get(m, m))}</th>" for m in report.metrics)
    out.append("</tr>")
    for r in report.rows:
        src = _media_src(r.video, page_dir)
        media = (f"<img src='{src}' alt=''>" if r.video.lower().endswith(".gif")
                 else f"<video src='{src}' controls loop muted autoplay playsinline></video>")
        caption = e(r.caption or "")
        if r.ranked_texts:
            caption += "<ol>" + "".join(f"<li>{e(t)} <span class='path'>cos {c:.4f}, p {p:.3f}</span></li>" for t, c, p in r.ranked_texts) + "</ol>"
        note = f"<div class='skip'>{e(r.note)}</div>" if r.note else ""
        out.append(f"<tr><td>{media}<div class='path'>{e(r.video)}</div>{note}</td><td>{caption}</td>")
        out.extend(f"<td class='score'>{r.scores[m]:.4f}</td>" if m in r.scores else "<td></td>" for m in report.metrics)
        out.append("</tr>")
    out.append("</table>")
    if report.skipped:
        out.append(f"<h2 class='skip'>Skipped ({len(report.skipped)})</h2><ul>")
        out.extend(f"<li class='skip'>{e(s.video)}: {e(s.reason)}</li>" for s in report.skipped)
        out.append("</ul>")
    if report.retrieval and report.retrieval.get("recall"):
        out.append(f"<h2>Retrieval</h2><pre>{e(json.dumps(report.retrieval['recall'], indent=2))}</pre>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(report: ScoreReport, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``.json``, ``.csv`` or ``.html`` (by suffix) atomically.

    Raises:
        InputError: another suffix.
        OutputError: the file exists and ``overwrite`` is false.
    """
    from vidgen.io.files import atomic_write_text

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = report_json(report)
    elif suffix == ".csv":
        text = report_csv(report)
    elif suffix in (".html", ".htm"):
        text = report_html(report, path)
    else:
        raise InputError(f"report file {str(path)!r} must end in .json, .csv or .html")
    return atomic_write_text(path, text, overwrite=overwrite)
