"""Captions in varied English for toy-world scenes, and the parser that reads them back.

Twelve templates, several synonyms per attribute, size words for small and
large objects. Object colours and background colours are disjoint words, and
every motion phrase carries a direction or stillness keyword, so
:func:`parse_caption` recovers each stated attribute from any generated caption
and from plain prompts like ``"a red circle moves left"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Sequence

import numpy as np

from vidgen.toyworld.world import Background, Color, Motion, Scene, Shape, SizeClass, ToyAttrs

COLOR_WORDS: Mapping[Color, tuple[str, ...]] = {
    Color.RED: ("red", "scarlet", "crimson"),
    Color.YELLOW: ("yellow", "golden"),
    Color.GREEN: ("green", "emerald"),
    Color.CYAN: ("cyan", "turquoise", "aqua"),
    Color.BLUE: ("blue", "cobalt"),
    Color.MAGENTA: ("magenta", "purple"),
}
SHAPE_WORDS: Mapping[Shape, tuple[str, ...]] = {
    Shape.CIRCLE: ("circle", "ball", "disc", "dot"),
    Shape.SQUARE: ("square", "box", "block"),
    Shape.TRIANGLE: ("triangle", "triangular shape"),
}
BACKGROUND_WORDS: Mapping[Background, tuple[str, ...]] = {
    Background.WHITE: ("white",),
    Background.BLACK: ("black",),
    Background.GRAY: ("gray", "grey"),
}
SIZE_WORDS: Mapping[SizeClass, tuple[str, ...]] = {
    SizeClass.SMALL: ("small", "little", "tiny"),
    SizeClass.LARGE: ("large", "big"),
}
# (finite verb phrase, participle phrase) for "a ball rises" / "a ball rising".
MOTION_PHRASES: Mapping[Motion, tuple[tuple[str, str], ...]] = {
    Motion.LEFT: (
        ("moves left", "moving left"),
        ("slides to the left", "sliding to the left"),
        ("drifts left", "drifting left"),
        ("glides leftward", "gliding leftward"),
        ("travels to the left", "traveling to the left"),
        ("heads left", "heading left"),
    ),
    Motion.RIGHT: (
        ("moves right", "moving right"),
        ("slides to the right", "sliding to the right"),
        ("drifts right", "drifting right"),
        ("glides rightward", "gliding rightward"),
        ("travels to the right", "traveling to the right"),
        ("heads right", "heading right"),
    ),
    Motion.UP: (
        ("moves up", "moving up"),
        ("rises", "rising"),
        ("floats upward", "floating upward"),
        ("slides up", "sliding up"),
        ("climbs upward", "climbing upward"),
        ("drifts up", "drifting up"),
    ),
    Motion.DOWN: (
        ("moves down", "moving down"),
        ("falls", "falling"),
        ("sinks", "sinking"),
        ("slides down", "sliding down"),
        ("drops downward", "dropping downward"),
        ("drifts down", "drifting down"),
    ),
    Motion.STILL: (
        ("stays still", "staying still"),
        ("does not move", "not moving"),
        ("sits still", "sitting still"),
        ("remains motionless", "remaining motionless"),
        ("stays in place", "staying in place"),
        ("rests in place", "resting in place"),
    ),
}
# {obj} = "[size] colour shape"; {m} finite motion, {mp} participle; {bg} a background word.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {obj} {m}",
    "a {obj} {mp}",
    "video of a {obj} {mp}",
    "the {obj} {m}",
    "a {obj} {m} on a {bg} background",
    "{obj} {mp} on a {bg} background",
    "a {obj} {mp} against a {bg} backdrop",
    "on a {bg} background, a {obj} {m}",
    "the {obj} {m} over a plain {bg} background",
    "a {obj} on {bg}, {mp}",
    "animation of a {obj} {mp} on {bg}",
    "a {bg} scene where a {obj} {m}",
)
# Canonical words come first in each table and are drawn this often; the
# rest share the remainder, so the common word dominates as in real captions.
CANONICAL_WORD_P = 0.6
SIZE_MENTION_P = 0.6

# Words the parser understands beyond those the captions use, so that plain
# user prompts ("a red ball moving upwards", "a box falls") parse too.
_EXTRA_MOTION_WORDS: Mapping[Motion, tuple[str, ...]] = {
    Motion.LEFT: ("left", "leftward", "leftwards"),
    Motion.RIGHT: ("right", "rightward", "rightwards"),
    Motion.UP: ("up", "upward", "upwards", "rise", "rises", "rising", "climb", "climbs", "climbing", "ascend", "ascends", "ascending"),
    Motion.DOWN: ("down", "downward", "downwards", "fall", "falls", "falling", "sink", "sinks", "sinking", "drop", "drops",
                  "dropping", "descend", "descends", "descending"),
}
_STILL_WORDS = frozenset({"still", "motionless", "stationary", "static", "unmoving", "immobile"})
_STILL_BIGRAMS = frozenset({("in", "place"), ("not", "move"), ("not", "moving"), ("no", "motion"), ("stays", "put")})
_EXTRA_SIZE_WORDS: Mapping[SizeClass, tuple[str, ...]] = {SizeClass.SMALL: ("smaller",), SizeClass.LARGE: ("huge", "bigger", "larger")}


def _lookup(table: Mapping[Enum, Sequence[str]]) -> dict[str, Enum]:
    """First word of every phrase -> its value (phrases are told apart by their first word)."""
    out: dict[str, Enum] = {}
    for value, phrases in table.items():
        for phrase in phrases:
            out[phrase.split()[0]] = value
    return out


_COLOR_LOOKUP = _lookup(COLOR_WORDS)
_SHAPE_LOOKUP = {**_lookup(SHAPE_WORDS), "triangular": Shape.TRIANGLE, "circles": Shape.CIRCLE, "squares": Shape.SQUARE,
                 "triangles": Shape.TRIANGLE, "balls": Shape.CIRCLE, "disk": Shape.CIRCLE, "boxes": Shape.SQUARE}
_BACKGROUND_LOOKUP = _lookup(BACKGROUND_WORDS)
_SIZE_LOOKUP = {**_lookup(SIZE_WORDS), **_lookup(_EXTRA_SIZE_WORDS)}
_DIRECTION_LOOKUP = _lookup({m: words for m, words in _EXTRA_MOTION_WORDS.items()})
_WORD_RE = re.compile(r"[a-z]+")
_AN_RE = re.compile(r"\b([Aa])\s(?=[aeiou])")


@dataclass(frozen=True)
class Caption:
    """A caption and the attributes it states (``None`` where it says nothing)."""

    text: str
    mentioned: Mapping[str, str | None]


def _pick(rng: np.random.Generator, words: Sequence):
    """The first entry with probability CANONICAL_WORD_P, else one of the others uniformly."""
    if len(words) == 1 or rng.random() < CANONICAL_WORD_P:
        return words[0]
    return words[1 + int(rng.integers(len(words) - 1))]


def format_caption(
    template: str,
    color_word: str,
    shape_word: str,
    motion_phrase: tuple[str, str],
    background_word: str,
    size_word: str | None = None,
) -> str:
    """Fill one of :data:`CAPTION_TEMPLATES` with chosen words (exposed so tests can enumerate them).

    Args:
        template: a template with ``{obj}``, ``{m}`` or ``{mp}`` and optionally ``{bg}``.
        color_word, shape_word: words from :data:`COLOR_WORDS` / :data:`SHAPE_WORDS`.
        motion_phrase: a ``(finite, participle)`` pair from :data:`MOTION_PHRASES`.
        background_word: a word from :data:`BACKGROUND_WORDS` (unused if the template has no ``{bg}``).
        size_word: an optional word from :data:`SIZE_WORDS`.

    Returns:
        The caption text.
    """
    obj = " ".join(w for w in (size_word, color_word, shape_word) if w)
    text = template.format(obj=obj, m=motion_phrase[0], mp=motion_phrase[1], bg=background_word)
    return _AN_RE.sub(r"\1n ", text)  # "a aqua box" -> "an aqua box"


def canonical_caption(attrs: ToyAttrs, *, background: bool = True) -> str:
    """The plain prompt for ``attrs`` with the first word of every table, e.g. for evaluation.

    ``"a red circle moves left on a white background"`` (without the background
    clause when ``background`` is false).
    """
    template = "a {obj} {m} on a {bg} background" if background else "a {obj} {m}"  # two of CAPTION_TEMPLATES
    return format_caption(template, COLOR_WORDS[attrs.color][0], SHAPE_WORDS[attrs.shape][0],
                          MOTION_PHRASES[attrs.motion][0], BACKGROUND_WORDS[attrs.background][0])


def make_caption(scene: Scene, rng: np.random.Generator) -> Caption:
    """A random English caption for ``scene`` (template and synonyms drawn from ``rng``).

    Colour, shape and motion are always stated; the background when the
    template has a place for it (8 of 12 templates); the size for small and
    large objects, 60% of the time.
    """
    attrs = scene.attrs
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    size_class = scene.size_class
    size_word = None
    if size_class in SIZE_WORDS and rng.random() < SIZE_MENTION_P:
        size_word = _pick(rng, SIZE_WORDS[size_class])
    text = format_caption(
        template,
        _pick(rng, COLOR_WORDS[attrs.color]),
        _pick(rng, SHAPE_WORDS[attrs.shape]),
        MOTION_PHRASES[attrs.motion][int(rng.integers(len(MOTION_PHRASES[attrs.motion])))],
        _pick(rng, BACKGROUND_WORDS[attrs.background]),
        size_word,
    )
    mentioned = attrs.as_dict()
    if "{bg}" not in template:
        mentioned["background"] = None
    mentioned["size"] = size_class.value if size_word else None
    return Caption(text, mentioned)


def vocabulary_texts() -> list[str]:
    """Every word the captions and the caption parser use (templates, attribute tables, extra
    prompt words, "an"): the texts a toy-world model's vocabulary is trimmed to
    (see :mod:`vidgen.models.vocab_trim`)."""
    tables = (COLOR_WORDS, SHAPE_WORDS, BACKGROUND_WORDS, SIZE_WORDS, _EXTRA_SIZE_WORDS, _EXTRA_MOTION_WORDS)
    texts = [phrase for table in tables for phrases in table.values() for phrase in phrases]
    texts += [phrase for pairs in MOTION_PHRASES.values() for pair in pairs for phrase in pair]
    texts += [re.sub(r"\{\w+\}", " ", template) for template in CAPTION_TEMPLATES]
    lookups = (_COLOR_LOOKUP, _SHAPE_LOOKUP, _BACKGROUND_LOOKUP, _SIZE_LOOKUP, _DIRECTION_LOOKUP)
    texts += [word for lookup in lookups for word in lookup] + sorted(_STILL_WORDS) + ["an"]
    texts += [" ".join(pair) for pair in sorted(_STILL_BIGRAMS)]
    return texts


def swap_attribute(text: str, attribute: str, value: str) -> str:
    """The same caption stating another motion or shape: the minimal pair a text encoder must tell apart.

    A motion phrase is replaced by the phrase in the same slot of the new
    motion's table and form (``"slides to the left"`` -> ``"slides to the
    right"``, ``"rising"`` -> ``"falling"``); a shape word by the new shape's
    first word. Everything else is kept, so the two captions differ in that one
    attribute only.

    Args:
        text: a caption from :func:`make_caption` (or a prompt using their phrases).
        attribute: ``"motion"`` or ``"shape"``.
        value: the new motion / shape name, e.g. ``"up"`` or ``"square"``.

    Returns:
        The edited caption.

    Raises:
        ValueError: an unknown attribute or value, or a caption that states none of that attribute's phrases.
    """
    if attribute == "motion":
        new = Motion(value)
        for motion, phrases in MOTION_PHRASES.items():
            for slot, pair in enumerate(phrases):
                for form, phrase in enumerate(pair):
                    pattern = re.compile(rf"\b{re.escape(phrase)}\b")
                    if pattern.search(text):
                        return pattern.sub(MOTION_PHRASES[new][slot][form], text, count=1)
    elif attribute == "shape":
        new_word = SHAPE_WORDS[Shape(value)][0]
        words = sorted((w for ws in SHAPE_WORDS.values() for w in ws), key=len, reverse=True)
        for word in words:  # "triangular shape" before shorter words
            pattern = re.compile(rf"\b{re.escape(word)}\b")
            if pattern.search(text):
                return pattern.sub(new_word, text, count=1)
    else:
        raise ValueError(f"can only swap 'motion' or 'shape', not {attribute!r}")
    raise ValueError(f"caption states no {attribute} phrase to swap: {text!r}")


def parse_caption(text: str) -> dict[str, str | None]:
    """Read the toy-world attributes a caption or user prompt states.

    Understands every caption :func:`make_caption` can produce and simple
    prompts such as ``"a red circle moves left"`` or ``"purple ball falling on
    black"``. Object colours and background colours are disjoint words, so
    ``"white"`` / ``"black"`` / ``"gray"`` always name the background.

    Args:
        text: the caption.

    Returns:
        ``{"color", "shape", "motion", "background", "size"}`` -> canonical
        name, or ``None`` for an attribute the text does not state.
    """
    words = _WORD_RE.findall(str(text).lower())

    def first(table: Mapping[str, Enum]) -> str | None:
        for word in words:
            if word in table:
                return table[word].value  # type: ignore[return-value]
        return None

    bigrams = set(zip(words, words[1:]))
    if _STILL_WORDS.intersection(words) or _STILL_BIGRAMS & bigrams:
        motion: str | None = Motion.STILL.value
    else:
        motion = first(_DIRECTION_LOOKUP)
    return {
        "color": first(_COLOR_LOOKUP),
        "shape": first(_SHAPE_LOOKUP),
        "motion": motion,
        "background": first(_BACKGROUND_LOOKUP),
        "size": first(_SIZE_LOOKUP),
    }


DESCRIBES = ("the toy world: one red, yellow, green, cyan, blue or magenta circle, square or triangle, small or "
             "large, moving left, right, up or down or staying still, on a white, black or gray background")


def model_vocabulary():
    """The words a toy-world model knows (every word of :func:`vocabulary_texts`), shipped with the model as
    ``vocabulary.json`` so a prompt outside the world is named as such."""
    from vidgen.pipelines.prompts import ModelVocabulary

    return ModelVocabulary.from_texts(vocabulary_texts(), DESCRIBES)
