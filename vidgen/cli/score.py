"""``vidgen score``: ViCLIP (and frame-level CLIP) similarity between videos and captions."""

from __future__ import annotations

import argparse

from vidgen.cli.common import COUNT, add_config_args, add_json_arg, emit, flag_overrides, merged_overrides

HELP = "score videos against captions with ViCLIP (CLIPSIM)"

DESCRIPTION = """\
Score each video against its caption with ViCLIP: the cosine of the L2-normalised
video and text embeddings (ViCLIP CLIPSIM). VIDEOS are files, folders, or a
.jsonl/.csv of {video, caption} rows. Captions come from those rows, --captions
FILE, --prompt TEXT (one for all videos), or the .yaml that `vidgen sample`
writes beside each video. --retrieve ranks candidate texts for each video (and
videos for each text) with softmax(100 * cosine) probabilities and Recall@K.

Unreadable, corrupt or too-short videos are listed as skipped with the reason;
the run goes on. Preprocessing is explicit: --preprocess demo (default; the
public ViCLIP demo's frames, resize and ImageNet normalisation) or vbench."""

EPILOG = """\
examples:
  vidgen score videos/ --prompt "a red circle slides to the left" --viclip ViCLIP-L-14-hf/
  vidgen score pairs.jsonl --out report.json --html report.html
  vidgen score clip.mp4 --retrieve --prompt "a dog runs" --prompt "a cat sleeps" --prompt "a car drives"
  vidgen score videos/ --captions captions.csv --metric both --clip clip-vit-base-patch32/
  vidgen score --suite vbench vbench_videos/ --viclip ViClip-InternVid-10M-FLT.pth --out vbench_results/
  vidgen score --fvd real/ generated/ --fvd-net i3d --i3d i3d_torchscript.pt --out fvd.json
  vidgen score videos/ preprocess=vbench batch_size=4 --prompt "..."   (key=value right after VIDEOS)"""

