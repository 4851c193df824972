"""The toy world: spec, rendering, captions and parser, held-out pairs, the InternVid-shaped writer."""

from __future__ import annotations

import colorsys
import dataclasses
import itertools
import json
import math
import re

import numpy as np
import pytest

from vidgen import toyworld as tw
from vidgen.errors import InputError, OutputError

# --------------------------------------------------------------------------- spec


def test_spec_colours_are_well_separated_hues_and_backgrounds_are_achromatic():
    hues = sorted(tw.COLOR_HUES.values())
    assert len(hues) >= 6
    gaps = [(b - a) for a, b in zip(hues, hues[1:] + [hues[0] + 360])]
    assert min(gaps) >= 60 - 1e-9
    assert len(tw.Shape) >= 3 and {m.value for m in tw.Motion} == {"left", "right", "up", "down", "still"}
    assert len(tw.Background) >= 2
    for rgb in tw.BACKGROUND_RGB.values():
        assert len(set(rgb)) == 1  # achromatic: no hue to confuse with an object
    # Every jittered object colour stays far from every background in RGB.
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = tw.sample_scene(rng, split="all")
        for bg in tw.BACKGROUND_RGB.values():
            assert np.linalg.norm(np.subtract(scene.rgb, bg)) > 150
        hue = colorsys.rgb_to_hsv(*(np.array(scene.rgb) / 255))[0] * 360
        target = tw.COLOR_HUES[scene.attrs.color]
        assert abs((hue - target + 180) % 360 - 180) <= 7


def test_toy_attrs_accept_names_and_reject_unknown_ones():
    attrs = tw.ToyAttrs("Red", "circle", "left", "white")
    assert attrs.color is tw.Color.RED and attrs.as_dict() == {"color": "red", "shape": "circle", "motion": "left", "background": "white"}
    with pytest.raises(InputError, match="'pink'"):
        tw.ToyAttrs("pink", "circle", "left", "white")
    with pytest.raises(InputError, match="spiral"):
        tw.ToyAttrs("red", "circle", "spiral", "white")


# --------------------------------------------------------------------------- rendering


def test_render_is_deterministic_per_seed_and_differs_across_seeds():
    a = tw.make_sample(5, seed=3, size=32)
    b = tw.make_sample(5, seed=3, size=32)
    c = tw.make_sample(5, seed=4, size=32)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.caption == b.caption and a.scene == b.scene
    assert not np.array_equal(a.frames, c.frames)
    # The scene alone determines the pixels.
    np.testing.assert_array_equal(tw.render_clip(a.scene, 16, 32), a.frames)


def _opacity(frames: np.ndarray, scene: tw.Scene) -> np.ndarray:
    """Per-pixel coverage recovered from the colours: (pixel - bg) / (object - bg)."""
    bg = np.array(tw.BACKGROUND_RGB[scene.attrs.background], np.float64)
    u = np.array(scene.rgb, np.float64) - bg
    return (frames.astype(np.float64) - bg) @ u / (u @ u)


