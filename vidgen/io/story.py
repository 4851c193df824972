"""Writing a story folder: clips, the stitched video, subtitles, the interleaved document and a page.

``story.jsonl`` holds one interleaved item in the shape of the InternVid-ICL
items ``vidgen data interleave`` writes: ``[{"text": ...}, {"video": ...,
"start": ..., "end": ...}, ...]``, where ``video`` is the clip file and
``start``/``end`` (seconds) place it in the stitched ``story.mp4``, the way an
InternVid row places a clip in its source video.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from vidgen.errors import OutputError
from vidgen.io.files import output_error, read_json_object, remove_temporaries, temporary_owner

STORY_FILES = ("story.mp4", "story.srt", "story.vtt", "story.jsonl", "story.html", "settings.json")


def clip_name(index: int) -> str:
    return f"clip_{index:03d}.mp4"


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cue_times(story) -> list[tuple[str, float, float]]:
    """``(caption, start, end)`` in seconds of the stitched video, one per clip."""
    return [(c.segment.caption, c.start_frame / story.fps, (c.start_frame + c.num_new_frames) / story.fps) for c in story.clips]


def _one_line(caption: str) -> str:
    # A line break inside cue text would end the cue, and a blank line plus a timing line would start a new one.
    return " ".join(caption.split())


# What SubRip players render as markup: HTML-like tags (<i>, <font color=...>) and ASS override blocks ({\an8}).
_SRT_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|\{\\[^{}]*\}")


def vtt_cue_text(caption: str) -> str:
    """``caption`` as WebVTT cue text: one line, ``&``, ``<`` and ``>`` as character references.

    The references are WebVTT's own escapes, so players show the caption as written, no tag of it
    is markup, and ``-->`` cannot appear.
    """
    return html.escape(_one_line(caption), quote=False)


def srt_cue_text(caption: str) -> str:
    """``caption`` as SubRip text: one line, tags players would render dropped, other angle brackets as look-alikes.

    SubRip has no escapes, so markup cannot be kept as text: tags (``<i>``, ``<font ...>``, ``{\\an8}``)
    go, and a lone ``<`` or ``>`` becomes ``‹``/``›`` (which also keeps ``-->`` out of the text).
    """
    text = _SRT_MARKUP.sub(" ", _one_line(caption))
    return _one_line(text.replace("<", "\u2039").replace(">", "\u203a"))


def srt_text(story) -> str:
    """SubRip subtitles timing each caption to its clip."""
    blocks = [f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{srt_cue_text(text)}\n"
              for i, (text, a, b) in enumerate(cue_times(story), 1)]
    return "\n".join(blocks)


def vtt_text(story) -> str:
    """WebVTT subtitles (what the page's <track> loads)."""
    cues = [f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{vtt_cue_text(text)}\n" for text, a, b in cue_times(story)]
    return "WEBVTT\n\n" + "\n".join(cues)


def document(story) -> list[dict[str, Any]]:
    """The interleaved item: text, clip, text, clip..."""
    doc: list[dict[str, Any]] = []
    for i, (text, a, b) in enumerate(cue_times(story)):
        doc.append({"text": text})
        doc.append({"video": clip_name(i), "source": "story.mp4", "start": round(a, 3), "end": round(b, 3)})
    return doc


def page_html(story, title: str = "vidgen story") -> str:
    """A self-contained page: the stitched video with its captions as subtitles, then the interleaved sequence."""
    items = []
    for i, clip in enumerate(story.clips):
        items.append(f'<p class="caption">{html.escape(clip.segment.caption)}</p>')
        items.append(f'<video class="clip" src="{clip_name(i)}" controls loop muted playsinline></video>')
    body = "\n".join(items)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 720px; margin: 2em auto; color: #222; }}
video {{ image-rendering: pixelated; background: #000; }}
#story {{ width: 100%; }}
.clip {{ width: 256px; display: block; margin-bottom: 1.5em; }}
.caption {{ font-size: 1.1em; margin: 0.4em 0; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<video id="story" src="story.mp4" controls playsinline preload="metadata">
<track kind="subtitles" src="story.vtt" srclang="en" label="captions" default>
</video>
<h2>Interleaved</h2>
{body}
</body>
</html>
"""


def _story_names(num_clips: int) -> list[str]:
    """Every file a story of ``num_clips`` clips writes, in the order they are put in place (``settings.json`` last)."""
    return [clip_name(i) for i in range(num_clips)] + list(STORY_FILES)


def _left_by_a_killed_run(out: Path) -> bool:
    """Whether a story write was stopped in ``out``: its temporary folder is still there."""
    return any(temporary_owner(p.name) == "story" for p in out.glob(".story.*.tmp"))


def finished_story(out_dir: str | os.PathLike, num_clips: int, expected: Mapping[str, Any]) -> bool:
    """Whether ``out_dir`` holds a whole story of ``num_clips`` clips whose ``settings.json`` records ``expected``
    (each key given, e.g. the captions and seed): what the same command wrote before, so it has nothing to do.

    ``settings.json`` is put in place last, so with it every other file of the story is there.
    """
    out = Path(out_dir)
    if not all((out / name).is_file() for name in _story_names(num_clips)):
        return False
    recorded = read_json_object(out / "settings.json")
    return recorded is not None and all(recorded.get(key) == value for key, value in expected.items())


def check_story_output(out_dir: str | os.PathLike, num_clips: int, overwrite: bool = False) -> Path:
    """Fail before any generation when a story's files would clobber existing ones.

    The files of a story a killed run was putting in place (no ``settings.json`` yet, its
    temporary folder still there) are not in the way: the run that finishes it replaces them.

    Raises:
        OutputError: an output exists without ``overwrite``, or the folder cannot be written.
    """
    from vidgen.io.files import ensure_writable_dir

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"story output {str(out)!r} is a file, not a folder")
    if out.exists() and not overwrite:
        clash = [n for n in _story_names(num_clips) if (out / n).exists()]
        if clash and ((out / "settings.json").exists() or not _left_by_a_killed_run(out)):
            raise OutputError(f"{str(out / clash[0])!r} exists (pass --overwrite to replace it)")
    ensure_writable_dir(out)
    return out


def write_story(story, out_dir: str | os.PathLike, *, overwrite: bool = False, upscale: int = 1,
                upscale_mode: str = "nearest", settings: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write every story output into ``out_dir``; files appear only once all are complete.

    They are written into a temporary folder and moved into place one by one, ``settings.json``
    last; a run killed while moving them leaves that folder, which the next run clears.

    Returns:
        Name -> path of everything written.

    Raises:
        OutputError: an output exists without ``overwrite``, or the folder cannot be written (a full or
            read-only disk included: nothing of this story is left under a final name).
    """
    from vidgen.io.writer import encode_video

    out = check_story_output(out_dir, len(story.clips), overwrite)
    remove_temporaries(out, {"story"})
    names = _story_names(len(story.clips))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".story.", suffix=".tmp", dir=out))
    except OSError as exc:
        raise output_error(out, exc) from None
    current = out
    try:
        videos = [(clip_name(i), clip.frames) for i, clip in enumerate(story.clips)] + [("story.mp4", story.video)]
        for name, frames in videos:
            current = out / name
            encode_video(tmp / name, frames, fps=story.fps, upscale_factor=upscale, upscale_mode=upscale_mode, name=current)
        meta = {**story.meta, "fps": story.fps, "captions": [c.segment.caption for c in story.clips], **(settings or {})}
        texts = {"story.srt": srt_text(story), "story.vtt": vtt_text(story), "story.jsonl": json.dumps(document(story)) + "\n",
                 "story.html": page_html(story), "settings.json": json.dumps(meta, indent=1, default=str)}
        for name, text in texts.items():
            current = out / name
            (tmp / name).write_text(text, encoding="utf-8")
        written = {}
        for name in names:
            current = out / name
            os.replace(tmp / name, out / name)
            written[name] = out / name
        # A longer story written here before left more clips: they are not part of this one.
        for stale in out.glob("clip_*.mp4"):
            if re.fullmatch(r"clip_\d{3}\.mp4", stale.name) and stale.name not in written:
                stale.unlink()
        return written
    except OSError as exc:
        raise output_error(current, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
