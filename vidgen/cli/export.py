"""``vidgen export RUN``: a training checkpoint -> a model folder, a MotionAdapter, an original AnimateDiff file, a LoRA."""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_json_arg, emit

HELP = "write a run as a model folder, motion adapter or LoRA"

DESCRIPTION = """\
Write a training run's weights in the formats other tools open:
  folder          a model folder: vidgen sample --model, or plain diffusers' DiffusionPipeline.from_pretrained
  motion-adapter  the motion modules as a diffusers MotionAdapter folder (AnimateDiffPipeline with any SD 1.5 base)
  single-file     the motion modules in AnimateDiff's original layout, one .safetensors (ComfyUI, A1111)
  lora            a LoRA run's adapters as pytorch_lora_weights.safetensors (load_lora_weights)"""

USE = {
    "folder": "sample it with: vidgen sample --model {out} --prompt TEXT",
    "motion-adapter": "use it with: vidgen sample --base SD15 --motion-adapter {out} --prompt TEXT",
    "single-file": "use it with: vidgen sample --base SD15 --motion-adapter {out} --prompt TEXT (or ComfyUI's AnimateDiff nodes)",
    "lora": "apply it on the run's own base with: vidgen sample ... --lora {out} --prompt TEXT",
}


def register(sub: argparse._SubParsersAction) -> None:
    from vidgen.training.export import EXPORT_FORMATS

    p = sub.add_parser("export", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="training run folder (or one checkpoint folder)")
    p.add_argument("--out", "-o", required=True, metavar="PATH", help="folder to write (single-file: a .safetensors file)")
    p.add_argument("--format", "-f", default="folder", choices=EXPORT_FORMATS, help="what to write (default folder)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="precision of every written tensor (default fp32, which opens anywhere without a dtype argument)")
    p.add_argument("--checkpoint", default="latest", metavar="latest|PATH", help="which checkpoint (default latest)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_json_arg(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vidgen.training.export import export_model

    out = export_model(args.run, args.out, checkpoint=args.checkpoint, use_ema=not args.no_ema, overwrite=args.overwrite,
                       format=args.format, dtype=args.dtype)
    emit(args, {"out": str(out), "folder": str(out), "format": args.format, "dtype": args.dtype, "run": args.run, "ema": not args.no_ema},
         f"wrote {out} ({args.format}, {args.dtype}, from {args.run}, {'raw' if args.no_ema else 'EMA'} weights); "
         + USE[args.format].format(out=out))
    return 0
