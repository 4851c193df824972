"""``vidgen story``: a script of captions -> continuing clips, a stitched video, subtitles and a page."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Optional

from vidgen.cli.common import add_config_args, flag_overrides, merged_overrides

HELP = "generate a story: one clip per caption, each continuing the last"

DESCRIPTION = """\
Generate one clip per caption (from --script or repeated --prompt), each
conditioned on the last --overlap frames of the previous clip, and write into
--out: clip_NNN.mp4, the stitched story.mp4 (overlaps removed), story.srt and
story.vtt subtitles, the interleaved story.jsonl and story.html. A .txt script
has one caption per line; a .jsonl script has rows with 'caption' and
optionally 'frames', 'negative_prompt', 'guidance'. --mode independent samples
the clips separately (the baseline)."""

FIELDS = {"script": "script", "prompt": "prompts", "model": "model", "out": "out", "frames_per_clip": "frames",
          "overlap": "overlap", "seed": "seed", "mode": "mode", "resample": "resample", "pin": "pin", "steps": "steps", "guidance": "guidance",
          "guidance_interval": "guidance_interval", "scheduler": "scheduler", "height": "height", "width": "width", "fps": "fps", "upscale": "upscale",
          "negative_prompt": "negative_prompt", "device": "device", "overwrite": "overwrite"}


@dataclass
class StoryConfig:
    """``vidgen story`` settings; sampling settings default to the model folder's ``sample_defaults.yaml``."""

    script: Optional[str] = None
    prompts: list[str] = field(default_factory=list)
    model: Optional[str] = None
    out: str = "story"
    frames: int = 16
    overlap: int = 2
    seed: int = 0
    mode: str = "continuity"
    shared_noise: bool = True
    resample: Optional[int] = None  # None: the model folder's, when sampling with DDIM; else 0
    pin: str = "noised"  # a model trained with context frames ships pin: clean in its sample_defaults.yaml
    steps: int = 25
    guidance: float = 7.5
    guidance_interval: Optional[list[float]] = None  # [lo, hi] timesteps where guidance runs; None: every step
    scheduler: Optional[str] = None
    negative_prompt: str = ""
    height: Optional[int] = None
    width: Optional[int] = None
    fps: float = 8.0
    upscale: int = 1
    device: str = "auto"
    dtype: str = "fp32"
    overwrite: bool = False

    def __post_init__(self) -> None:
        from vidgen.pipelines.text_to_video import check_guidance_interval

        check_guidance_interval(self.guidance_interval)  # before the model loads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("story", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--script", metavar="FILE", help="story script (.txt: a caption per line; .jsonl: rows)")
    p.add_argument("--prompt", "-p", action="append", metavar="TEXT", help="a caption (repeatable, in order)")
    p.add_argument("--model", "-m", metavar="DIR", help="model folder (default: the shipped model)")
    p.add_argument("--out", "-o", metavar="DIR", help="output folder (default story/)")
    p.add_argument("--frames-per-clip", type=int, metavar="N", help="frames per clip")
    p.add_argument("--overlap", type=int, metavar="K", help="frames each clip shares with the previous one (default 2)")
    p.add_argument("--seed", type=int, metavar="S", help="clip i uses seed S+i (default 0)")
    p.add_argument("--mode", choices=("continuity", "independent"), help="condition on the previous clip, or not (baseline)")
    p.add_argument("--no-shared-noise", dest="shared_noise", action="store_false", default=None,
                   help="do not reuse the previous clip's noise for the overlapping frames")
    p.add_argument("--resample", type=int, metavar="R", help="RePaint resampling rounds per step for continuing clips "
                   "(0 = none; each round costs one more denoiser call per step; ddim scheduler; default: the model "
                   "folder's when sampling with ddim, else 0)")
    p.add_argument("--pin", choices=("noised", "clean"), help="show the previous clip's frames noised to each step's level "
                   "(RePaint, any model) or clean (models trained with context frames); default from the model folder, else noised")
    p.add_argument("--steps", type=int, metavar="N", help="denoising steps")
    p.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance scale")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                   help="guide only at timesteps LO..HI (0-1000; 0 1000: every step)")
    p.add_argument("--scheduler", metavar="NAME", help="sampling scheduler short name")
    p.add_argument("--negative-prompt", metavar="TEXT", help="negative prompt for every clip")
    p.add_argument("--height", type=int, metavar="H")
    p.add_argument("--width", type=int, metavar="W")
    p.add_argument("--fps", type=float, metavar="N", help="frame rate of the written videos")
    p.add_argument("--upscale", type=int, metavar="K", help="enlarge written videos K times")
    p.add_argument("--device", metavar="DEV", help="cpu, cuda or auto")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace existing story files")
    add_config_args(p)
    p.set_defaults(func=main)


