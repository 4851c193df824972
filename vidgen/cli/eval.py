"""``vidgen eval --suite toyworld``: sample, judge and score a model on toy-world prompts."""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_config_args, flag_overrides, merged_overrides

HELP = "evaluate a model on the toy world (judge accuracy, seen vs held-out, CLIPSIM) or on stories (continuity)"

FIELDS = {"suite": "suite", "story": "story", "model": "model", "viclip": "viclip", "n": "n", "out": "out", "seed": "seed",
          "steps": "steps", "guidance": "guidance", "guidance_interval": "guidance_interval", "scheduler": "scheduler", "batch_size": "batch_size",
          "device": "device", "save_videos": "save_videos", "overwrite": "overwrite", "overlap": "overlap",
          "resample": "resample", "pin": "pin"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help=HELP, description=HELP + ". Sampling settings default to the model folder's "
                       "sample_defaults.yaml; results go to OUT/results.json, OUT/table.md and OUT/contact_sheet.png.")
    p.add_argument("--suite", choices=("toyworld", "story"), help="toyworld: single prompts (default); story: three-clip "
                   "stories with continuity vs independent clips")
    p.add_argument("--story", metavar="DIR", help="measure an existing story folder (vidgen story output) instead")
    p.add_argument("--model", "-m", metavar="DIR", help="model folder (default: the shipped model)")
    p.add_argument("--viclip", metavar="PATH", help="ViCLIP for CLIPSIM (default: MODEL/viclip or checkpoints/viclip)")
    p.add_argument("--n", type=int, metavar="N", help="prompts (toyworld: 120, half held-out combinations) or stories (story: 30)")
    p.add_argument("--out", "-o", metavar="DIR", help="results folder (default eval/toyworld)")
    p.add_argument("--seed", type=int, metavar="S", help="prompt order and sampling seeds (default 0)")
    p.add_argument("--steps", type=int, metavar="N", help="denoising steps")
    p.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance scale")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                   help="guide only at timesteps LO..HI (default: the model folder's; 0 1000: every step)")
    p.add_argument("--scheduler", metavar="NAME", help="sampling scheduler short name")
    p.add_argument("--overlap", type=int, metavar="K", help="story suite: frames each clip shares with the previous one (default 2)")
    p.add_argument("--resample", type=int, metavar="R", help="story suite: RePaint resampling rounds per step "
                   "(default: the model folder's, with its scheduler; else 0)")
    p.add_argument("--pin", choices=("noised", "clean"), help="story suite: how the previous clip's frames are shown "
                   "(vidgen story --pin; default from the model folder, else noised)")
    p.add_argument("--batch-size", type=int, metavar="N", help="prompts sampled together (default 8)")
    p.add_argument("--device", metavar="DEV", help="cpu, cuda or auto")
    p.add_argument("--save-videos", action="store_true", default=None, help="also write every sampled clip as MP4")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace existing results")
    add_config_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import sys

    import json

    from vidgen.config import load_config
    from vidgen.metrics.story import format_story_table, run_story_eval, story_folder_measures
    from vidgen.metrics.toyeval import EvalConfig, format_table, run_toyworld_eval

    cfg = load_config(EvalConfig, files=args.config, overrides=merged_overrides(flag_overrides(args, FIELDS), args.overrides))
    if cfg.story:
        print(json.dumps(story_folder_measures(cfg.story), indent=1))
        return 0

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} {'prompts' if cfg.suite == 'toyworld' else 'stories'}", end="", file=sys.stderr, flush=True)

    if cfg.suite == "story":
        result = run_story_eval(cfg, progress=progress)
        print(file=sys.stderr)
        print(format_story_table(result.summary))
        print(f"wrote {cfg.out}/results.json, {cfg.out}/table.md")
        return 0
    report = run_toyworld_eval(cfg, progress=progress)
    print(file=sys.stderr)
    print(format_table(report.summary))
    print(f"wrote {cfg.out}/results.json, {cfg.out}/table.md, {cfg.out}/contact_sheet.png")
    return 0
