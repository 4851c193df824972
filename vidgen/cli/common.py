"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable

from vidgen.config import SEED_MAX, number_problem
from vidgen.pipelines.settings import SamplingSettings

# argparse dest -> field of the sampling section: every SamplingSettings field has a flag of its name
SAMPLING_FLAGS = {f.name: f"sampling.{f.name}" for f in dataclasses.fields(SamplingSettings)}
# argparse dest -> field of the story section (vidgen story, vidgen eval --suite story)
STORY_FLAGS = {"overlap": "story.overlap", "resample": "story.resample", "pin": "story.pin"}
# argparse dest -> field of the weights section (--base, --motion-adapter, --variant, --lora)
WEIGHTS_FLAGS = {name: f"weights.{name}" for name in ("base", "motion_adapter", "base_config", "variant", "lora")}


def integer(minimum: int | None = 1, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: an integer within the bounds (int64 at most), else argparse's one-line error."""
    return _number(int, "integer", minimum=minimum, maximum=maximum)


def number(minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> Callable[[str], float]:
    """An argparse ``type=``: a finite number within the bounds (NaN and infinity refused)."""
    return _number(float, "number", minimum=minimum, maximum=maximum, above=above)


def _number(parse: type, kind: str, **bounds: Any) -> Callable[[str], Any]:
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an' if kind == 'integer' else 'a'} {kind}, got {text!r}") from None
        problem = number_problem(value, integer=parse is int, **bounds)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    return convert


SEED = integer(0, SEED_MAX)  # a seed: what every random generator vidgen seeds takes, with room for derived seeds
COUNT = integer(1)  # frames, steps, workers, batch sizes...
POSITIVE = number(above=0)  # frame rates, timeouts


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (repeatable) and trailing ``key=value`` overrides."""
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE",
        help="YAML config layered over the defaults (repeatable; later files win)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="config overrides applied last, e.g. sampling.steps=30 sampling.guidance=9",
    )


def add_sampling_args(parser: argparse.ArgumentParser, frames_flag: str = "--frames", what: str = "video") -> None:
    """The flags of the ``sampling`` section, in their own group (defaults: the model folder's, else built in)."""
    from vidgen.pipelines.schedulers import scheduler_names

    how = parser.add_argument_group("sampling (default: the model folder's sample_defaults.yaml)")
    how.add_argument(frames_flag, dest="frames", type=COUNT, metavar="N", help=f"frames per {what}")
    how.add_argument("--height", type=COUNT, metavar="H", help="height in pixels (a multiple of the VAE factor)")
    how.add_argument("--width", type=COUNT, metavar="W", help="width in pixels (a multiple of the VAE factor)")
    how.add_argument("--steps", type=COUNT, metavar="N", help="denoising steps")
    how.add_argument("--scheduler", metavar="NAME", help=f"{', '.join(scheduler_names())} (default: the model's own)")
    how.add_argument("--guidance", type=number(0), metavar="G", help="classifier-free guidance scale (1 = off)")
    how.add_argument("--guidance-interval", type=number(0), nargs=2, metavar=("LO", "HI"),
                     help="guide only at timesteps LO..HI (0-1000); other steps run the prompt alone, "
                          "one denoiser pass instead of two (0 1000: every step)")
    how.add_argument("--negative-prompt", metavar="TEXT", help="what to steer away from (default: empty prompt)")
    how.add_argument("--seed", type=SEED, metavar="S", help="random seed (default 0)")
    how.add_argument("--fps", type=POSITIVE, metavar="N", help="frames per second of written videos")
    how.add_argument("--upscale", type=COUNT, metavar="K", help="enlarge written videos K times (for small models)")
    how.add_argument("--cache", metavar="SPEC", help="reuse the denoiser's deep features across steps: none, deep:K "
                     "(recompute them every K steps) or adaptive:T (when the first block moved by more than T)")
    how.add_argument("--context-length", type=COUNT, metavar="N", help=f"frames the denoiser sees at once: a longer {what} "
                     "is denoised in overlapping windows of N frames (default: the model's)")
    how.add_argument("--context-overlap", type=integer(0), metavar="K", help="frames neighbouring context windows share "
                     "(default: a quarter of the window)")
    how.add_argument("--free-noise", action=argparse.BooleanOptionalAction, default=None,
                     help="reschedule the noise of frames past the first window so windows agree (FreeNoise; default on)")
    how.add_argument("--free-init-iters", type=integer(0), metavar="K", help="FreeInit: sample K more times from noise keeping "
                     "the last result's low frequencies (default 0)")


def add_weights_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` and the other ways to name weights: a Stable Diffusion base with a motion adapter, variants, LoRAs."""
    group = parser.add_argument_group("weights (docs/weights.md)")
    group.add_argument("--model", "-m", metavar="DIR", help="model folder (default: the shipped model)")
    group.add_argument("--base", metavar="SD", help="a Stable Diffusion folder or single-file checkpoint, made a video "
                       "model with --motion-adapter (instead of --model)")
    group.add_argument("--motion-adapter", metavar="MA", help="an AnimateDiff MotionAdapter folder or original "
                       "motion-module file, for --base")
    group.add_argument("--base-config", metavar="DIR", help="diffusers configs describing a single-file --base "
                       "(default: Stable Diffusion 1.5's, shipped)")
    group.add_argument("--variant", metavar="NAME", help="weight files to read, e.g. fp16 (default: the one a folder holds)")
    group.add_argument("--lora", action="append", metavar="PATH[:SCALE]", help="a LoRA file to apply (repeatable)")


def add_story_args(parser: argparse.ArgumentParser, title: str = "story") -> argparse._ArgumentGroup:
    """The flags of the ``story`` section every story-making command takes (``STORY_FLAGS``)."""
    story = parser.add_argument_group(title)
    story.add_argument("--overlap", type=integer(0), metavar="K", help="frames each clip shares with the previous one (default 2)")
    story.add_argument("--resample", type=integer(0), metavar="R", help="RePaint resampling rounds per step for continuing "
                       "clips (0 = none; each round costs one more denoiser call per step; ddim scheduler; default: the "
                       "model folder's when sampling with ddim, else 0)")
    story.add_argument("--pin", choices=("noised", "clean"), help="show the previous clip's frames noised to each step's "
                       "level (RePaint, any model) or clean (models trained with context frames); default from the model "
                       "folder, else noised")
    return story


def flag_overrides(args: argparse.Namespace, fields: dict[str, str]) -> dict[str, Any]:
    """Map the flags the user actually gave (not ``None``) onto config fields, nested at dots.

    Args:
        args: parsed arguments.
        fields: ``{argparse dest: config field}``, e.g. ``{"steps": "sampling.steps"}``.
    """
    out: dict[str, Any] = {}
    for dest, name in fields.items():
        value = getattr(args, dest, None)
        if value is not None and value != []:
            *parents, leaf = name.split(".")
            section = out
            for parent in parents:
                section = section.setdefault(parent, {})
            section[leaf] = value
    return out


def merged_overrides(flags: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Flags first, then ``key=value`` strings (which win); nested keys merged."""
    from omegaconf import OmegaConf

    from vidgen.config import parse_overrides

    merged = OmegaConf.merge(OmegaConf.create(flags), OmegaConf.create(parse_overrides(overrides)))
    return OmegaConf.to_container(merged)  # type: ignore[return-value]


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    """``--json``: the command's closing summary as one JSON object on stdout, for scripts."""
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of text")


def emit(args: argparse.Namespace, summary: dict[str, Any], lines: list[str] | str) -> None:
    """End a command: ``lines`` for people, or ``summary`` as one JSON object with ``--json`` (NaN as null)."""
    if getattr(args, "json", False):
        import json

        from vidgen.io.files import json_ready

        print(json.dumps(json_ready(summary), ensure_ascii=False), file=getattr(args, "json_out", None) or sys.stdout, flush=True)
        return
    for line in [lines] if isinstance(lines, str) else lines:
        print(line)
