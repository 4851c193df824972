"""The toy world's vocabulary, its held-out attribute pairs, and random scenes and stories.

A :class:`Scene` holds everything needed to render one clip (attributes,
object size, start, travel, colour, quality); rendering is a pure function of
it (:mod:`vidgen.toyworld.render`), so a scene drawn from a seeded
generator always gives the same pixels.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Sequence

import numpy as np

from vidgen.errors import InputError


class Color(str, Enum):
    """Object colours (canonical names)."""

    RED = "red"
    YELLOW = "yellow"
    GREEN = "green"
    CYAN = "cyan"
    BLUE = "blue"
    MAGENTA = "magenta"


class Shape(str, Enum):
    """Object shapes (canonical names)."""

    CIRCLE = "circle"
    SQUARE = "square"
    TRIANGLE = "triangle"


class Motion(str, Enum):
    """Directions of motion in image coordinates (up = towards the top row)."""

    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"
    STILL = "still"


class Background(str, Enum):
    """Plain backgrounds."""

    WHITE = "white"
    BLACK = "black"
    GRAY = "gray"


class SizeClass(str, Enum):
    """How big the object is; captions mention only the extremes."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class Quality(str, Enum):
    """Clean clips, and the degraded ones that give score filtering something to remove."""

    CLEAN = "clean"
    OCCLUDED = "occluded"  # a static panel hides most of the object
    FADED = "faded"  # the object has a quarter of its normal contrast


ATTRIBUTES = ("color", "shape", "motion", "background")
"""The judged attributes, in the order used everywhere (rows, parser, judge)."""

COLOR_HUES: Mapping[Color, float] = {
    Color.RED: 0.0,
    Color.YELLOW: 60.0,
    Color.GREEN: 120.0,
    Color.CYAN: 180.0,
    Color.BLUE: 240.0,
    Color.MAGENTA: 300.0,
}
"""Hue in degrees of each colour; 60 degrees apart, the widest spacing six hues allow."""

BACKGROUND_RGB: Mapping[Background, tuple[int, int, int]] = {
    Background.WHITE: (255, 255, 255),
    Background.BLACK: (0, 0, 0),
    Background.GRAY: (128, 128, 128),
}

MOTION_VECTORS: Mapping[Motion, tuple[int, int]] = {
    Motion.LEFT: (-1, 0),
    Motion.RIGHT: (1, 0),
    Motion.UP: (0, -1),
    Motion.DOWN: (0, 1),
    Motion.STILL: (0, 0),
}
"""Unit displacement ``(dx, dy)`` in image coordinates (y grows downwards)."""

# Object side (circle diameter, square side, triangle base = height) as a
# fraction of the frame's shorter side. 0.25 keeps an object 8 pixels wide at
# 32x32, enough for its shape to survive a VAE and an MP4 encoder.
SIZE_RANGE = (0.25, 0.40)
SMALL_BELOW = 0.29
LARGE_ABOVE = 0.36
# Distance the centre travels over one clip, as a fraction of the frame along
# the motion axis: ~2.5x the judge's stillness threshold at the low end.
TRAVEL_RANGE = (0.25, 0.50)
# Gap kept between the object and the frame edge, so it is always fully visible.
EDGE_MARGIN = 0.03
# Per-clip colour jitter: hue +-6 degrees (10% of the spacing), saturation and value 0.85-1.
HUE_JITTER = 6.0
SAT_VALUE_RANGE = (0.85, 1.0)
FADED_CONTRAST = 0.25

SPLITS = ("train", "held_out", "all")
LAYOUTS = ("videos", "clips")


def _coerce(enum: type[Enum], value, what: str):
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
        raise InputError(f"unknown toy-world {what} {value!r}; choose one of {names}") from None


