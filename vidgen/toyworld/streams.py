"""The toy world as a data source and a scorer for vidgen's generic trainers.

* :func:`viclip_stream`: captioned clips rendered on the fly for ``vidgen train viclip``
  (``data.source: toyworld``), with time-reversed twins as hard negatives and a held-out
  set of clips with distinct attributes for Recall@K.
* :func:`vae_frames`: frames rendered on the fly for ``vidgen train vae``
  (``data.source: toyworld``), whose report reads the reconstructions back with the judge.
* :func:`judge_scorer`: the judge as a validation scorer (``validation.scorers: [judge]``).

The settings of each stream sit under the trainer config's ``data.stream``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from vidgen.errors import ConfigError
from vidgen.toyworld.judge import faithfulness, judge_frames
from vidgen.toyworld.render import ToySample, make_sample
from vidgen.toyworld.world import MOTION_VECTORS, Background, Color, Motion, Shape, is_held_out
from vidgen.toyworld.captions import make_caption

ATTRS = ("color", "shape", "motion", "background")


@dataclass
class ViCLIPStreamConfig:
    """``data.stream`` of ``vidgen train viclip`` with ``data.source: toyworld``."""

    render_size: int = 32  # frame size before the model's preprocessing
    # Share of each batch filled with time-reversed twins of its moving clips, captioned with the
    # opposite direction: hard negatives that only frame order separates (without them the video
    # tower learns colour/shape/background and hardly tells "left" from "right").
    reversed_twins: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.reversed_twins < 1.0:
            raise ConfigError(f"data.stream.reversed_twins must be in [0, 1), got {self.reversed_twins}")
        if self.render_size < 8:
            raise ConfigError(f"data.stream.render_size must be at least 8, got {self.render_size}")


@dataclass
class VAEStreamConfig:
    """``data.stream`` of ``vidgen train vae`` with ``data.source: toyworld``."""

    eval_clips: int = 64  # clips reconstructed at the end for the report

    def __post_init__(self) -> None:
        if self.eval_clips < 1:
            raise ConfigError(f"data.stream.eval_clips must be positive, got {self.eval_clips}")


def _stream_config(schema: type, settings: dict):
    from vidgen.config import load_config

    try:
        return load_config(schema, overrides=dict(settings))
    except ConfigError as e:
        raise ConfigError(f"data.stream: {e}") from None


def _attr_id(attrs) -> int:
    parts = [list(Color).index(attrs.color), list(Shape).index(attrs.shape), list(Motion).index(attrs.motion),
             list(Background).index(attrs.background)]
    return ((parts[0] * 3 + parts[1]) * 5 + parts[2]) * 3 + parts[3]


def _sample_id(sample) -> int:
    """Clips whose caption states the same attributes share an id (size words make a finer id)."""
    size = sample.caption.mentioned.get("size")
    return _attr_id(sample.attrs) * 3 + (0 if size is None else 1 + (size == "large"))


def reversed_twin(sample: ToySample, rng: np.random.Generator) -> ToySample | None:
    """``sample`` played backwards, captioned with the opposite direction; ``None`` when that has no
    twin (a still object) or would be a held-out attribute combination."""
    dx, dy = MOTION_VECTORS[sample.attrs.motion]
    if (dx, dy) == (0, 0):
        return None
    backwards = next(m for m, v in MOTION_VECTORS.items() if v == (-dx, -dy))
    attrs = dataclasses.replace(sample.attrs, motion=backwards)
    if is_held_out(attrs):
        return None
    # Frame k of n sits at start + direction * travel * k / n: the last frame is the twin's first.
    scene, last = sample.scene, (len(sample.frames) - 1) / len(sample.frames)
    scene = dataclasses.replace(scene, attrs=attrs, x0=scene.x0 + dx * scene.travel * last,
                                y0=scene.y0 + dy * scene.travel * last)
    return ToySample(scene, np.ascontiguousarray(sample.frames[::-1]), make_caption(scene, rng))


def held_out_clips(count: int, seed: int, num_frames: int, size: int) -> list[ToySample]:
    """``count`` fresh toy clips (a seed training never uses) with pairwise-distinct attributes.

    Each caption is drawn from the training templates until it states the background
    too, so every caption fits exactly one of the clips and Recall@1 is well defined.
    """
    chosen, seen, index = [], set(), 0
    while len(chosen) < count:
        sample = make_sample(index, seed=seed, num_frames=num_frames, size=size, split="all")
        index += 1
        key = _attr_id(sample.attrs)
        if key not in seen:
            seen.add(key)
            rng = np.random.default_rng([seed, index])
            while sample.caption.mentioned.get("background") is None:
                sample = dataclasses.replace(sample, caption=make_caption(sample.scene, rng))
            chosen.append(sample)
        if index > 100_000:
            raise ConfigError(f"cannot find {count} clips with distinct attributes")
    return chosen


class ToyPairs:
    """Batches of captioned clips from the toy world's endless training split (``PairStream``)."""

    def __init__(self, settings: ViCLIPStreamConfig, seed: int, preprocess):
        self.settings, self.seed, self.preprocess = settings, seed, preprocess

    def _batch(self, samples: Sequence[ToySample]):
        from vidgen.training.viclip import PairBatch

        videos = torch.stack([self.preprocess.transform(s.frames) for s in samples])
        return PairBatch(videos, [s.caption.text for s in samples], torch.tensor([_sample_id(s) for s in samples]))

    def batch(self, step: int, size: int):
        want_twins = int(round(size * self.settings.reversed_twins))
        start = step * size
        samples, twins, index = [], [], 0
        rng = np.random.default_rng([self.seed, 104_729, step])
        while len(samples) + len(twins) < size:
            sample = make_sample(start + index, seed=self.seed, num_frames=self.preprocess.num_frames,
                                 size=self.settings.render_size, split="train", degraded_fraction=0.05)
            index += 1
            samples.append(sample)
            if len(twins) < want_twins and len(samples) + len(twins) < size:
                twin = reversed_twin(sample, rng)
                if twin is not None:
                    twins.append(twin)
        return self._batch(samples + twins)

    def eval_pairs(self, count: int):
        """Clips with distinct attributes from a seed training never uses."""
        return self._batch(held_out_clips(count, seed=self.seed + 7919, num_frames=self.preprocess.num_frames,
                                          size=self.settings.render_size))


