"""``vidgen eval``: sample, judge and score a model on the toy world's suites (single prompts, stories)."""

from __future__ import annotations

import argparse

from vidgen.cli.common import (COUNT, SAMPLING_FLAGS, STORY_FLAGS, WEIGHTS_FLAGS, add_config_args, add_json_arg, add_sampling_args, add_story_args,
                               add_weights_args,
                               emit, flag_overrides, merged_overrides)

HELP = "evaluate a model on the toy world's suites"

FIELDS = {"suite": "suite", "story": "story_folder", "fvd": "fvd", "model": "model", "viclip": "viclip", "n": "n", "out": "out",
          "batch_size": "batch_size", "device": "device", "compile": "compile", "save_videos": "save_videos", "overwrite": "overwrite",
          **STORY_FLAGS, **SAMPLING_FLAGS, **WEIGHTS_FLAGS}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help=HELP, description="Evaluate a model on the toy world (judge accuracy, seen vs held-out, CLIPSIM) or on stories (continuity). Sampling settings default to the model folder's "
                       "sample_defaults.yaml; results go to OUT/results.json, OUT/table.md and OUT/contact_sheet.png.")
    p.add_argument("--suite", choices=("toyworld", "story"), help="toyworld: single prompts (default); story: three-clip "
                   "stories with continuity vs independent clips")
    p.add_argument("--story", metavar="DIR", help="measure an existing story folder (vidgen story output) instead")
    add_weights_args(p)
    p.add_argument("--viclip", metavar="PATH", help="ViCLIP for CLIPSIM (default: MODEL/viclip or the shipped ViCLIP)")
    p.add_argument("--n", type=COUNT, metavar="N", help="prompts (toyworld: 120, half held-out combinations) or stories (story: 30)")
    p.add_argument("--out", "-o", metavar="DIR", help="results folder (default eval/toyworld)")
    p.add_argument("--batch-size", type=COUNT, metavar="N", help="prompts sampled together (default 8)")
    p.add_argument("--device", metavar="DEV", help="cpu, cuda or auto")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the denoiser (not with --cache)")
    p.add_argument("--save-videos", action="store_true", default=None, help="also write every sampled clip as MP4")
    p.add_argument("--fvd", action="store_true", default=None, help="toyworld suite: also the ViCLIP FVD of the generated "
                   "clips against real toy clips of the same attributes, and of two real sets (the floor)")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace existing results")
    add_story_args(p, "story suite")
    add_sampling_args(p, what="clip (--seed also orders the prompts)")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import sys

    from vidgen.config import load_config
    from vidgen.pipelines.settings import load_job_config
    from vidgen.toyworld.suites import EvalConfig, format_story_table, format_table, run_story_eval, run_toyworld_eval
    from vidgen.toyworld.suites import story_folder_measures

    overrides = merged_overrides(flag_overrides(args, FIELDS), args.overrides)
    cfg = load_config(EvalConfig, files=args.config, overrides=overrides)
    if cfg.story_folder:
        m = story_folder_measures(cfg.story_folder)
        emit(args, m, [f"  clip {i}: {c['caption']!r}: judged {c['color']} {c['shape']} moving {c['motion']}"
                       for i, c in enumerate(m["clips"])] +
             [f"story {cfg.story_folder}: boundary jump median {m['median_jump_px']:.2f} px, pixel change "
              f"x{m['median_pixel_change']:.2f} of the change inside clips, motion as captioned in "
              f"{m['motion_accuracy']:.0%} of clips, colour kept: {m['color_kept']}, shape kept: {m['shape_kept']}"])
        return 0
    cfg = load_job_config(EvalConfig, args.config, overrides)

    def progress(done: int, total: int) -> None:
        if args.json:
            return
        print(f"\r{done}/{total} {'prompts' if cfg.suite == 'toyworld' else 'stories'}", end="", file=sys.stderr, flush=True)

    if cfg.suite == "story":
        result = run_story_eval(cfg, progress=progress)
        summary, table, files = result.summary, format_story_table(result.summary), ["results.json", "table.md"]
    else:
        report = run_toyworld_eval(cfg, progress=progress)
        summary, table, files = report.summary, format_table(report.summary), ["results.json", "table.md", "contact_sheet.png"]
    if not args.json:
        print(file=sys.stderr)
    fvd = summary.get("fvd") if isinstance(summary, dict) else None
    fvd_lines = [f"ViCLIP FVD over {fvd['clips']} clips: generated vs real {fvd['generated_vs_real']:.3f}, "
                 f"real vs real {fvd['real_vs_real']:.3f} (the floor)"] if fvd else []
    emit(args, {"suite": cfg.suite, "out": cfg.out, "summary": summary},
         [table, *fvd_lines, f"wrote {', '.join(f'{cfg.out}/{name}' for name in files)}"])
    return 0