@dataclass(frozen=True)
class ToyAttrs:
    """The four judged attributes of a clip. Strings are accepted and turned into the enums.

    Raises:
        InputError: a name outside the world's vocabulary.
    """

    color: Color
    shape: Shape
    motion: Motion
    background: Background

    def __post_init__(self) -> None:
        for name, enum in (("color", Color), ("shape", Shape), ("motion", Motion), ("background", Background)):
            object.__setattr__(self, name, _coerce(enum, getattr(self, name), name))

    def as_dict(self) -> dict[str, str]:
        """``{"color": "red", "shape": ..., "motion": ..., "background": ...}``."""
        return {name: getattr(self, name).value for name in ATTRIBUTES}


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one clip; rendering is a pure function of it.

    Positions are fractions of the frame's width/height, lengths fractions of
    its shorter side (``travel``: of the frame along the motion axis), so one
    scene renders at any resolution.

    Attributes:
        attrs: the judged attributes.
        size: object side (circle diameter, square side, triangle base and height).
        x0, y0: object centre at the first frame.
        travel: how far the centre moves over the clip (0 when still). Frame
            ``k`` of ``n`` sits at ``start + direction * travel * k / n``, so the
            next clip of a continuous video starts exactly one step further on.
        rgb: the object colour.
        quality: clean, or how the clip is degraded.
        occluder: for occluded clips, the panel ``(x0, y0, x1, y1)`` in frame fractions.
    """

    attrs: ToyAttrs
    size: float
    x0: float
    y0: float
    travel: float
    rgb: tuple[int, int, int]
    quality: Quality = Quality.CLEAN
    occluder: tuple[float, float, float, float] | None = None

    @property
    def size_class(self) -> SizeClass:
        """``small`` / ``medium`` / ``large`` from :attr:`size`."""
        if self.size < SMALL_BELOW:
            return SizeClass.SMALL
        if self.size > LARGE_ABOVE:
            return SizeClass.LARGE
        return SizeClass.MEDIUM

    def end(self) -> tuple[float, float]:
        """Centre one step after the last frame: where a following clip starts."""
        dx, dy = MOTION_VECTORS[self.attrs.motion]
        return self.x0 + dx * self.travel, self.y0 + dy * self.travel


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must lie in [0, 1], got {value}")


# --------------------------------------------------------------------------- held-out combinations


@dataclass(frozen=True)
class HeldOut:
    """Attribute pairs never shown in training, for the generalisation test.

    Every colour, shape and motion still appears in training; only these
    pairings are new at test time.
    """

    color_shape: frozenset[tuple[Color, Shape]]
    shape_motion: frozenset[tuple[Shape, Motion]]

    def contains(self, attrs: ToyAttrs) -> bool:
        """Whether ``attrs`` uses a held-out pairing."""
        return (attrs.color, attrs.shape) in self.color_shape or (attrs.shape, attrs.motion) in self.shape_motion


HELD_OUT = HeldOut(
    # One pair per shape and per colour, so no attribute loses more than one partner.
    color_shape=frozenset({(Color.RED, Shape.TRIANGLE), (Color.GREEN, Shape.CIRCLE), (Color.BLUE, Shape.SQUARE)}),
    shape_motion=frozenset({(Shape.CIRCLE, Motion.DOWN), (Shape.SQUARE, Motion.LEFT)}),
)


def held_out_combos() -> HeldOut:
    """The default held-out pairs: (red, triangle), (green, circle), (blue, square) and
    (circle, down), (square, left)."""
    return HELD_OUT


def is_held_out(attrs: ToyAttrs, held_out: HeldOut = HELD_OUT) -> bool:
    """Whether ``attrs`` belongs to the held-out split."""
    return held_out.contains(attrs)


def all_attrs(split: str = "all", held_out: HeldOut = HELD_OUT) -> list[ToyAttrs]:
    """Every attribute combination of ``split`` (``train``, ``held_out`` or ``all``), in a fixed order.

    Raises:
        InputError: an unknown split.
    """
    _check_choice("split", split, SPLITS)
    out = []
    for c in Color:
        for s in Shape:
            for m in Motion:
                for b in Background:
                    attrs = ToyAttrs(c, s, m, b)
                    if _in_split(attrs, split, held_out):
                        out.append(attrs)
    return out


def _in_split(attrs: ToyAttrs, split: str, held_out: HeldOut) -> bool:
    if split == "all":
        return True
    return held_out.contains(attrs) == (split == "held_out")


# --------------------------------------------------------------------------- sampling scenes

# Seeds are ``[seed, STREAM_*, index]``: each use (in-memory samples, source videos, stories,
# video IDs) draws from its own stream, so none shares random draws with another.
STREAM_SAMPLE, STREAM_VIDEO, STREAM_STORY, STREAM_IDS = 0, 1, 2, 3


def _jittered_rgb(color: Color, rng: np.random.Generator) -> tuple[int, int, int]:
    hue = (COLOR_HUES[color] + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 360.0
    sat, val = rng.uniform(*SAT_VALUE_RANGE, size=2)
    r, g, b = colorsys.hsv_to_rgb(hue / 360.0, sat, val)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _sample_attrs(rng: np.random.Generator, split: str, held_out: HeldOut) -> ToyAttrs:
    # Rejection keeps every combination of the split equally likely.
    while True:
        attrs = ToyAttrs(
            list(Color)[int(rng.integers(len(Color)))],
            list(Shape)[int(rng.integers(len(Shape)))],
            list(Motion)[int(rng.integers(len(Motion)))],
            list(Background)[int(rng.integers(len(Background)))],
        )
        if _in_split(attrs, split, held_out):
            return attrs


def _centre_limits(size: float) -> tuple[float, float]:
    """Range of centre positions (frame fractions) that keep the object fully in frame."""
    return size / 2 + EDGE_MARGIN, 1.0 - size / 2 - EDGE_MARGIN


def _occluder(x0: float, y0: float, x1: float, y1: float, size: float) -> tuple[float, float, float, float]:
    # A panel over the whole path, inset by 15% of the object, hides most of it in every frame.
    inset = 0.15 * size
    return x0 - size / 2 + inset, y0 - size / 2 + inset, x1 + size / 2 - inset, y1 + size / 2 - inset


def sample_scene(
    rng: np.random.Generator,
    *,
    attrs: ToyAttrs | None = None,
    split: str = "train",
    degraded_fraction: float = 0.0,
    held_out: HeldOut = HELD_OUT,
) -> Scene:
    """Draw a random scene: attributes (unless given), size, start, travel, colour jitter, quality.

    Args:
        rng: the random generator (the scene is a deterministic function of its state).
        attrs: fixed attributes; drawn uniformly from ``split`` when ``None``.
        split: ``train`` (no held-out pair), ``held_out`` (only held-out pairs) or ``all``.
        degraded_fraction: probability that the clip is occluded or faded.
        held_out: the held-out pairs defining the splits.

    Returns:
        The scene; the object stays fully in frame over the whole clip.

    Raises:
        InputError: an unknown split or a fraction outside [0, 1].
    """
    _check_choice("split", split, SPLITS)
    _check_fraction("degraded_fraction", degraded_fraction)
    if attrs is None:
        attrs = _sample_attrs(rng, split, held_out)
    size = float(rng.uniform(*SIZE_RANGE))
    lo, hi = _centre_limits(size)
    dx, dy = MOTION_VECTORS[attrs.motion]
    travel = 0.0 if attrs.motion is Motion.STILL else float(rng.uniform(TRAVEL_RANGE[0], min(TRAVEL_RANGE[1], hi - lo)))
    # Along the motion axis the start leaves room for the whole travel.
    x0 = float(rng.uniform(lo + travel * (dx < 0), hi - travel * (dx > 0)))
    y0 = float(rng.uniform(lo + travel * (dy < 0), hi - travel * (dy > 0)))
    rgb = _jittered_rgb(attrs.color, rng)
    quality, occluder = Quality.CLEAN, None
    if degraded_fraction and rng.random() < degraded_fraction:
        quality = Quality.OCCLUDED if rng.random() < 0.5 else Quality.FADED
        if quality is Quality.OCCLUDED:
            x1, y1 = x0 + dx * travel, y0 + dy * travel
            occluder = _occluder(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), size)
    return Scene(attrs, size, x0, y0, travel, rgb, quality, occluder)


def _next_scene(previous: Scene, rng: np.random.Generator, split: str, held_out: HeldOut) -> Scene:
    """The same object continuing from where ``previous`` left it, with a different motion."""
    x, y = previous.end()
    lo, hi = _centre_limits(previous.size)
    options = []
    for motion in Motion:
        attrs = dataclasses.replace(previous.attrs, motion=motion)
        if motion is previous.attrs.motion or not _in_split(attrs, split, held_out):
            continue
        dx, dy = MOTION_VECTORS[motion]
        room = {(-1, 0): x - lo, (1, 0): hi - x, (0, -1): y - lo, (0, 1): hi - y, (0, 0): math.inf}[(dx, dy)]
        if room >= TRAVEL_RANGE[0]:
            options.append((attrs, room))
    attrs, room = options[int(rng.integers(len(options)))]
    travel = 0.0 if attrs.motion is Motion.STILL else float(rng.uniform(TRAVEL_RANGE[0], min(TRAVEL_RANGE[1], room)))
    return dataclasses.replace(previous, attrs=attrs, x0=x, y0=y, travel=travel)


def sample_story(
    rng: np.random.Generator,
    num_clips: int,
    *,
    split: str = "train",
    held_out: HeldOut = HELD_OUT,
) -> list[Scene]:
    """Scenes of one clean object whose motion changes at every clip while its position continues.

    Args:
        rng: the random generator.
        num_clips: number of consecutive clips.
        split: every clip's attributes belong to this split.
        held_out: the held-out pairs defining the splits.

    Returns:
        ``num_clips`` scenes; clip ``i + 1`` starts where clip ``i`` ends (:meth:`Scene.end`).

    Raises:
        InputError: ``num_clips`` < 1 or an unknown split.
    """
    _check_choice("split", split, SPLITS)
    if num_clips < 1:
        raise InputError(f"num_clips must be at least 1, got {num_clips}")
    if split == "held_out":
        # A held-out (colour, shape) pair makes every clip held out, whatever its motion.
        color, shape = sorted(held_out.color_shape)[int(rng.integers(len(held_out.color_shape)))]
        first_attrs = ToyAttrs(color, shape, list(Motion)[int(rng.integers(len(Motion)))], list(Background)[int(rng.integers(len(Background)))])
    else:
        first_attrs = _sample_attrs(rng, split, held_out)
    scenes = [sample_scene(rng, attrs=first_attrs, split=split, held_out=held_out)]
    while len(scenes) < num_clips:
        scenes.append(_next_scene(scenes[-1], rng, split, held_out))
    return scenes