@pytest.mark.parametrize("size", [32, 48, (64, 40)])
def test_objects_stay_in_frame_with_their_analytic_area_and_path(size):
    width, height = tw.frame_size(size)
    rng = np.random.default_rng(1)
    for _ in range(60):
        scene = tw.sample_scene(rng, split="all")
        frames = tw.render_clip(scene, 12, size)
        bg = np.array(tw.BACKGROUND_RGB[scene.attrs.background], np.uint8)
        # Fully in frame: the outermost ring of pixels is pure background in every frame.
        for edge in (frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]):
            assert (edge == bg).all()
        a = _opacity(frames, scene)
        side = scene.size * min(width, height)
        area, perimeter = {
            tw.Shape.CIRCLE: (math.pi / 4 * side**2, math.pi * side),
            tw.Shape.SQUARE: (side**2, 4 * side),
            tw.Shape.TRIANGLE: (side**2 / 2, (1 + math.sqrt(5)) * side),
        }[scene.attrs.shape]
        # 4x4 supersampling places each edge to within half a sub-pixel (1/8 pixel).
        np.testing.assert_allclose(a.sum(axis=(1, 2)), area, atol=perimeter / 8 + 0.5)
        # The centroid follows start + direction * travel * k / n (the triangle's sits side/6 below its box centre).
        ys, xs = np.mgrid[:height, :width] + 0.5
        cx = (a * xs).sum(axis=(1, 2)) / a.sum(axis=(1, 2))
        cy = (a * ys).sum(axis=(1, 2)) / a.sum(axis=(1, 2))
        dx, dy = tw.MOTION_VECTORS[scene.attrs.motion]
        k = np.arange(12) / 12
        drop = side / 6 if scene.attrs.shape is tw.Shape.TRIANGLE else 0.0
        np.testing.assert_allclose(cx, (scene.x0 + dx * scene.travel * k) * width, atol=0.15)
        np.testing.assert_allclose(cy, (scene.y0 + dy * scene.travel * k) * height + drop, atol=0.15)


def test_anti_aliasing_gives_fractional_edges():
    scene = tw.Scene(tw.ToyAttrs("red", "circle", "still", "black"), 0.3, 0.513, 0.471, 0.0, (255, 0, 0))
    frame = tw.render_clip(scene, 1, 40)[0]
    reds = np.unique(frame[..., 0])
    assert len(reds) > 8  # many partial-coverage levels, not a hard 0/255 edge
    assert set(np.unique(frame[..., 1])) == {0}


def test_degraded_clips_hide_or_fade_the_object():
    attrs = tw.ToyAttrs("blue", "square", "right", "white")
    rng = np.random.default_rng(0)
    seen = set()
    while len(seen) < 2:
        scene = tw.sample_scene(rng, attrs=attrs, degraded_fraction=1.0)
        seen.add(scene.quality)
        clean = tw.render_clip(dataclasses.replace(scene, quality=tw.Quality.CLEAN, occluder=None), 8, 32)
        frames = tw.render_clip(scene, 8, 32)
        visible = (np.abs(frames.astype(int) - clean).sum(-1) == 0) & (np.abs(clean.astype(int) - 255).sum(-1) > 0)
        if scene.quality is tw.Quality.OCCLUDED:
            obj = (np.abs(clean.astype(int) - 255).sum(-1) > 0).sum()
            assert visible.sum() < 0.5 * obj  # most of the object is hidden
        else:
            assert scene.quality is tw.Quality.FADED
            assert np.abs(frames.astype(int) - 255).max() < 0.3 * np.abs(clean.astype(int) - 255).max()


def test_bad_render_arguments_raise_input_errors():
    scene = tw.make_sample(0, size=32).scene
    with pytest.raises(InputError, match="num_frames"):
        tw.render_clip(scene, 0, 32)
    with pytest.raises(InputError, match="8x8"):
        tw.render_clip(scene, 4, 8)
    with pytest.raises(InputError, match="frame size"):
        tw.render_clip(scene, 4, "big")
    with pytest.raises(InputError, match="split"):
        tw.make_sample(0, split="test")
    with pytest.raises(InputError, match="index"):
        tw.make_sample(-1)


# --------------------------------------------------------------------------- captions


def _expected(color, shape, motion, bg, size_class, template):
    return {
        "color": color.value,
        "shape": shape.value,
        "motion": motion.value,
        "background": bg.value if "{bg}" in template else None,
        "size": size_class.value if size_class else None,
    }


