"""Training a ViCLIP contrastively (video-text InfoNCE): the toy world's scorer and text encoder.

``vidgen train viclip --config configs/toy/viclip.yaml`` trains on the toy
world rendered on the fly (an endless stream, so no epoch overfits). Video tokens are randomly masked during training as
ViCLIP does (Wang et al. 2023, InternVid Sec. 4), which also makes each step
cheaper; evaluation never masks. Clips whose stated attributes all agree count
as positives of each other, so identical toy scenes are not pushed apart.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import numpy as np
from omegaconf import MISSING

from vidgen.errors import ConfigError, ModelLoadError
from vidgen.training.config import normalize_precision


@dataclass
class ViCLIPDataConfig:
    render_size: int = 32  # toy-world frame size before the model's preprocessing
    seed: int = 0
    # Share of each batch filled with time-reversed twins of its moving clips, captioned with the
    # opposite direction: hard negatives that only frame order separates (without them the video
    # tower learns colour/shape/background and hardly tells "left" from "right").
    reversed_twins: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.reversed_twins < 1.0:
            raise ConfigError(f"data.reversed_twins must be in [0, 1), got {self.reversed_twins}")


@dataclass
class ViCLIPTrainConfig:
    """``vidgen train viclip`` settings."""

    output_dir: str = MISSING  # the model is written to {output_dir}/viclip
    size: str = "toy"  # a named ViCLIP config to start from
    model: dict = field(default_factory=dict)  # ViCLIPConfig fields overriding the named size
    init: Optional[str] = None  # start from these weights instead of random
    init_text: Optional[str] = None  # take only the text tower (and temperature) from this checkpoint
    # The text tower's transformer (not its projection) from a CLIP text model folder, e.g. a model folder's
    # text_encoder/: a ViCLIP trained with it frozen scores with the very text encoder the denoiser was trained on.
    text_encoder: Optional[str] = None
    freeze_text: bool = False  # train the video tower against a fixed text tower (locked-text tuning)
    train_text_projection: bool = False  # with freeze_text: the text projection still trains (a new embedding space)
    data: ViCLIPDataConfig = field(default_factory=ViCLIPDataConfig)
    preprocess: str = "demo"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    temp_init: float = 0.07  # CLIP's initial temperature; the reference's 0.01 trains poorly from scratch
    # The temporal position embedding of a fresh model: "zeros" (CLIP/ViCLIP's choice when inflating image
    # weights) leaves a model trained from scratch blind to frame order, since attention over all tokens is then
    # permutation-invariant and the gradient that would break the symmetry is tiny; "normal" starts it like the
    # spatial one.
    temporal_init: str = "zeros"
    mixed_precision: str = "bf16"
    seed: int = 0
    log_every: int = 50
    eval_clips: int = 100  # held-out real clips with distinct attributes for Recall@K

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 1:
            raise ConfigError(f"steps must be positive and batch_size > 1, got {self.steps} and {self.batch_size}")
        self.mixed_precision = normalize_precision(self.mixed_precision)
        if self.train_text_projection and not self.freeze_text:
            raise ConfigError("train_text_projection only applies with freeze_text (otherwise the whole tower trains)")
        if self.temporal_init not in ("zeros", "normal"):
            raise ConfigError(f"temporal_init must be 'zeros' or 'normal', got {self.temporal_init!r}")


def build_model(cfg: ViCLIPTrainConfig):
    """A ViCLIP from the named size with ``cfg.model`` overrides (or the ``init`` weights)."""
    import dataclasses

    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import load_viclip

    if cfg.init:
        if cfg.init_text or cfg.text_encoder:
            raise ConfigError("init takes the whole model; give init_text / text_encoder without it")
        return load_viclip(cfg.init)
    base = get_config(cfg.size)
    unknown = set(cfg.model) - {f.name for f in dataclasses.fields(base)}
    if unknown:
        raise ConfigError(f"model: unknown ViCLIP config fields {sorted(unknown)}")
    model = ViCLIP(dataclasses.replace(base, **cfg.model))
    with torch.no_grad():
        model.temp.fill_(cfg.temp_init)
        if cfg.temporal_init == "normal":
            torch.nn.init.normal_(model.vision_encoder.temporal_positional_embedding, std=model.config.vision_width**-0.5)
    if cfg.init_text:
        source = load_viclip(cfg.init_text)
        fields = ("text_width", "text_layers", "text_heads", "context_length", "vocab_size", "embed_dim")
        mismatch = [f for f in fields if getattr(source.config, f) != getattr(model.config, f)]
        if mismatch:
            raise ConfigError(f"init_text: the text tower of {cfg.init_text!r} differs in {', '.join(mismatch)}")
        model.text_encoder.load_state_dict(source.text_encoder.state_dict())
        model.vocabulary = source.vocabulary
        with torch.no_grad():
            model.temp.copy_(source.temp)
    if cfg.text_encoder:
        from vidgen.models.viclip_io import load_clip_text_model_into_viclip

        try:
            load_clip_text_model_into_viclip(model, cfg.text_encoder)
        except ModelLoadError as e:
            raise ConfigError(f"text_encoder: {e}") from e
    return model


def _attr_id(attrs) -> int:
    from vidgen.data.toyworld import Background, Color, Motion, Shape

    parts = [list(Color).index(attrs.color), list(Shape).index(attrs.shape), list(Motion).index(attrs.motion),
             list(Background).index(attrs.background)]
    return ((parts[0] * 3 + parts[1]) * 5 + parts[2]) * 3 + parts[3]


def _sample_id(sample) -> int:
    """Clips whose caption states the same attributes share an id (size words make a finer id)."""
    size = sample.caption.mentioned.get("size")
    return _attr_id(sample.attrs) * 3 + (0 if size is None else 1 + (size == "large"))


def reversed_twin(sample, rng: np.random.Generator):
    """``sample`` played backwards, captioned with the opposite direction; ``None`` when that has no
    twin (a still object) or would be a held-out attribute combination."""
    import dataclasses

    from vidgen.data.toyworld import MOTION_VECTORS, ToySample, is_held_out, make_caption

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


class ToyStream:
    """Batches of (preprocessed video, token ids, sample ids) from the toy world's endless training split."""

    def __init__(self, cfg: ViCLIPTrainConfig, preprocess, tokenizer, num_frames: int):
        self.cfg, self.preprocess, self.tokenizer, self.num_frames = cfg, preprocess, tokenizer, num_frames

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from vidgen.data.toyworld import make_sample

        size = self.cfg.batch_size
        want_twins = int(round(size * self.cfg.data.reversed_twins))
        start = step * size
        samples, twins, index = [], [], 0
        rng = np.random.default_rng([self.cfg.data.seed, 104_729, step])
        while len(samples) + len(twins) < size:
            sample = make_sample(start + index, seed=self.cfg.data.seed, num_frames=self.num_frames,
                                 size=self.cfg.data.render_size, split="train", degraded_fraction=0.05)
            index += 1
            samples.append(sample)
            if len(twins) < want_twins and len(samples) + len(twins) < size:
                twin = reversed_twin(sample, rng)
                if twin is not None:
                    twins.append(twin)
        samples += twins
        video = torch.stack([self.preprocess.transform(s.frames) for s in samples])
        ids = self.tokenizer([s.caption.text for s in samples])
        return video, ids, torch.tensor([_sample_id(s) for s in samples])


