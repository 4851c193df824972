"""``vidgen export RUN``: turn a training checkpoint into a model folder that ``vidgen sample`` opens."""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_json_arg, emit

HELP = "write a sampling-ready model folder from a training run"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=HELP, description="Write a sampling-ready model folder from a training run.")
    p.add_argument("run", metavar="RUN", help="training run folder (or one checkpoint folder)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="model folder to write")
    p.add_argument("--checkpoint", default="latest", metavar="latest|PATH", help="which checkpoint (default latest)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_json_arg(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vidgen.training.export import export_model

    out = export_model(args.run, args.out, checkpoint=args.checkpoint, use_ema=not args.no_ema, overwrite=args.overwrite)
    emit(args, {"folder": str(out), "run": args.run, "ema": not args.no_ema},
         f"wrote the model folder {out} (from {args.run}, {'raw' if args.no_ema else 'EMA'} weights); "
         f"sample it with: vidgen sample --model {out} --prompt TEXT")
    return 0
