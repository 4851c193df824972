"""``vidgen sample``: render prompts to MP4/GIF files."""

from __future__ import annotations

import argparse

from vidgen.cli.common import (COUNT, SAMPLING_FLAGS, WEIGHTS_FLAGS, add_config_args, add_json_arg, add_sampling_args, add_weights_args,
                               emit, flag_overrides, merged_overrides)

HELP = "generate videos from text prompts"

DESCRIPTION = """\
Generate one video per prompt (and per --num-videos) with a text-to-video model
folder. Settings are layered: built-in defaults, the model folder's
sample_defaults.yaml, --config files, the flags below, then key=value overrides.
Each video is written with a .yaml beside it holding the resolved settings,
prompt and seed, so any file can be reproduced."""

# argparse dest -> SampleConfig field
FIELDS = {
    "prompt": "prompts",
    "prompts_file": "prompts_file",
    "prompt_travel": "prompt_travel",
    "model": "model",
    "out": "out",
    "num_videos": "num_videos",
    "batch_size": "batch_size",
    "device": "device",
    "dtype": "dtype",
    "attention": "attention",
    "compile": "compile",
    "format": "format",
    "upscale_mode": "upscale_mode",
    "overwrite": "overwrite",
    **SAMPLING_FLAGS,
    **WEIGHTS_FLAGS,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to generate")
    what.add_argument("--prompt", "-p", action="append", metavar="TEXT", help="a prompt (repeatable)")
    what.add_argument("--prompts-file", metavar="FILE", help="prompts, one per line (or a .jsonl with a 'prompt' field)")
    what.add_argument("--prompt-travel", nargs="+", metavar="FRAME: TEXT", help="one continuous video whose prompt "
                      "changes at keyframes, e.g. '0: a red circle moves right' '16: a red circle moves up' (or one "
                      ".jsonl/.yaml file of them); the first keyframe is at frame 0")
    what.add_argument("--num-videos", type=COUNT, metavar="N", help="videos per prompt, seeds SEED, SEED+1, ... (default 1)")
    add_weights_args(p)
    where = p.add_argument_group("output")
    where.add_argument("--out", "-o", metavar="PATH", help="output file (.mp4/.gif, one video) or folder (default outputs/)")
    where.add_argument("--format", choices=("mp4", "gif"), help="file format when --out is a folder (default mp4)")
    where.add_argument("--upscale-mode", choices=("nearest", "bicubic"), help="upscaling filter (default nearest)")
    where.add_argument("--overwrite", action="store_true", default=None, help="replace existing output files")
    add_sampling_args(p)
    run = p.add_argument_group("hardware")
    run.add_argument("--device", metavar="DEV", help="cpu, cuda or auto (default auto)")
    run.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="weight precision (default fp32)")
    run.add_argument("--attention", choices=("auto", "sdpa", "xformers", "math"), help="attention kernel (default auto)")
    run.add_argument("--batch-size", type=COUNT, metavar="N", help="videos denoised together (default 1)")
    run.add_argument("--compile", action="store_true", default=None, help="torch.compile the denoiser (pays off over "
                     "many videos: the first of each size compiles; not with --cache)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(func=main)


def resolve_config(args: argparse.Namespace):
    """The layered :class:`SampleConfig` for parsed arguments."""
    from vidgen.pipelines.sample import SampleConfig
    from vidgen.pipelines.settings import load_job_config

    return load_job_config(SampleConfig, args.config, merged_overrides(flag_overrides(args, FIELDS), args.overrides))


def main(args: argparse.Namespace) -> int:
    import time

    from vidgen.pipelines.sample import plan_jobs, run_sample

    cfg = resolve_config(args)
    jobs = plan_jobs(cfg)  # fail on bad prompts or outputs before loading the model
    done = sum(job.done for job in jobs)
    if done:  # a run of this command was stopped: its finished videos stay as they are
        print(f"{done} of {len(jobs)} videos already in {cfg.out} (with their .yaml), skipped; "
              "pass --overwrite to redo them", flush=True)
    start = time.perf_counter()
    written = run_sample(cfg, progress=not args.no_progress and not args.json, jobs=jobs,
                         on_written=lambda job: print(f"wrote {job.path}  ({job.prompt!r}, seed {job.seed})", flush=True))
    seconds = time.perf_counter() - start
    model = cfg.model or cfg.weights.describe()
    emit(args, {"videos": [str(p) for p in written], "count": len(written), "skipped": done, "model": model,
                "seconds": seconds},
         f"{len(written)} video{'s' * (len(written) != 1)} in {seconds:.1f} s with "
         + (f"the model in {model}" if cfg.model else model))
    return 0