def test_parser_recovers_every_template_and_every_synonym():
    """Every template with every word of every table (cycled together), plus every attribute combination."""
    colors = [(c, w) for c, ws in tw.COLOR_WORDS.items() for w in ws]
    shapes = [(s, w) for s, ws in tw.SHAPE_WORDS.items() for w in ws]
    motions = [(m, p) for m, ps in tw.MOTION_PHRASES.items() for p in ps]
    bgs = [(b, w) for b, ws in tw.BACKGROUND_WORDS.items() for w in ws]
    sizes = [(None, None)] + [(s, w) for s, ws in tw.SIZE_WORDS.items() for w in ws]
    longest = max(len(colors), len(shapes), len(motions), len(bgs), len(sizes))
    checked = 0
    for template in tw.CAPTION_TEMPLATES:
        for i in range(longest):
            (c, cw), (s, sw), (m, mp), (b, bw), (z, zw) = (t[i % len(t)] for t in (colors, shapes, motions, bgs, sizes))
            text = tw.format_caption(template, cw, sw, mp, bw, zw)
            assert tw.parse_caption(text) == _expected(c, s, m, b, z, template), text
            checked += 1
        for c, s, m, b in itertools.product(tw.Color, tw.Shape, tw.Motion, tw.Background):
            text = tw.format_caption(template, tw.COLOR_WORDS[c][0], tw.SHAPE_WORDS[s][-1], tw.MOTION_PHRASES[m][-1], tw.BACKGROUND_WORDS[b][-1])
            assert tw.parse_caption(text) == _expected(c, s, m, b, None, template), text
            checked += 1
    assert checked == len(tw.CAPTION_TEMPLATES) * (longest + 270)


def test_canonical_captions_name_every_attribute():
    for attrs in tw.all_attrs():
        parsed = tw.parse_caption(tw.canonical_caption(attrs))
        assert {k: parsed[k] for k in tw.ATTRIBUTES} == attrs.as_dict()
        assert tw.parse_caption(tw.canonical_caption(attrs, background=False))["background"] is None
    assert tw.canonical_caption(tw.ToyAttrs("red", "circle", "left", "white")) == "a red circle moves left on a white background"


def test_generated_captions_state_what_their_mentioned_fields_say():
    texts = set()
    for i in range(400):
        sample = tw.make_sample(i, size=16, num_frames=1, split="all")
        assert tw.parse_caption(sample.caption.text) == dict(sample.caption.mentioned)
        assert {k: v for k, v in sample.caption.mentioned.items() if v and k != "size"}.items() <= sample.attrs.as_dict().items()
        assert not re.search(r"\ba [aeiou]", sample.caption.text), sample.caption.text
        texts.add(sample.caption.text)
    assert len(texts) > 350  # varied English, not a handful of strings


def test_vocabulary_texts_hold_every_word_of_captions_stories_and_swaps():
    from vidgen.toyworld.captions import vocabulary_texts

    known = {w for text in vocabulary_texts() for w in re.findall(r"[a-z]+", text.lower())}
    used = set()
    for i in range(2000):
        text = tw.make_sample(i, size=16, num_frames=1, split="all").caption.text
        used |= set(re.findall(r"[a-z]+", text.lower()))
        used |= set(re.findall(r"[a-z]+", tw.swap_attribute(text, "shape", "circle" if "circle" not in text else "square")))
    for i in range(50):
        used |= {w for s in tw.make_story(i, size=16, num_frames=1) for w in re.findall(r"[a-z]+", s.caption.text.lower())}
    assert used <= known, sorted(used - known)


def test_swap_attribute_changes_exactly_one_attribute_of_any_caption():
    """Minimal pairs for the text-encoder tuning: every generated caption, every other motion and shape."""
    for i in range(300):
        text = tw.make_sample(i, size=16, num_frames=1, split="all").caption.text
        parsed = tw.parse_caption(text)
        for attribute, kind in (("motion", tw.Motion), ("shape", tw.Shape)):
            for value in kind:
                if value.value == parsed[attribute]:
                    continue
                swapped = tw.swap_attribute(text, attribute, value.value)
                assert tw.parse_caption(swapped) == {**parsed, attribute: value.value}, (text, swapped)
                assert len(swapped.split()) - len(text.split()) in range(-3, 4)
    assert tw.swap_attribute("a big blue ball rising", "motion", "down") == "a big blue ball falling"
    assert tw.swap_attribute("the red box slides to the left", "motion", "right") == "the red box slides to the right"
    assert tw.swap_attribute("a red triangular shape rises", "shape", "square") == "a red square rises"
    with pytest.raises(ValueError, match="no motion phrase"):
        tw.swap_attribute("a red circle", "motion", "up")
    with pytest.raises(ValueError, match="only swap"):
        tw.swap_attribute("a red circle moves up", "color", "blue")


