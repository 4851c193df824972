"""``vidgen sample``: render prompts to MP4/GIF files."""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_config_args, flag_overrides, merged_overrides

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
    "model": "model",
    "out": "out",
    "frames": "frames",
    "fps": "fps",
    "height": "height",
    "width": "width",
    "steps": "steps",
    "guidance": "guidance",
    "guidance_interval": "guidance_interval",
    "seed": "seed",
    "scheduler": "scheduler",
    "negative_prompt": "negative_prompt",
    "num_videos": "num_videos",
    "batch_size": "batch_size",
    "device": "device",
    "dtype": "dtype",
    "attention": "attention",
    "format": "format",
    "upscale": "upscale",
    "upscale_mode": "upscale_mode",
    "overwrite": "overwrite",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to generate")
    what.add_argument("--prompt", "-p", action="append", metavar="TEXT", help="a prompt (repeatable)")
    what.add_argument("--prompts-file", metavar="FILE", help="prompts, one per line (or a .jsonl with a 'prompt' field)")
    what.add_argument("--negative-prompt", metavar="TEXT", help="what to steer away from (default: empty prompt)")
    what.add_argument("--num-videos", type=int, metavar="N", help="videos per prompt, seeds SEED, SEED+1, ... (default 1)")
    where = p.add_argument_group("model and output")
    where.add_argument("--model", "-m", metavar="DIR", help="model folder (default: the shipped model in checkpoints/)")
    where.add_argument("--out", "-o", metavar="PATH", help="output file (.mp4/.gif, one video) or folder (default outputs/)")
    where.add_argument("--format", choices=("mp4", "gif"), help="file format when --out is a folder (default mp4)")
    where.add_argument("--overwrite", action="store_true", default=None, help="replace existing output files")
    how = p.add_argument_group("sampling")
    how.add_argument("--frames", type=int, metavar="N", help="frames per video")
    how.add_argument("--fps", type=float, metavar="N", help="frames per second of the written file")
    how.add_argument("--height", type=int, metavar="H", help="height in pixels (a multiple of the VAE factor)")
    how.add_argument("--width", type=int, metavar="W", help="width in pixels (a multiple of the VAE factor)")
    how.add_argument("--steps", type=int, metavar="N", help="denoising steps")
    how.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance scale (1 = off)")
    how.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                     help="guide only at timesteps LO..HI (0-1000); other steps run the prompt alone, "
                          "one denoiser pass instead of two (0 1000: every step)")
    how.add_argument("--seed", type=int, metavar="S", help="random seed of the first video of each prompt")
    how.add_argument("--scheduler", metavar="NAME", help="ddim, ddpm, pndm, euler, euler-a, heun, dpm++, dpm++-karras, "
                     "dpm++-sde, dpm-single, unipc, deis, kdpm2 (default: the model's own)")
    how.add_argument("--upscale", type=int, metavar="K", help="enlarge the written video K times (for small models)")
    how.add_argument("--upscale-mode", choices=("nearest", "bicubic"), help="upscaling filter (default nearest)")
    run = p.add_argument_group("hardware")
    run.add_argument("--device", metavar="DEV", help="cpu, cuda or auto (default auto)")
    run.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="weight precision (default fp32)")
    run.add_argument("--attention", choices=("auto", "sdpa", "xformers", "math"), help="attention kernel (default auto)")
    run.add_argument("--batch-size", type=int, metavar="N", help="videos denoised together (default 1)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_args(p)
    p.set_defaults(func=main)


def resolve_config(args: argparse.Namespace):
    """The layered :class:`SampleConfig` for parsed arguments."""
    from pathlib import Path

    from vidgen.config import load_config
    from vidgen.pipelines.loading import default_model_dir
    from vidgen.pipelines.sample import SampleConfig, model_sample_defaults

    overrides = merged_overrides(flag_overrides(args, FIELDS), args.overrides)
    first = load_config(SampleConfig, files=args.config, overrides=overrides)
    model_dir = Path(first.model) if first.model else default_model_dir()
    overrides["model"] = str(model_dir)
    return load_config(SampleConfig, files=[model_sample_defaults(model_dir, SampleConfig), *args.config], overrides=overrides)


def main(args: argparse.Namespace) -> int:
    from vidgen.pipelines.sample import plan_jobs, run_sample

    cfg = resolve_config(args)
    plan_jobs(cfg)  # fail on bad prompts or outputs before loading the model
    run_sample(cfg, progress=not args.no_progress, on_written=lambda job: print(f"wrote {job.path}  ({job.prompt!r}, seed {job.seed})", flush=True))
    return 0