def resolve_config(args: argparse.Namespace) -> tuple[StoryConfig, dict]:
    """Defaults, then the model folder's sampling defaults, then --config files, flags and key=value.

    Also returns the model folder's ``resample`` default (``{}`` or ``{"resample": R}``), which applies
    only once the scheduler is known (:func:`default_resample`), so the file is read once.
    """
    from pathlib import Path

    from vidgen.config import load_config
    from vidgen.pipelines.loading import default_model_dir
    from vidgen.pipelines.sample import model_sample_defaults

    overrides = merged_overrides(flag_overrides(args, {**FIELDS, "shared_noise": "shared_noise"}), args.overrides)
    first = load_config(StoryConfig, files=args.config, overrides=overrides)
    model_dir = Path(first.model) if first.model else default_model_dir()
    model_layer = model_sample_defaults(model_dir, StoryConfig)
    model_resample = {"resample": model_layer.pop("resample")} if "resample" in model_layer else {}
    cfg = load_config(StoryConfig, files=[model_layer, *args.config], overrides={**overrides, "model": str(model_dir)})
    return cfg, model_resample


def main(args: argparse.Namespace) -> int:
    from vidgen.errors import InputError
    from vidgen.io.story import check_story_output, write_story
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.story import StoryPipeline, StorySegment, default_resample, read_script

    cfg, model_resample = resolve_config(args)
    if cfg.script and cfg.prompts:
        raise InputError("give --script or --prompt, not both")
    if cfg.script:
        segments = read_script(cfg.script)
    elif cfg.prompts:
        for i, p in enumerate(cfg.prompts, 1):
            if not p.strip():
                raise InputError(f"--prompt {i} is empty")
        segments = [StorySegment(p.strip()) for p in cfg.prompts]
    else:
        raise InputError("no story given (use --script FILE or --prompt TEXT --prompt TEXT ...)")
    # Everything that can be checked fails here, before the model loads and the clips are generated.
    StoryPipeline(None)._check(segments, cfg.frames, cfg.overlap, cfg.mode, cfg.resample or 0, cfg.pin)
    if not cfg.fps > 0:
        raise InputError(f"--fps must be positive, got {cfg.fps}")
    if cfg.upscale < 1:
        raise InputError(f"--upscale must be >= 1, got {cfg.upscale}")
    check_story_output(cfg.out, len(segments), cfg.overwrite)
    pipe = load_pipeline(cfg.model, device=cfg.device, dtype=cfg.dtype, scheduler=cfg.scheduler)
    if cfg.resample is None:
        cfg.resample = default_resample(pipe, model_resample)
    story = StoryPipeline(pipe)(
        segments, num_frames=cfg.frames, overlap=cfg.overlap, height=cfg.height, width=cfg.width,
        num_inference_steps=cfg.steps, guidance_scale=cfg.guidance, negative_prompt=cfg.negative_prompt or None,
        seed=cfg.seed, mode=cfg.mode, shared_noise=cfg.shared_noise, resample=cfg.resample, pin=cfg.pin, fps=cfg.fps,
        guidance_interval=cfg.guidance_interval,
    )
    paths = write_story(story, cfg.out, overwrite=cfg.overwrite, upscale=cfg.upscale,
                        settings={"model": cfg.model, "scheduler": cfg.scheduler})
    for name in ("story.mp4", "story.html", "story.jsonl"):
        print(f"wrote {paths[name]}")
    print(f"wrote {len(story.clips)} clips, story.srt and story.vtt in {cfg.out}")
    return 0