def test_captions_fit_the_32_token_text_encoder():
    from vidgen.models.tokenizer import hf_clip_tokenizer

    tokenizer = hf_clip_tokenizer(32)

    def costliest(table):  # CLIP's BPE splits words independently, so the worst caption uses the costliest words
        return max((w for ws in table.values() for w in ws), key=lambda w: len(tokenizer.tokenize(w)))

    color, shape, bg, size = (costliest(t) for t in (tw.COLOR_WORDS, tw.SHAPE_WORDS, tw.BACKGROUND_WORDS, tw.SIZE_WORDS))
    worst = 0
    for template in tw.CAPTION_TEMPLATES:
        for phrases in tw.MOTION_PHRASES.values():
            for phrase in phrases:
                text = tw.format_caption(template, color, shape, phrase, bg, size)
                worst = max(worst, len(tokenizer(text)["input_ids"]))
    assert worst <= 24  # start and end tokens included


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a red circle moves left", ("red", "circle", "left", None, None)),
        ("A purple ball stays still on black.", ("magenta", "circle", "still", "black", None)),
        ("blue square moving up on a white background", ("blue", "square", "up", "white", None)),
        ("a small green triangle drifts right", ("green", "triangle", "right", None, "small")),
        ("big yellow box falling down, grey backdrop", ("yellow", "square", "down", "gray", "large")),
        ("a cyan disk that is not moving", ("cyan", "circle", "still", None, None)),
        ("turquoise dot rising upwards", ("cyan", "circle", "up", None, None)),
        ("a circle", (None, "circle", None, None, None)),
        ("", (None, None, None, None, None)),
    ],
)
def test_parser_reads_plain_user_prompts(prompt, expected):
    keys = ("color", "shape", "motion", "background", "size")
    assert tw.parse_caption(prompt) == dict(zip(keys, expected))


# --------------------------------------------------------------------------- held-out pairs


def test_held_out_pairs_split_the_combinations_and_leave_every_value_in_training():
    everything, train, held = tw.all_attrs("all"), tw.all_attrs("train"), tw.all_attrs("held_out")
    assert len(everything) == 6 * 3 * 5 * 3 == len(train) + len(held)
    assert not set(train) & set(held) and held
    combos = tw.held_out_combos()
    assert all(tw.is_held_out(a) for a in held) and not any(tw.is_held_out(a) for a in train)
    for cs in combos.color_shape:
        assert not any((a.color, a.shape) == cs for a in train)
    for sm in combos.shape_motion:
        assert not any((a.shape, a.motion) == sm for a in train)
    for field in tw.ATTRIBUTES:
        assert {getattr(a, field) for a in train} == {getattr(a, field) for a in everything}


def test_sampling_respects_the_split():
    rng = np.random.default_rng(2)
    assert not any(tw.is_held_out(tw.sample_scene(rng).attrs) for _ in range(400))
    assert all(tw.is_held_out(tw.sample_scene(rng, split="held_out").attrs) for _ in range(100))
    for i in range(20):
        assert all(tw.is_held_out(s.attrs) for s in tw.make_story(i, num_frames=2, size=16, split="held_out"))
        assert not any(tw.is_held_out(s.attrs) for s in tw.make_story(i, num_frames=2, size=16))


# --------------------------------------------------------------------------- stories


