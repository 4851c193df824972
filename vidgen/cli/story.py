"""``vidgen story``: a script of captions -> continuing clips, a stitched video, subtitles and a page."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from vidgen.cli.common import (SAMPLING_FLAGS, STORY_FLAGS, WEIGHTS_FLAGS, add_config_args, add_json_arg, add_sampling_args, add_story_args,
                               add_weights_args,
                               emit, flag_overrides, merged_overrides)
from vidgen.pipelines.settings import SamplingSettings, StorySettings, long_video_settings
from vidgen.pipelines.weights import WeightsSettings

HELP = "generate a story: clips that continue one another"

DESCRIPTION = """\
Generate one clip per caption (from --script or repeated --prompt), each
conditioned on the last --overlap frames of the previous clip, and write into
--out: clip_NNN.mp4, the stitched story.mp4 (overlaps removed), story.srt and
story.vtt subtitles, the interleaved story.jsonl and story.html. A .txt script
has one caption per line; a .jsonl script has rows with 'caption' and
optionally 'frames', 'negative_prompt', 'guidance'. --mode independent samples
the clips separately (the baseline). --continuous makes one continuous video
whose prompt travels from caption to caption (context windows; no overlap)."""

FIELDS = {"script": "script", "prompt": "prompts", "model": "model", "out": "out", "device": "device", "compile": "compile",
          "overwrite": "overwrite", "continuous": "continuous", "mode": "story.mode", "shared_noise": "story.shared_noise", **STORY_FLAGS,
          **SAMPLING_FLAGS, **WEIGHTS_FLAGS}


@dataclass
class StoryConfig:
    """``vidgen story`` settings; sampling and story settings default to the model folder's ``sample_defaults.yaml``."""

    script: Optional[str] = None
    prompts: list[str] = field(default_factory=list)
    model: Optional[str] = None
    out: str = "story"
    device: str = "auto"
    dtype: str = "fp32"
    compile: bool = False  # torch.compile the denoiser
    overwrite: bool = False
    continuous: bool = False  # one continuous video, the captions as prompt-travel keyframes
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    story: StorySettings = field(default_factory=StorySettings)
    weights: WeightsSettings = field(default_factory=WeightsSettings)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("story", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--script", metavar="FILE", help="story script (.txt: a caption per line; .jsonl: rows)")
    p.add_argument("--prompt", "-p", action="append", metavar="TEXT", help="a caption (repeatable, in order)")
    add_weights_args(p)
    p.add_argument("--out", "-o", metavar="DIR", help="output folder (default story/)")
    p.add_argument("--device", metavar="DEV", help="cpu, cuda or auto")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the denoiser (not with --cache)")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace existing story files")
    story = add_story_args(p)
    story.add_argument("--continuous", action="store_true", default=None, help="one continuous video whose prompt "
                       "travels from caption to caption (instead of clips continuing one another)")
    story.add_argument("--mode", choices=("continuity", "independent"), help="condition on the previous clip, or not (baseline)")
    story.add_argument("--no-shared-noise", dest="shared_noise", action="store_false", default=None,
                       help="do not reuse the previous clip's noise for the overlapping frames")
    add_sampling_args(p, frames_flag="--frames-per-clip", what="clip (clip i uses seed SEED+i)")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(func=main)


def resolve_config(args: argparse.Namespace) -> StoryConfig:
    """Defaults, then the model folder's sampling and story defaults, then --config files, flags and key=value."""
    from vidgen.pipelines.settings import load_job_config

    return load_job_config(StoryConfig, args.config, merged_overrides(flag_overrides(args, FIELDS), args.overrides))


def _recorded_settings(cfg: StoryConfig, segments, model: str) -> dict:
    """What a story's ``settings.json`` records that this config fixes before the model loads (values the model
    folder fills in, such as a default size, are left out)."""
    from vidgen.pipelines.story import clip_lengths, keyframe_starts

    s, st = cfg.sampling, cfg.story
    known = {"captions": [seg.caption for seg in segments], **_written_settings(cfg, model), "seed": s.seed,
             "steps": s.steps, "guidance": s.guidance, "guidance_interval": s.guidance_interval,
             "cache": None if s.cache == "none" else s.cache,
             "fps": s.fps, "height": s.height, "width": s.width, **long_video_settings(s)}
    if cfg.continuous:
        known.update(mode="continuous", keyframes=keyframe_starts(clip_lengths(segments, s.frames)))
    else:
        known.update(overlap=st.overlap, mode=st.mode, shared_noise=st.shared_noise, pin=st.pin, resample=st.resample)
    return {key: value for key, value in known.items() if value is not None and key != "weights"}