def held_out_clips(count: int, seed: int, num_frames: int, size: int):
    """``count`` fresh toy clips (a seed training never uses) with pairwise-distinct attributes.

    Each caption is drawn from the training templates until it states the background
    too, so every caption fits exactly one of the clips and Recall@1 is well defined.
    """
    import dataclasses

    from vidgen.data.toyworld import make_caption, make_sample

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


@torch.no_grad()
def retrieval_eval(model, preprocess, tokenizer, samples) -> dict[str, float]:
    """Text->video and video->text Recall@1/5 of ``samples`` against their own captions."""
    from vidgen.metrics.retrieval import recall_at_k

    model.eval()
    video = torch.stack([preprocess.transform(s.frames) for s in samples])
    ids = tokenizer([s.caption.text for s in samples])
    v = torch.nn.functional.normalize(model.encode_video(video).float(), dim=-1)
    t = torch.nn.functional.normalize(model.encode_text(ids).float(), dim=-1)
    cosines = v @ t.T  # [videos, texts]; video i's caption is text i
    recall = recall_at_k(cosines, range(len(samples)), ks=(1, 5))
    return {
        "t2v_recall@1": recall["text_to_video"][1], "t2v_recall@5": recall["text_to_video"][5],
        "v2t_recall@1": recall["video_to_text"][1], "v2t_recall@5": recall["video_to_text"][5],
        "clipsim_real": float(cosines.diag().mean()),
    }


