"""The toy world: one coloured shape moving over a plain background, captioned in English.

No pretrained video weights can be downloaded, so vidgen trains its default
model on this procedurally generated world. Every clip's attributes (colour,
shape, motion, background) are known, so captions can be checked and a
deterministic judge can read a generated video back. This package holds all of
it; vidgen's general packages never import it (an import contract in CI says so).

The world (:mod:`.world`):

- colours: six hues 60 degrees apart (red, yellow, green, cyan, blue,
  magenta), saturated and bright, jittered a little per clip. Mixing any of
  them with an achromatic background keeps the hue, so blur and anti-aliasing
  never move one colour towards another.
- shapes: circle, square, triangle (apex up), all in the same square bounding
  box, so they differ in how much of it they fill (pi/4, 1, 1/2) and in where
  their mass sits (the triangle's sits low).
- motions: left, right, up, down, still; a moving object travels 25-50% of
  the frame over a clip and stays fully in frame.
- backgrounds: white, black, gray (achromatic, unlike every object colour).

Modules: :mod:`.world` (vocabulary, scenes, held-out pairs), :mod:`.captions`
(caption templates and the parser), :mod:`.render` (anti-aliased rendering,
in-memory samples and stories), :mod:`.dataset` (InternVid-shaped files,
``vidgen data toyworld``), :mod:`.judge` (reads a video back), :mod:`.suites`
(``vidgen eval``), :mod:`.streams` (data sources for ``vidgen train vae|viclip``
and the judge as a validation scorer).
"""

from vidgen.toyworld.captions import (
    BACKGROUND_WORDS,
    CAPTION_TEMPLATES,
    COLOR_WORDS,
    MOTION_PHRASES,
    SHAPE_WORDS,
    SIZE_WORDS,
    Caption,
    canonical_caption,
    format_caption,
    make_caption,
    parse_caption,
    swap_attribute,
)
from vidgen.toyworld.dataset import (
    ROWS_FILE,
    GenerateSummary,
    Segment,
    SourceVideo,
    ToyWorldConfig,
    clip_filename,
    format_timestamp,
    frame_timestamp,
    generate,
    plan_videos,
    video_rows,
)
from vidgen.toyworld.render import ToySample, frame_size, iter_samples, make_sample, make_story, render_clip
from vidgen.toyworld.world import (
    ATTRIBUTES,
    BACKGROUND_RGB,
    COLOR_HUES,
    HELD_OUT,
    LARGE_ABOVE,
    MOTION_VECTORS,
    SIZE_RANGE,
    SMALL_BELOW,
    TRAVEL_RANGE,
    Background,
    Color,
    HeldOut,
    Motion,
    Quality,
    Scene,
    Shape,
    SizeClass,
    ToyAttrs,
    all_attrs,
    held_out_combos,
    is_held_out,
    sample_scene,
    sample_story,
)

__all__ = [
    "ATTRIBUTES",
    "BACKGROUND_RGB",
    "BACKGROUND_WORDS",
    "CAPTION_TEMPLATES",
    "COLOR_HUES",
    "COLOR_WORDS",
    "HELD_OUT",
    "LARGE_ABOVE",
    "MOTION_PHRASES",
    "MOTION_VECTORS",
    "ROWS_FILE",
    "SHAPE_WORDS",
    "SIZE_RANGE",
    "SIZE_WORDS",
    "SMALL_BELOW",
    "TRAVEL_RANGE",
    "Background",
    "Caption",
    "Color",
    "GenerateSummary",
    "HeldOut",
    "Motion",
    "Quality",
    "Scene",
    "Segment",
    "Shape",
    "SizeClass",
    "SourceVideo",
    "ToyAttrs",
    "ToySample",
    "ToyWorldConfig",
    "all_attrs",
    "canonical_caption",
    "clip_filename",
    "format_caption",
    "format_timestamp",
    "frame_size",
    "frame_timestamp",
    "generate",
    "held_out_combos",
    "is_held_out",
    "iter_samples",
    "make_caption",
    "make_sample",
    "make_story",
    "parse_caption",
    "swap_attribute",
    "plan_videos",
    "render_clip",
    "sample_scene",
    "sample_story",
    "video_rows",
]