# argparse dest -> ScoreConfig field
FIELDS = {
    "videos": "videos",
    "prompt": "prompts",
    "captions": "captions",
    "viclip": "viclip",
    "size": "viclip_size",
    "clip": "clip",
    "metric": "metric",
    "preprocess": "preprocess",
    "clip_frames": "clip_frames",
    "batch_size": "batch_size",
    "retrieve": "retrieve",
    "topk": "topk",
    "out": "out",
    "html": "html",
    "device": "device",
    "dtype": "dtype",
    "overwrite": "overwrite",
    "suite": "suite",
    "name": "name",
    "full_info": "full_info",
    "fvd": "fvd",
    "fvd_net": "fvd_net",
    "i3d": "i3d",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to score")
    what.add_argument("videos", nargs="*", metavar="VIDEOS", help="video files, folders, or .jsonl/.csv of {video, caption}")
    what.add_argument("--prompt", "-p", action="append", metavar="TEXT", help="caption for every video (repeatable with --retrieve)")
    what.add_argument("--captions", metavar="FILE", help=".jsonl/.csv of {video, caption}, or .txt with one caption per video")
    what.add_argument("--retrieve", action="store_true", default=None, help="rank candidate texts per video and videos per text")
    what.add_argument("--topk", type=COUNT, metavar="K", help="how many ranked results to keep with --retrieve (default 5)")
    model = p.add_argument_group("models and metric")
    model.add_argument("--viclip", metavar="PATH", help="ViCLIP .pth, HF folder or vidgen export (default: checkpoints/viclip/)")
    model.add_argument("--size", metavar="NAME", help="ViCLIP size l14, b16, toy, tiny (default: from the checkpoint)")
    model.add_argument("--metric", choices=("viclip", "clip", "both"), help="viclip (default), clip (frame-level CLIPSIM) or both")
    model.add_argument("--clip", metavar="DIR", help="transformers CLIPModel folder for --metric clip/both")
    model.add_argument("--clip-frames", type=COUNT, metavar="N", help="frames per video for frame-level CLIP (default 16)")
    model.add_argument("--preprocess", choices=("demo", "vbench"), help="ViCLIP frame choice and normalisation (default demo)")
    sets = p.add_argument_group("set-level scores")
    sets.add_argument("--suite", choices=("vbench",), help="vbench: VBench's overall_consistency and temporal_style over "
                      "a folder of {prompt}-{index}.mp4 (prompts from the names, or --captions: VBench's prompt JSON or a "
                      "table); --out is then the results folder, in VBench's layout")
    sets.add_argument("--name", metavar="NAME", help="with --suite vbench: results are NAME_eval_results.json ... (default vidgen)")
    sets.add_argument("--full-info", metavar="FILE", help="with --suite vbench: VBench's VBench_full_info.json, for standard "
                      "mode (each dimension over its own prompts' {prompt}-{0..4} videos, as VBench's leaderboard)")
    sets.add_argument("--fvd", nargs=2, metavar=("REAL", "GENERATED"), help="Fréchet video distance between two folders of videos")
    sets.add_argument("--fvd-net", choices=("viclip", "i3d"), help="FVD features: viclip (--viclip or the shipped one; "
                      "default) or i3d (--i3d FILE)")
    sets.add_argument("--i3d", metavar="FILE", help="the I3D TorchScript detector of the common FVD code (i3d_torchscript.pt)")
    out = p.add_argument_group("output")
    out.add_argument("--out", "-o", metavar="FILE", help="report file: .json or .csv")
    out.add_argument("--html", metavar="FILE", help="HTML page with each video beside its caption and score")
    out.add_argument("--overwrite", action="store_true", default=None, help="replace existing report files")
    run = p.add_argument_group("hardware")
    run.add_argument("--batch-size", type=COUNT, metavar="N", help="videos encoded together (default 1)")
    run.add_argument("--device", metavar="DEV", help="cpu, cuda or auto (default auto)")
    run.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="weight precision (default fp32)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(func=main)


def resolve_config(args: argparse.Namespace):
    """The layered :class:`~vidgen.metrics.scoring.ScoreConfig` for parsed arguments."""
    from pathlib import Path

    from vidgen.config import load_config
    from vidgen.metrics.scoring import ScoreConfig

    # VIDEOS and key=value are both positional: argparse gives them all to VIDEOS, so split them here
    # (a "key=value" that is an existing file stays a video).
    videos = [v for v in args.videos or [] if "=" not in v or Path(v).exists()]
    extra = [v for v in args.videos or [] if v not in videos]
    args = argparse.Namespace(**{**vars(args), "videos": videos})
    overrides = merged_overrides(flag_overrides(args, FIELDS), list(args.overrides) + extra)
    return load_config(ScoreConfig, files=args.config, overrides=overrides)


def _print_row(row) -> None:
    from tqdm.auto import tqdm

    scores = "  ".join(f"{name} {value:.4f}" for name, value in row.scores.items())
    line = f"{scores}  {row.video}"
    if row.ranked_texts:
        line += "".join(f"\n    {p:.3f}  cos {c:.4f}  {t}" for t, c, p in row.ranked_texts)
    elif row.caption:
        line += f"  {row.caption!r}"
    tqdm.write(line)


def main(args: argparse.Namespace) -> int:
    from vidgen.metrics.reports import summary_lines
    from vidgen.metrics.scoring import run_fvd, run_score, run_vbench

    cfg = resolve_config(args)
    if cfg.fvd:
        report = run_fvd(cfg, progress=not args.no_progress and not args.json)
        fvd = report.set_level["fvd"]
        lines = [f"FVD {fvd['fvd']:.4f} ({fvd['definition']['network']} features) between {fvd['sets']['real']['videos']} "
                 f"real and {fvd['sets']['generated']['videos']} generated videos"] + [f"warning: {w}" for w in fvd["warnings"]]
        lines += [f"skipped {s.video}: {s.reason}" for s in report.skipped]
        lines += [f"wrote {path}" for path in (cfg.out, cfg.html) if path]
        emit(args, fvd, lines)
        return 0
    run = run_vbench if cfg.suite == "vbench" else run_score
    report = run(cfg, progress=not args.no_progress and not args.json, on_scored=None if args.json else _print_row)
    lines = summary_lines(report)
    if report.retrieval:
        for entry in report.retrieval["text_to_video"]:
            lines.append(f"{entry['text']!r}:" + "".join(f"\n    {p:.3f}  cos {c:.4f}  {video}" for video, c, p in entry["videos"]))
    if report.retrieval and report.retrieval.get("recall"):
        for direction, values in report.retrieval["recall"].items():
            lines.append(f"{direction.replace('_to_', '->')} " + "  ".join(f"R@{k} {v:.3f}" for k, v in values.items()))
    if report.rows:
        lines += [f"wrote {path}" for path in (cfg.out, cfg.html) if path]
    summary = {k: v for k, v in report.to_dict().items() if k != "videos"}
    emit(args, {**summary, "outputs": [p for p in (cfg.out, cfg.html) if p]}, lines)
    if not report.rows:
        from vidgen.errors import VideoError

        raise VideoError(f"no video could be scored ({len(report.skipped)} skipped; reasons above)")
    return 0