def heldout_retrieval(model, cfg: ViCLIPTrainConfig) -> dict[str, float]:
    """Recall@K of a trained ``model`` on the held-out clips that ``train_viclip`` with ``cfg`` reports on.

    Lets a ViCLIP be re-measured after training (e.g. when the eval set's captions changed).
    """
    from vidgen.metrics.preprocess import get_preprocess

    c = model.config
    return retrieval_eval(model, get_preprocess(cfg.preprocess, c.num_frames, c.image_size),
                          model.tokenizer(), _eval_set(cfg, c))


def _eval_set(cfg: ViCLIPTrainConfig, model_config):
    """The held-out clips Recall@K is measured on (a seed the training data never uses)."""
    return held_out_clips(cfg.eval_clips, seed=cfg.data.seed + 7919, num_frames=model_config.num_frames,
                          size=cfg.data.render_size)


def train_viclip(cfg: ViCLIPTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train ViCLIP contrastively; save it to ``{output_dir}/viclip`` (config.json + model.safetensors).

    Returns:
        The final report: loss, temperature, Recall@K on held-out clips, seconds.
    """
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    from vidgen.io.files import atomic_write_text
    from vidgen.metrics.preprocess import get_preprocess
    from vidgen.models.viclip import contrastive_loss
    from vidgen.models.viclip_io import save_viclip

    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision=fp16 needs a CUDA GPU; use bf16 or no")
    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(cfg).to(device).train()
    c = model.config
    preprocess = get_preprocess(cfg.preprocess, c.num_frames, c.image_size)
    tokenizer = model.tokenizer()
    stream = ToyStream(cfg, preprocess, tokenizer, c.num_frames)
    if cfg.freeze_text:
        model.text_encoder.requires_grad_(False)
        model.text_encoder.text_projection.requires_grad_(cfg.train_text_projection)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "embedding" in name or name == "temp" else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "viclip_metrics.jsonl"
    eval_set = _eval_set(cfg, c)
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="viclip", disable=not progress, dynamic_ncols=True)
    for step in bar:
        video, ids, sample_ids = stream.batch(step)
        with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out_v, out_t, _ = model(video.to(device), ids.to(device))
        loss = contrastive_loss(out_v.float(), out_t.float(), model.temp, sample_ids.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            record: dict[str, Any] = {"step": step + 1, "loss": loss.item(), "temp": model.temp.item(),
                                      "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - start}
            if (step + 1) % (cfg.log_every * 10) == 0 or step + 1 == cfg.steps:
                record.update(retrieval_eval(model, preprocess, tokenizer, eval_set))
                model.train()
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval().to("cpu", torch.float32)
    save_viclip(model, out / "viclip", overwrite=True)
    report = {"final_loss": loss.item(), "temp": model.temp.item(), "seconds": time.perf_counter() - start}
    report.update(retrieval_eval(model, preprocess, tokenizer, eval_set))
    atomic_write_text(out / "viclip_report.json", json.dumps(report, indent=1))
    return report