def viclip_stream(cfg, preprocess) -> ToyPairs:
    """``data.source: toyworld`` for :func:`vidgen.training.viclip.train_viclip`."""
    return ToyPairs(_stream_config(ViCLIPStreamConfig, cfg.data.stream), cfg.data.seed, preprocess)


def heldout_retrieval(model, cfg) -> dict[str, float]:
    """Recall@K of a trained ``model`` on the held-out clips that ``train_viclip`` with ``cfg`` reports on.

    Lets a ViCLIP be re-measured after training (e.g. when the eval set's captions changed).
    """
    from vidgen.metrics.preprocess import get_preprocess
    from vidgen.training.viclip import retrieval_eval

    c = model.config
    stream = viclip_stream(cfg, get_preprocess(cfg.preprocess, c.num_frames, c.image_size))
    return retrieval_eval(model, model.tokenizer(), stream.eval_pairs(cfg.eval_clips))


class ToyFrames:
    """Frames rendered on the fly (``FrameSource``); the report reads reconstructions back with the judge."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.settings = _stream_config(VAEStreamConfig, cfg.stream)

    def batches(self, batch_size: int, start: int) -> Iterator[np.ndarray]:
        index = start
        per_clip = max(1, self.cfg.frames_per_clip)
        while True:
            frames: list[np.ndarray] = []
            while len(frames) < batch_size:
                clip = make_sample(index, seed=self.cfg.seed, num_frames=per_clip, size=self.cfg.size, split="all",
                                   degraded_fraction=0.1).frames
                frames.extend(clip)
                index += 1
            yield np.stack(frames[:batch_size])

    @torch.no_grad()
    def report(self, vae) -> dict[str, float]:
        """PSNR of reconstructed clips and how often the judge still reads them right.

        Also the median fill ratio the judge measures on reconstructions of each shape (``fill_circle``,
        ``fill_square``, ``fill_triangle``; ground truth pi/4, 1 and about 0.57, the circle/square split
        at 0.893): how much of a square's corners the VAE keeps, i.e. the margin a denoiser has left.
        """
        psnrs, agree = [], dict.fromkeys(ATTRS, 0)
        fills: dict[str, list[float]] = {}
        n = self.settings.eval_clips
        for i in range(n):
            sample = make_sample(10_000_000 + i, seed=self.cfg.seed + 1, num_frames=8, size=self.cfg.size, split="all")
            x = torch.from_numpy(sample.frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            mse = float(((rec - x) / 2).pow(2).mean())
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-10)))
            frames = ((rec + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            judged = judge_frames(frames)
            scores = faithfulness(judged, sample.attrs).matches
            for k in agree:
                agree[k] += int(bool(scores.get(k)))
            if "fill_ratio" in judged.diagnostics:
                fills.setdefault(sample.attrs.shape.value, []).append(float(judged.diagnostics["fill_ratio"]))
        report = {"psnr_db": float(np.mean(psnrs))}
        report.update({f"judge_{k}": v / n for k, v in agree.items()})
        report.update({f"fill_{shape}": float(np.median(v)) for shape, v in sorted(fills.items())})
        return report


def vae_frames(cfg) -> ToyFrames:
    """``data.source: toyworld`` for :func:`vidgen.training.vae.train_vae`."""
    return ToyFrames(cfg)


def judge_scorer(clips: Sequence[np.ndarray], prompts: Sequence[str]) -> dict[str, float]:
    """The judge as a validation scorer: ``judge_<attribute>`` is the share of videos whose judged attribute
    matches their prompt (over prompts that state it), ``judge_all`` the share matching in every stated one."""
    results = [faithfulness(judge_frames(c), p).matches for c, p in zip(clips, prompts)]
    scores: dict[str, float] = {}
    for attr in ATTRS:
        stated = [m[attr] for m in results if attr in m]
        if stated:
            scores[f"judge_{attr}"] = float(np.mean(stated))
    if results:
        scores["judge_all"] = float(np.mean([all(m.values()) for m in results]))
    return scores


# What vidgen's CLI hands the generic trainers, by the names configs use.
VICLIP_STREAMS = {"toyworld": viclip_stream}
VAE_SOURCES = {"toyworld": vae_frames}
SCORERS = {"judge": judge_scorer}
