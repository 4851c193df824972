"""Training a ViCLIP contrastively (video-text InfoNCE).

``vidgen train viclip --config FILE`` trains on captioned clips from a stream:
``data.source: folder`` reads a clip folder (captions from InternVid rows, or
``.txt`` files beside the clips); other sources are
named streams the caller passes in (``train_viclip(cfg, streams={name: factory})``;
``vidgen train viclip`` passes the ones it knows). Video tokens are randomly masked during training as
ViCLIP does (Wang et al. 2023, InternVid Sec. 4), which also makes each step
cheaper; evaluation never masks. Clips a stream marks with the same group id
(e.g. the same caption) count as positives of each other, so identical scenes
are not pushed apart.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Optional, Protocol

import numpy as np
import torch
from omegaconf import MISSING

from vidgen.errors import ConfigError, DataError, ModelLoadError, VideoError
from vidgen.training.config import normalize_precision


@dataclass
class ViCLIPDataConfig:
    """Where the captioned clips come from."""

    source: str = "folder"  # folder | a named stream given to train_viclip
    path: Optional[str] = None  # folder: the clip folder
    rows: Optional[str] = None  # folder: InternVid rows giving each clip's caption (else sidecar .txt files)
    eval_path: Optional[str] = None  # folder: held-out clips for Recall@K (none: no retrieval report)
    eval_rows: Optional[str] = None
    seed: int = 0
    stream: dict = field(default_factory=dict)  # settings of a named stream (its own schema)


@dataclass
class ViCLIPTrainConfig:
    """``vidgen train viclip`` settings."""

    # Keys of configs written before the data source became a choice (they configured the stream).
    RENAMED: ClassVar[dict[str, str]] = {"data.render_size": "data.stream.render_size",
                                         "data.reversed_twins": "data.stream.reversed_twins"}

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
    eval_clips: int = 100  # held-out clips Recall@K is measured on (when the stream has them)

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 1:
            raise ConfigError(f"steps must be positive and batch_size > 1, got {self.steps} and {self.batch_size}")
        self.mixed_precision = normalize_precision(self.mixed_precision)
        if self.train_text_projection and not self.freeze_text:
            raise ConfigError("train_text_projection only applies with freeze_text (otherwise the whole tower trains)")
        if self.temporal_init not in ("zeros", "normal"):
            raise ConfigError(f"temporal_init must be 'zeros' or 'normal', got {self.temporal_init!r}")


class PairBatch(NamedTuple):
    """Preprocessed clips ``[B, T, 3, S, S]``, their captions, and group ids ``[B]`` (equal ids: positives)."""

    videos: torch.Tensor
    captions: list[str]
    groups: torch.Tensor


class PairStream(Protocol):
    """What ``train_viclip`` reads: batches by step number (so a run is reproducible) and a held-out set."""

    def batch(self, step: int, size: int) -> PairBatch: ...

    def eval_pairs(self, count: int) -> PairBatch | None: ...


StreamFactory = Callable[[ViCLIPTrainConfig, Any], PairStream]  # (config, VideoPreprocess) -> stream


class FolderPairs:
    """Captioned clips of a folder, each epoch in a shuffled order fixed by (seed, epoch).

    Unreadable or too-short clips are skipped and counted (``skipped``). Clips with the same
    caption share a group id.

    Raises:
        DataError: the folder holds no clip with a caption.
    """

    def __init__(self, path: str, rows: Optional[str], preprocess, seed: int = 0, held_out: "FolderPairs | None" = None):
        from vidgen.data.datasets import folder_items

        self.items, missing = folder_items(path, rows)
        if not self.items:
            raise DataError(f"no clips with captions found in {path!r} ({missing} missing)")
        self.preprocess, self.seed, self.held_out, self.skipped = preprocess, seed, held_out, 0
        groups: dict[str, int] = {}
        self.groups = [groups.setdefault(caption, len(groups)) for _, _, caption in self.items]
        self._orders: dict[int, np.ndarray] = {}

    def _item(self, position: int) -> int:
        epoch, k = divmod(position, len(self.items))
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.items))}
        return int(self._orders[epoch][k])

    def _read(self, start: int, count: int, limit: int) -> PairBatch | None:
        """``count`` readable clips from position ``start`` on, trying at most ``limit`` positions."""
        videos, captions, groups = [], [], []
        for position in range(start, start + limit):
            if len(videos) == count:
                break
            index = self._item(position)
            _, path, caption = self.items[index]
            try:
                video, _ = self.preprocess.load(path)
            except VideoError:
                self.skipped += 1
                continue
            videos.append(video)
            captions.append(caption)
            groups.append(self.groups[index])
        if not videos:
            return None
        return PairBatch(torch.stack(videos), captions, torch.tensor(groups))

    def batch(self, step: int, size: int) -> PairBatch:
        got = self._read(step * size, size, size + len(self.items))  # unreadable clips: read further
        if got is None or len(got.captions) < size:
            raise DataError(f"fewer than {size} readable clips in the folder ({self.skipped} unreadable)")
        return got

    def eval_pairs(self, count: int) -> PairBatch | None:
        """The first ``count`` readable clips of the held-out folder (in its fixed order), if there is one."""
        if self.held_out is None:
            return None
        n = len(self.held_out.items)
        return self.held_out._read(0, min(count, n), n)


def folder_stream(cfg: ViCLIPTrainConfig, preprocess) -> PairStream:
    """The ``folder`` source: ``data.path`` for training, ``data.eval_path`` (when given) for Recall@K."""
    held_out = FolderPairs(cfg.data.eval_path, cfg.data.eval_rows, preprocess, cfg.data.seed) if cfg.data.eval_path else None
    return FolderPairs(cfg.data.path, cfg.data.rows, preprocess, cfg.data.seed, held_out)


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


@torch.no_grad()
def retrieval_eval(model, tokenizer, pairs: PairBatch) -> dict[str, float]:
    """Text->video and video->text Recall@1/5 of ``pairs`` against their own captions."""
    from vidgen.metrics.retrieval import recall_at_k

    model.eval()
    v = torch.nn.functional.normalize(model.encode_video(pairs.videos).float(), dim=-1)
    t = torch.nn.functional.normalize(model.encode_text(tokenizer(pairs.captions).to(pairs.videos.device)).float(), dim=-1)
    cosines = v @ t.T  # [videos, texts]; video i's caption is text i
    recall = recall_at_k(cosines, range(len(pairs.captions)), ks=(1, 5))
    return {
        "t2v_recall@1": recall["text_to_video"][1], "t2v_recall@5": recall["text_to_video"][5],
        "v2t_recall@1": recall["video_to_text"][1], "v2t_recall@5": recall["video_to_text"][5],
        "clipsim_real": float(cosines.diag().mean()),
    }


def make_stream(cfg: ViCLIPTrainConfig, preprocess, streams: Mapping[str, StreamFactory] | None = None) -> PairStream:
    """The stream ``cfg.data.source`` names: ``folder`` or one of ``streams``.

    Raises:
        ConfigError: an unknown source name.
    """
    factories: dict[str, StreamFactory] = {"folder": folder_stream, **(streams or {})}
    if cfg.data.source not in factories:
        raise ConfigError(f"data.source must be one of {', '.join(factories)}, got {cfg.data.source!r}")
    if cfg.data.source == "folder" and not cfg.data.path:
        raise ConfigError(f"data.source=folder (the default) needs data.path, a clip folder; the sources here: "
                          f"{', '.join(factories)}")
    return factories[cfg.data.source](cfg, preprocess)


def train_viclip(cfg: ViCLIPTrainConfig, progress: bool = True,
                 streams: Mapping[str, StreamFactory] | None = None) -> dict[str, Any]:
    """Train ViCLIP contrastively; save it to ``{output_dir}/viclip`` (config.json + model.safetensors).

    Args:
        cfg: the settings.
        progress: show a progress bar.
        streams: named data sources besides ``folder`` (``{name: factory(cfg, preprocess)}``).

    Returns:
        The final report: loss, temperature, seconds, and Recall@K on held-out clips when the stream has them.
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
    stream = make_stream(cfg, preprocess, streams)
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
    eval_set = stream.eval_pairs(cfg.eval_clips)

    def evaluate() -> dict[str, float]:
        if eval_set is None:
            return {}
        videos = eval_set.videos.to(next(model.parameters()).device)
        return retrieval_eval(model, tokenizer, eval_set._replace(videos=videos))

    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="viclip", disable=not progress, dynamic_ncols=True)
    for step in bar:
        batch = stream.batch(step, cfg.batch_size)
        with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out_v, out_t, _ = model(batch.videos.to(device), tokenizer(batch.captions).to(device))
        loss = contrastive_loss(out_v.float(), out_t.float(), model.temp, batch.groups.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            record: dict[str, Any] = {"step": step + 1, "loss": loss.item(), "temp": model.temp.item(),
                                      "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - start}
            if (step + 1) % (cfg.log_every * 10) == 0 or step + 1 == cfg.steps:
                record.update(evaluate())
                model.train()
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval().to("cpu", torch.float32)
    save_viclip(model, out / "viclip", overwrite=True)
    report = {"final_loss": loss.item(), "temp": model.temp.item(), "seconds": time.perf_counter() - start}
    report.update(evaluate())
    atomic_write_text(out / "viclip_report.json", json.dumps(report, indent=1))
    return report
