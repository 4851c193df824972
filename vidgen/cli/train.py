"""``vidgen train``: fine-tune or train a text-to-video denoiser; ``vidgen train plot RUN``: its curves."""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_config_args

HELP = "train a text-to-video model (or its VAE / ViCLIP; 'plot RUN' draws a run's curves)"

DESCRIPTION = """\
Train the denoiser of a text-to-video model with Accelerate. Settings: the
built-in defaults, then --config files (a file may start from another with
_base_: FILE), then key=value overrides. The same command runs on several GPUs
or nodes under `accelerate launch`.

  vidgen train --config configs/train/tiny.yaml train.max_steps=50
  vidgen train --config configs/train/tiny.yaml --resume latest
  accelerate launch --num_processes 8 -m vidgen train --config configs/train/internvid_aes_256.yaml
  vidgen train plot runs/tiny                  (writes runs/tiny/curves.png)
  vidgen train vae --config configs/toy/vae.yaml        (the toy world's AutoencoderKL)
  vidgen train viclip --config configs/toy/viclip.yaml  (the toy world's ViCLIP and text encoder)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resume", metavar="latest|PATH", help="continue from the run's newest complete checkpoint, or from PATH")
    p.add_argument("--out", metavar="PNG", help="with 'plot': where to write the figure (default RUN/curves.png)")
    add_config_args(p)
    p.set_defaults(func=main)


def _plot(args: argparse.Namespace) -> int:
    from vidgen.errors import InputError
    from vidgen.training.plot import plot_run

    if len(args.overrides) != 2:
        raise InputError("usage: vidgen train plot RUN [--out PNG]")
    print(f"wrote {plot_run(args.overrides[1], args.out)}")
    return 0


def _vae(args: argparse.Namespace) -> int:
    import json

    from vidgen.config import load_config
    from vidgen.training.vae import VAETrainConfig, train_vae

    cfg = load_config(VAETrainConfig, files=args.config, overrides=args.overrides[1:])
    report = train_vae(cfg)
    print(f"wrote {cfg.output_dir}/vae: {json.dumps({k: round(v, 4) for k, v in report.items()})}")
    return 0


def _viclip(args: argparse.Namespace) -> int:
    import json

    from vidgen.config import load_config
    from vidgen.training.viclip import ViCLIPTrainConfig, train_viclip

    cfg = load_config(ViCLIPTrainConfig, files=args.config, overrides=args.overrides[1:])
    report = train_viclip(cfg)
    print(f"wrote {cfg.output_dir}/viclip: {json.dumps({k: round(v, 4) for k, v in report.items()})}")
    return 0


def main(args: argparse.Namespace) -> int:
    from vidgen.config import load_config
    from vidgen.errors import InputError
    from vidgen.training.config import TrainConfig
    from vidgen.training.loop import train

    if args.overrides and args.overrides[0] == "plot":
        return _plot(args)
    if args.overrides and args.overrides[0] == "vae":
        return _vae(args)
    if args.overrides and args.overrides[0] == "viclip":
        return _viclip(args)
    if not args.config and not args.overrides:
        raise InputError("give a config: vidgen train --config configs/train/NAME.yaml [key=value ...]")
    cfg = load_config(TrainConfig, files=args.config, overrides=args.overrides)
    result = train(cfg, resume=args.resume)
    print(f"finished at step {result.state.step}; checkpoint {result.checkpoint}")
    if result.validation:
        shown = {k: round(v, 4) for k, v in result.validation.items() if isinstance(v, float)}
        if shown:
            print(f"validation: {shown}")
    return 0
