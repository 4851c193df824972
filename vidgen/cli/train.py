"""``vidgen train``: train a text-to-video denoiser (or a VAE / ViCLIP), or plot a run's curves.

``vidgen train [--config FILE ...] [key=value ...]`` is short for ``vidgen train denoiser ...``.
The toy world's data streams and its judge are handed to the generic trainers here, by the
names configs use (``data.source: toyworld``, ``validation.scorers: [judge]``).
"""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_config_args, add_json_arg, emit

HELP = "train a denoiser (default), a VAE or a ViCLIP; plot curves"

DESCRIPTION = """\
Train with layered settings: the built-in defaults, then --config files (a file
may start from another with _base_: FILE), then key=value overrides. The same
command runs on several GPUs or nodes under `accelerate launch`.

  vidgen train --config configs/train/tiny.yaml train.max_steps=50
  vidgen train --config configs/train/tiny.yaml --resume latest
  accelerate launch --num_processes 8 -m vidgen train --config configs/train/internvid_aes_256.yaml
  vidgen train vae --config configs/toy/vae.yaml
  vidgen train viclip --config configs/toy/viclip.yaml
  vidgen train plot runs/tiny"""

SUBCOMMANDS = ("denoiser", "vae", "viclip", "plot")
DEFAULT_SUBCOMMAND = "denoiser"  # `vidgen train --config X` is `vidgen train denoiser --config X`


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="train_command", metavar="WHAT", title="what to train", required=True)

    p = kinds.add_parser("denoiser", help="the text-to-video denoiser (the default: `vidgen train --config ...`)",
                         description="Train the denoiser of a text-to-video model with Accelerate.")
    p.add_argument("--resume", metavar="latest|PATH", help="continue from the run's newest complete checkpoint, or from PATH")
    add_config_args(p)
    add_json_arg(p)
    p.set_defaults(func=run_denoiser)

    p = kinds.add_parser("vae", help="an image VAE (AutoencoderKL) on frames of a folder or the toy world",
                         description="Train an AutoencoderKL on video frames (configs/toy/vae.yaml: the toy world's).")
    add_config_args(p)
    add_json_arg(p)
    p.set_defaults(func=run_vae)

    p = kinds.add_parser("viclip", help="a ViCLIP, contrastively, on captioned clips of a folder or the toy world",
                         description="Train a ViCLIP contrastively (configs/toy/viclip.yaml: the toy world's).")
    add_config_args(p)
    add_json_arg(p)
    p.set_defaults(func=run_viclip)

    p = kinds.add_parser("plot", help="draw a run's loss, learning rate, throughput and validation curves as a PNG",
                         description="Plot a training run's metrics.jsonl.")
    p.add_argument("run", metavar="RUN", help="training run folder")
    p.add_argument("--out", metavar="PNG", help="where to write the figure (default RUN/curves.png)")
    add_json_arg(p)
    p.set_defaults(func=run_plot)


def _config(schema, args: argparse.Namespace):
    from vidgen.config import load_config
    from vidgen.errors import InputError

    if not args.config and not args.overrides:
        raise InputError(f"give a config: vidgen {args.command} {args.train_command} --config FILE.yaml [key=value ...]")
    return load_config(schema, files=args.config, overrides=args.overrides)


def run_denoiser(args: argparse.Namespace) -> int:
    import os

    from vidgen.toyworld.streams import SCORERS
    from vidgen.training.config import TrainConfig
    from vidgen.training.loop import train

    cfg = _config(TrainConfig, args)
    result = train(cfg, resume=args.resume, scorers=SCORERS)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun / accelerate launch the first process reports for all
    summary = {"run": cfg.output_dir, "step": result.state.step, "checkpoint": str(result.checkpoint),
               "finished_before": result.finished_before, "samples_seen": result.state.samples_seen,
               "skipped_samples": result.state.skipped_samples, "nan_skips": result.state.nan_skips,
               "validation": {k: v for k, v in result.validation.items() if isinstance(v, (int, float))}}
    if result.finished_before:
        emit(args, summary, f"run {cfg.output_dir} finished at step {result.state.step}; raise train.max_steps to continue")
        return 0
    lines = [f"trained {cfg.output_dir} to step {result.state.step} ({result.state.samples_seen} samples); "
             f"checkpoint {result.checkpoint}"]
    scores = ", ".join(f"{k} {v:.4f}" for k, v in summary["validation"].items() if isinstance(v, float))
    if scores:
        lines.append(f"validation: {scores}")
    emit(args, summary, lines)
    return 0


def run_vae(args: argparse.Namespace) -> int:
    from vidgen.toyworld.streams import VAE_SOURCES
    from vidgen.training.vae import VAETrainConfig, train_vae

    cfg = _config(VAETrainConfig, args)
    _report_model(args, "VAE", f"{cfg.output_dir}/vae", train_vae(cfg, sources=VAE_SOURCES))
    return 0


def run_viclip(args: argparse.Namespace) -> int:
    from vidgen.toyworld.streams import VICLIP_STREAMS
    from vidgen.training.viclip import ViCLIPTrainConfig, train_viclip

    cfg = _config(ViCLIPTrainConfig, args)
    _report_model(args, "ViCLIP", f"{cfg.output_dir}/viclip", train_viclip(cfg, streams=VICLIP_STREAMS))
    return 0


def _report_model(args: argparse.Namespace, what: str, folder: str, report: dict[str, float]) -> None:
    emit(args, {"folder": folder, **report},
         f"wrote the {what} to {folder}: " + ", ".join(f"{k} {v:.4g}" for k, v in report.items()))


def run_plot(args: argparse.Namespace) -> int:
    from vidgen.training.plot import plot_run

    figure = plot_run(args.run, args.out)
    emit(args, {"figure": str(figure)}, f"wrote {figure}")
    return 0