def _written_settings(cfg: StoryConfig, model: str) -> dict:
    """What ``settings.json`` records beside the pipeline's own meta."""
    s = cfg.sampling
    return {"model": model, "scheduler": s.scheduler, "frames": s.frames, "negative_prompt": s.negative_prompt,
            "upscale": s.upscale, "weights": dataclasses.asdict(cfg.weights)}


def main(args: argparse.Namespace) -> int:
    from vidgen.errors import InputError
    from vidgen.io.story import check_story_output, finished_story, write_story
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.memory import check_sampling_size, model_geometry
    from vidgen.pipelines.settings import pipeline_kwargs, read_model_defaults
    from vidgen.pipelines.story import StoryPipeline, StorySegment, clip_lengths, default_resample, read_script

    cfg = resolve_config(args)
    s, st = cfg.sampling, cfg.story
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
    if cfg.continuous:
        clip_flags = [f"--{name.replace('_', '-')}" for name in ("overlap", "resample", "pin", "mode")
                      if getattr(args, name, None) is not None] + (["--no-shared-noise"] if args.shared_noise is False else [])
        if clip_flags:
            raise InputError(f"--continuous makes one video with no clips to continue: leave out {', '.join(clip_flags)}")
        StoryPipeline(None).check_continuous(segments, s.frames)
    else:
        StoryPipeline(None)._check(segments, s.frames, st.overlap, st.mode, st.resample or 0, st.pin)
    lengths = clip_lengths(segments, s.frames)  # a continuous story is one video of them all
    shared = 0 if cfg.continuous or st.mode != "continuity" else st.overlap * (len(lengths) - 1)
    check_sampling_size(s, model_geometry(cfg.model, cfg.weights), frames=sum(lengths) if cfg.continuous else max(lengths),
                        written_frames=sum(lengths) - shared, dtype=cfg.dtype, device=cfg.device)
    model = cfg.model or cfg.weights.describe()
    if not cfg.overwrite and finished_story(cfg.out, len(segments), _recorded_settings(cfg, segments, model)):
        # The same command ran to the end before: a story is one piece (each clip continues the last), nothing to add.
        emit(args, {"folder": cfg.out, "clips": len(segments), "skipped": True},
             f"the story in {cfg.out} is already complete ({len(segments)} clips, same captions and settings); "
             "pass --overwrite to make it again")
        return 0
    check_story_output(cfg.out, len(segments), cfg.overwrite)
    pipe = load_pipeline(cfg.model, device=cfg.device, dtype=cfg.dtype, scheduler=s.scheduler, weights=cfg.weights,
                         compile=cfg.compile)
    if cfg.continuous:
        story = StoryPipeline(pipe).continuous(segments, seed=s.seed, fps=s.fps, **pipeline_kwargs(s))
    else:
        if st.resample is None:
            st.resample = default_resample(pipe, read_model_defaults(cfg.model).story)
        story = StoryPipeline(pipe)(segments, seed=s.seed, mode=st.mode, overlap=st.overlap, shared_noise=st.shared_noise,
                                    resample=st.resample, pin=st.pin, fps=s.fps, **pipeline_kwargs(s))
    paths = write_story(story, cfg.out, overwrite=cfg.overwrite, upscale=s.upscale,
                        settings=_written_settings(cfg, model))
    emit(args, {"folder": cfg.out, "clips": len(story.clips), "frames": len(story.video),
                "files": {name: str(path) for name, path in paths.items()}},
         [*(f"wrote {paths[name]}" for name in ("story.mp4", "story.html", "story.jsonl")),
          f"a story of {len(story.clips)} clips ({len(story.video)} frames) in {cfg.out}, with story.srt and story.vtt"])
    return 0