def test_stories_continue_the_path_and_change_the_motion():
    rng = np.random.default_rng(3)
    for _ in range(100):
        scenes = tw.sample_story(rng, 6, split="all")
        for a, b in zip(scenes, scenes[1:]):
            assert (b.x0, b.y0) == pytest.approx(a.end())
            assert b.attrs.motion != a.attrs.motion
            assert (b.attrs.color, b.attrs.shape, b.attrs.background, b.size, b.rgb) == (a.attrs.color, a.attrs.shape, a.attrs.background, a.size, a.rgb)
        for s in scenes:
            lo, hi = s.size / 2, 1 - s.size / 2
            for x, y in ((s.x0, s.y0), s.end()):
                assert lo <= x <= hi and lo <= y <= hi
            assert s.quality is tw.Quality.CLEAN


# --------------------------------------------------------------------------- InternVid-shaped files

INTERNVID_FIELDS = ["YoutubeID", "Start_timestamp", "End_timestamp", "Caption", "Aesthetic_Score", "UMT_Score"]
TIMESTAMP = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3}$")


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.parametrize("fps", [8, 24, 25, 30])
def test_timestamps_land_on_exact_frames(fps):
    for frame in range(0, 5000, 7):
        t = _seconds(tw.frame_timestamp(frame, fps))
        assert math.floor(t * fps + 1e-6) == frame == round(t * fps)
    assert tw.format_timestamp(3_723_045) == "01:02:03.045"


SMALL = dict(num_videos=6, min_clips=2, max_clips=4, min_frames=8, max_frames=12, width=32, height=32,
             continuous_fraction=0.34, degraded_fraction=0.3)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_writes_internvid_rows_and_frame_exact_source_videos(tmp_path):
    from vidgen.io import probe, read_frames
    from vidgen.toyworld.judge import judge_frames

    summary = tw.generate(tmp_path / "ds", seed=11, **SMALL)
    rows = _rows(summary.rows_path)
    assert summary.num_clips == len(rows) and summary.num_files == summary.num_videos == 6
    assert {r["toy_kind"] for r in rows} == {"cut", "continuous"}
    for row in rows:
        assert list(row)[:6] == INTERNVID_FIELDS
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", row["YoutubeID"])
        assert TIMESTAMP.match(row["Start_timestamp"]) and TIMESTAMP.match(row["End_timestamp"])
        assert tw.parse_caption(row["Caption"])["color"] == row["toy_color"]
        assert not row["toy_held_out"]
    by_video: dict[str, list[dict]] = {}
    for row in rows:
        by_video.setdefault(row["YoutubeID"], []).append(row)
    for vid, video_rows in by_video.items():
        path = summary.out_dir / f"{vid}.mp4"
        info = probe(path)
        assert info.num_frames == sum(r["toy_num_frames"] for r in video_rows)
        assert (info.width, info.height) == (32, 32) and info.fps == 8
        for a, b in zip(video_rows, video_rows[1:]):
            assert a["End_timestamp"] == b["Start_timestamp"]  # segments tile the video
            if a["toy_kind"] == "continuous":
                assert a["toy_motion"] != b["toy_motion"]
        for row in video_rows:
            start = math.floor(_seconds(row["Start_timestamp"]) * info.fps + 1e-6)
            end = math.floor(_seconds(row["End_timestamp"]) * info.fps + 1e-6)
            assert (start, end - start) == (row["toy_start_frame"], row["toy_num_frames"])
            if row["toy_quality"] == "clean":
                # Cutting by the timestamps gives exactly this segment: the judge reads its attributes.
                verdict = judge_frames(read_frames(path, range(start, end))).attributes()
                assert verdict == {k: row[f"toy_{k}"] for k in tw.ATTRIBUTES}, row


def test_generate_is_deterministic_and_scores_separate_degraded_clips(tmp_path):
    a = tw.generate(tmp_path / "a", seed=5, workers=1, **SMALL)
    b = tw.generate(tmp_path / "b", seed=5, workers=3, **SMALL)
    c = tw.generate(tmp_path / "c", seed=6, **SMALL)
    assert a.rows_path.read_text() == b.rows_path.read_text() != c.rows_path.read_text()
    first = json.loads(a.rows_path.read_text().splitlines()[0])["YoutubeID"] + ".mp4"
    assert (a.out_dir / first).read_bytes() == (b.out_dir / first).read_bytes()
    # Score distributions come from the plan; no need to encode video for them.
    videos = tw.plan_videos(tw.ToyWorldConfig(num_videos=300, seed=0))
    segs = [s for v in videos for s in v.segments]
    clean = np.array([(s.aesthetic, s.umt) for s in segs if s.scene.quality is tw.Quality.CLEAN])
    bad = np.array([(s.aesthetic, s.umt) for s in segs if s.scene.quality is not tw.Quality.CLEAN])
    assert 0.05 < len(bad) / len(segs) < 0.12  # degraded_fraction 0.1 of the 80% scene-cut videos
    assert 4.0 < np.median(clean[:, 0]) < 6.0 and 0.3 < np.median(clean[:, 1]) < 0.45
    assert (clean[:, 0] >= 4).mean() > 0.95 and (bad[:, 0] < 4).mean() > 0.9
    assert np.quantile(clean[:, 1], 0.3) > np.quantile(bad[:, 1], 0.95)  # a top-70% UMT cut drops the degraded rows
    assert len({v.youtube_id for v in videos}) == 300


def test_generate_clip_layout_names_files_by_timestamps(tmp_path):
    from vidgen.io import probe

    summary = tw.generate(tmp_path, seed=2, layout="clips", **{**SMALL, "num_videos": 2})
    rows = _rows(summary.rows_path)
    assert summary.num_files == len(rows)
    for row in rows:
        path = tmp_path / f"{row['YoutubeID']}_{row['Start_timestamp']}_{row['End_timestamp']}.mp4"
        assert probe(path).num_frames == row["toy_num_frames"]


def test_generate_refuses_to_overwrite_and_rejects_bad_options(tmp_path):
    small = {**SMALL, "num_videos": 1, "max_clips": 2}
    tw.generate(tmp_path, **small)
    before = (tmp_path / tw.ROWS_FILE).read_text()
    with pytest.raises(OutputError, match="overwrite"):
        tw.generate(tmp_path, **small)
    (tmp_path / tw.ROWS_FILE).unlink()
    with pytest.raises(OutputError, match="already exist"):
        tw.generate(tmp_path, **small)  # videos without rows are not silently replaced either
    tw.generate(tmp_path, overwrite=True, **small)
    assert (tmp_path / tw.ROWS_FILE).read_text() == before
    with pytest.raises(InputError, match="num_vids"):
        tw.generate(tmp_path / "x", num_vids=3)
    with pytest.raises(InputError, match="workers"):
        tw.generate(tmp_path / "x", workers=0)
    for bad in ({"min_clips": 3, "max_clips": 2}, {"min_frames": 1}, {"fps": 0}, {"split": "test"},
                {"layout": "shards"}, {"continuous_fraction": 1.5}, {"width": 8}):
        with pytest.raises(InputError):
            tw.generate(tmp_path / "x", **bad)
    assert not (tmp_path / "x" / tw.ROWS_FILE).exists()


def test_config_layers_through_load_config():
    from vidgen.config import load_config
    from vidgen.errors import ConfigError

    cfg = load_config(tw.ToyWorldConfig, overrides=["num_videos=3", "split=held_out"])
    assert cfg.num_videos == 3 and cfg.split == "held_out"
    with pytest.raises(ConfigError):
        load_config(tw.ToyWorldConfig, overrides=["layout=shards"])


def test_a_failed_write_leaves_no_rows_file(tmp_path, monkeypatch):
    from vidgen.toyworld import dataset

    calls = []

    def failing_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OutputError(f"disk full writing {path}")
        return real_write(path, *args, **kwargs)

    real_write = dataset.write_video
    monkeypatch.setattr(dataset, "write_video", failing_write)
    with pytest.raises(OutputError, match="disk full"):
        tw.generate(tmp_path, workers=1, **{**SMALL, "num_videos": 3})
    assert not (tmp_path / tw.ROWS_FILE).exists()
