"""The latent cache: VAE posteriors and text-encoder states computed once per clip, stored per shard.

Training a latent video model spends most of its time in the VAE encoder and
the text encoder when they run on the fly. ``vidgen data cache`` runs them
once: per input shard it writes ``{shard}.safetensors`` holding, for its N
clips, the VAE posterior ``mean`` and ``std`` ``[N, T, C, h, w]`` (raw,
unscaled), the text encoder's ``last_hidden_state`` ``text`` ``[N, L, D]`` and
the empty prompt's ``uncond`` ``[L, D]`` (for caption dropout), with the keys,
captions, VAE ``scaling_factor`` and encoder identities in its metadata; a
small ``{shard}.json`` index beside it marks the shard complete. Under
``accelerate launch`` each process takes its own slice of the shards.

:class:`CachedLatentDataset` reads the cache back and yields
``latents [C, T, h, w] = (mean + std * eps) * scaling_factor`` (a sample of
the posterior, as Stable Diffusion training draws one; or ``mean *
scaling_factor`` with sampling off) and ``text_embeds [L, D]``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vidgen.data.frames import FramePolicy, item_rng, key_rng
from vidgen.data.rows import Row
from vidgen.errors import DataError, InputError, ModelLoadError
from vidgen.io.files import atomic_outputs, ensure_writable_dir, read_json_object, remove_temporaries

logger = logging.getLogger(__name__)

CACHE_FORMAT = "vidgen-latent-cache/1"
STORE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


# ---------------------------------------------------------------- encoders


@dataclass
class CacheEncoders:
    """The VAE, text encoder and tokenizer a cache is made with, and how to name them."""

    vae: Any
    text_encoder: Any
    tokenizer: Any
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def scaling_factor(self) -> float:
        """The VAE's latent scaling factor (``vae.config.scaling_factor``)."""
        return float(self.vae.config.scaling_factor)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """``last_hidden_state`` ``[N, L, D]``, exactly as the sampling pipeline encodes prompts."""
        from vidgen.pipelines.text_to_video import TextToVideoPipeline

        # The pipeline's own method only reads .tokenizer and .text_encoder: calling
        # it keeps cached states identical to what sampling feeds the denoiser.
        return TextToVideoPipeline.encode_prompt(self, captions, self.text_encoder.device, warn_truncation=False)

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior ``(mean, std)``, each ``[T, C, h, w]``, for frames ``[T, 3, H, W]`` in [-1, 1]."""
        device = self.vae.device
        dtype = self.vae.dtype
        means, stds = [], []
        for i in range(0, pixels.shape[0], chunk):
            posterior = self.vae.encode(pixels[i : i + chunk].to(device=device, dtype=dtype)).latent_dist
            means.append(posterior.mean.float().cpu())
            stds.append(posterior.std.float().cpu())
        return torch.cat(means), torch.cat(stds)


def _config_digest(config: Any) -> str:
    data = dict(config) if not hasattr(config, "to_dict") else config.to_dict()
    text = json.dumps({k: v for k, v in data.items() if not k.startswith("_")}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_encoders(*, model: str | os.PathLike | None = None, vae: str | os.PathLike | None = None,
                  text_encoder: str | os.PathLike | None = None, tokenizer: str | os.PathLike | None = None,
                  device: str = "cpu", dtype: str = "fp32") -> CacheEncoders:
    """Open the VAE, text encoder and tokenizer from folders (safetensors weights only).

    Args:
        model: a pipeline folder with ``vae/``, ``text_encoder/`` and ``tokenizer/``
            (the folders below override its parts).
        vae, text_encoder, tokenizer: component folders.
        device: where the encoders run.
        dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"`` weights.

    Raises:
        ModelLoadError: a folder is missing or does not load.
        InputError: a component is not given at all, or a bad device/dtype.
    """
    from diffusers import AutoencoderKL
    from transformers import AutoTokenizer, CLIPTextModel

    from vidgen.runtime import quiet_libraries, resolve_device, resolve_dtype

    folders = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer}
    for name in folders:
        if folders[name] is None and model is not None:
            folders[name] = Path(model) / name
        if folders[name] is None:
            raise InputError(f"no {name} folder given (pass --{name.replace('_', '-')} DIR or --model DIR)")
        if not Path(folders[name]).is_dir():  # type: ignore[arg-type]
            raise ModelLoadError(f"{name} folder not found: {str(folders[name])!r}")
    torch_dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    loaders = {
        "vae": lambda p: AutoencoderKL.from_pretrained(p, torch_dtype=torch_dtype, use_safetensors=True),
        "text_encoder": lambda p: CLIPTextModel.from_pretrained(p, torch_dtype=torch_dtype, use_safetensors=True),
        "tokenizer": lambda p: AutoTokenizer.from_pretrained(p),
    }
    parts: dict[str, Any] = {}
    for name, loader in loaders.items():
        try:
            with quiet_libraries():
                parts[name] = loader(str(folders[name]))
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load {name} from {str(folders[name])!r}: {reason}") from None
    parts["vae"].to(device).eval().requires_grad_(False)
    parts["text_encoder"].to(device).eval().requires_grad_(False)
    identity = {
        "vae": {"path": str(Path(folders["vae"]).resolve()), "class": type(parts["vae"]).__name__,
                "config": _config_digest(parts["vae"].config)},
        "text_encoder": {"path": str(Path(folders["text_encoder"]).resolve()), "class": type(parts["text_encoder"]).__name__,
                         "config": _config_digest(parts["text_encoder"].config)},
        "tokenizer": {"path": str(Path(folders["tokenizer"]).resolve()), "class": type(parts["tokenizer"]).__name__,
                      "model_max_length": int(parts["tokenizer"].model_max_length)},
    }
    return CacheEncoders(parts["vae"], parts["text_encoder"], parts["tokenizer"], identity)


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class CacheShard:
    """One unit of cache work: a tar shard, or a chunk of a clip folder."""

    name: str
    url: str | None = None
    clips: tuple[tuple[str, str, str], ...] = ()  # (key, path, caption) for a folder chunk


def shards_from_urls(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[CacheShard]:
    """Cache units for WebDataset shards (paths, folders, globs, brace patterns, URLs).

    Raises:
        DataError: no shards, or two shards with the same file name.
    """
    from vidgen.data.shards import expand_urls

    shards = []
    for url in expand_urls(urls):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        shards.append(CacheShard(name[:-4] if name.endswith(".tar") else name, url=url))
    names = [s.name for s in shards]
    if len(set(names)) != len(names):
        raise DataError("two input shards share a file name; their caches would collide")
    return shards


def shards_from_folder(root: str | os.PathLike, rows: str | os.PathLike | Iterable[Row] | None = None,
                       clips_per_shard: int = 1000) -> list[CacheShard]:
    """Cache units for a clip folder: its clips (see :func:`~vidgen.data.datasets.folder_items`) in chunks.

    Raises:
        DataError: no clips with captions.
        InputError: a chunk size below 1.
    """
    from vidgen.data.datasets import folder_items

    if clips_per_shard < 1:
        raise InputError(f"clips per shard must be at least 1, got {clips_per_shard}")
    items, missing = folder_items(root, rows)
    if not items:
        raise DataError(f"no clips with captions found in {str(root)!r} ({missing} missing)")
    return [
        CacheShard(f"clips-{i // clips_per_shard:06d}", clips=tuple((k, str(p), c) for k, p, c in items[i : i + clips_per_shard]))
        for i in range(0, len(items), clips_per_shard)
    ]


def process_slice(shards: Sequence[CacheShard], process_index: int, num_processes: int) -> list[CacheShard]:
    """The shards process ``process_index`` of ``num_processes`` caches (round-robin, so sizes stay even)."""
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise InputError(f"process {process_index} of {num_processes} is not a valid slice")
    return list(shards[process_index::num_processes])


# ----------------------------------------------------------------- writing


def _items(shard: CacheShard, policy: FramePolicy, seed: int, skipped: dict[str, int]) -> Iterator[dict[str, Any]]:
    """Decoded items of one cache unit, skipping (and counting into ``skipped``) unusable clips."""
    from vidgen.data.datasets import ShardVideoDataset, SkipCounter, load_or_skip

    if shard.url is not None:
        dataset = ShardVideoDataset(shard.url, policy=policy, seed=seed, shuffle_shards=False, split_by_node=False)
        yield from dataset
        counter = dataset.skip_counter
    else:
        counter = SkipCounter()
        for key, path, caption in shard.clips:
            pixels = load_or_skip(path, policy, key_rng(seed, 0, key), key, counter)
            if pixels is not None:
                yield {"pixel_values": pixels, "caption": caption, "key": key}
    for reason, count in counter.counts().items():
        if count:
            skipped[reason] = skipped.get(reason, 0) + count


def cache_paths(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """``(tensors, index)`` file paths of one cached shard."""
    out = Path(out_dir)
    return out / f"{name}.safetensors", out / f"{name}.json"


def _is_cached(out_dir: Path, name: str) -> bool:
    """Whether a shard's cache is complete: its index, and its tensors when the index counts clips."""
    tensors_path, index_path = cache_paths(out_dir, name)
    index = read_json_object(index_path)
    if index is None or "count" not in index:
        return False  # no index, or one this code did not write whole: the shard is cached again
    return index["count"] == 0 or tensors_path.is_file()


def cache_shard(shard: CacheShard, encoders: CacheEncoders, out_dir: str | os.PathLike, *,
                policy: FramePolicy, store_dtype: str = "fp16", text_batch: int = 32, vae_chunk: int = 16,
                seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Encode one shard's clips and captions and write its ``.safetensors`` and ``.json`` index.

    Frames follow ``policy`` (a random window or crop is drawn once per clip
    from (seed, key), so a cache is reproducible). Unusable clips are skipped
    and counted in the index.

    Returns:
        The index written (``{"count", "keys", "captions", "skipped", ...}``).

    Raises:
        OutputError: the shard's cache exists without ``overwrite``.
        InputError: an unknown storage dtype.
    """
    from safetensors.torch import save_file

    if store_dtype not in STORE_DTYPES:
        raise InputError(f"cache dtype must be one of {', '.join(STORE_DTYPES)}, got {store_dtype!r}")
    tensors_path, index_path = cache_paths(out_dir, shard.name)
    skipped: dict[str, int] = {}
    keys, captions, means, stds = [], [], [], []
    for item in _items(shard, policy, seed, skipped):
        mean, std = encoders.encode_video(item["pixel_values"], vae_chunk)
        means.append(mean.to(STORE_DTYPES[store_dtype]))
        stds.append(std.to(STORE_DTYPES[store_dtype]))
        keys.append(item["key"])
        captions.append(item["caption"])
    texts = [encoders.encode_text(captions[i : i + text_batch]).float().cpu() for i in range(0, len(captions), text_batch)]
    uncond = encoders.encode_text([""])[0].float().cpu()
    index = {
        "format": CACHE_FORMAT,
        "shard": shard.name,
        "source": shard.url or "clip folder",
        "count": len(keys),
        "keys": keys,
        "captions": captions,
        "skipped": skipped,
        "scaling_factor": encoders.scaling_factor,
        "dtype": store_dtype,
        "frames": policy.num_frames,
        "height": policy.height,
        "width": policy.width,
        "encoders": encoders.identity,
    }
    if keys:
        metadata = {
            "format": CACHE_FORMAT,
            "scaling_factor": repr(encoders.scaling_factor),
            "keys": json.dumps(keys, ensure_ascii=False),
            "captions": json.dumps(captions, ensure_ascii=False),
            "encoders": json.dumps(encoders.identity, sort_keys=True),
        }
        tensors = {
            "mean": torch.stack(means).contiguous(),
            "std": torch.stack(stds).contiguous(),
            "text": torch.cat(texts).to(STORE_DTYPES[store_dtype]).contiguous(),
            "uncond": uncond.to(STORE_DTYPES[store_dtype]).contiguous(),
        }
    # Tensors and index appear together, the index last: its presence marks the shard complete.
    with atomic_outputs([tensors_path, index_path] if keys else [index_path], overwrite=overwrite) as temps:
        if keys:
            save_file(tensors, str(temps[0]), metadata=metadata)
        temps[-1].write_text(json.dumps(index, ensure_ascii=False) + "\n", encoding="utf-8")
    return index


@dataclass
class CacheReport:
    """The outcome of :func:`build_cache` for this process."""

    process_index: int = 0
    num_processes: int = 1
    shards_done: int = 0
    shards_existing: int = 0
    clips: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the terminal."""
        skipped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in self.skipped.items() if n) or "none"
        return (f"process {self.process_index + 1}/{self.num_processes}: cached {self.clips} clips in "
                f"{self.shards_done} shards ({self.shards_existing} already cached; skipped clips: {skipped})")


def build_cache(shards: Sequence[CacheShard], encoders: CacheEncoders, out_dir: str | os.PathLike, *,
                policy: FramePolicy, store_dtype: str = "fp16", seed: int = 0, overwrite: bool = False,
                process_index: int = 0, num_processes: int = 1, text_batch: int = 32, vae_chunk: int = 16) -> CacheReport:
    """Cache this process's slice of ``shards`` into ``out_dir``; shards already cached are skipped.

    A shard is cached once its index is written (after its tensors), so the same command run
    again after a kill redoes only the shards that had no index yet.

    Raises:
        OutputError: ``out_dir`` cannot be written (a full or read-only disk included: the shard
            being written is not left behind).
    """
    out = ensure_writable_dir(out_dir)
    report = CacheReport(process_index=process_index, num_processes=num_processes)
    mine = process_slice(shards, process_index, num_processes)
    # Temporaries a killed run left, of this process's shards only: other processes are writing theirs.
    remove_temporaries(out, {path.name for shard in mine for path in cache_paths(out, shard.name)})
    for shard in mine:
        if not overwrite and _is_cached(out, shard.name):
            report.shards_existing += 1
            continue
        # A shard without its index is one a stopped run did not finish: its tensors, if any, are replaced.
        index = cache_shard(shard, encoders, out, policy=policy, store_dtype=store_dtype, seed=seed,
                            overwrite=True, text_batch=text_batch, vae_chunk=vae_chunk)
        report.shards_done += 1
        report.clips += index["count"]
        for reason, count in index["skipped"].items():
            report.skipped[reason] = report.skipped.get(reason, 0) + count
        logger.info("cached %s: %d clips", shard.name, index["count"])
    return report


# ----------------------------------------------------------------- reading


class CachedLatentDataset(Dataset):
    """Map-style dataset over a latent cache folder.

    Items: ``{"latents": float32 [C, T, h, w], "text_embeds": float32 [L, D],
    "caption": str, "key": str}``. Latents are ``(mean + std * eps) *
    scaling_factor`` with ``eps`` drawn from (seed, epoch, index), or ``mean *
    scaling_factor`` when ``sample_posterior`` is false; ``text_embeds`` is the
    cached empty-prompt state (and ``caption`` is ``""``) when the caption is
    dropped.

    Args:
        cache_dir: the folder :func:`build_cache` wrote.
        sample_posterior: draw from the VAE posterior rather than take its mean.
        caption_dropout: probability of the unconditional text state (for CFG).
        seed: base seed of the per-item draws.

    Raises:
        DataError: no complete cached shards, or shards made with different
            encoders or scaling factors.
    """

    def __init__(self, cache_dir: str | os.PathLike, *, sample_posterior: bool = True, caption_dropout: float = 0.0,
                 seed: int = 0):
        if not 0.0 <= caption_dropout <= 1.0:
            raise InputError(f"caption dropout must be a probability in [0, 1], got {caption_dropout!r}")
        self.cache_dir = Path(cache_dir)
        if not self.cache_dir.is_dir():
            raise DataError(f"latent cache folder not found: {str(self.cache_dir)!r}")
        self.sample_posterior = sample_posterior
        self.caption_dropout = caption_dropout
        self.seed = seed
        self.epoch = 0
        self.shards: list[dict[str, Any]] = []
        for index_path in sorted(self.cache_dir.glob("*.json")):
            try:
                index = json.loads(index_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"malformed cache index {str(index_path)!r}: {exc}") from None
            if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
                continue  # another JSON file in the folder (a report...)
            if index["count"] == 0:
                continue
            tensors_path = index_path.with_suffix(".safetensors")
            if not tensors_path.is_file():
                raise DataError(f"cache index {str(index_path)!r} has no {tensors_path.name}")
            index["path"] = str(tensors_path)
            self.shards.append(index)
        if not self.shards:
            raise DataError(f"no cached shards in {str(self.cache_dir)!r}")
        first = self.shards[0]
        for shard in self.shards[1:]:
            for field_name in ("scaling_factor", "encoders"):
                if shard[field_name] != first[field_name]:
                    raise DataError(f"cached shards {first['shard']!r} and {shard['shard']!r} differ in {field_name}: "
                                    "they were made with different encoders")
        self.scaling_factor = float(first["scaling_factor"])
        self.encoders = first["encoders"]
        self.offsets = list(np.cumsum([0] + [s["count"] for s in self.shards]))
        self._handles: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # open safetensors files do not cross process boundaries: each worker reopens
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws ``__getitem__`` makes."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _handle(self, path: str):
        from safetensors import safe_open

        if path not in self._handles:
            self._handles[path] = safe_open(path, framework="pt")
        return self._handles[path]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cached clips")
        index %= len(self)
        shard_no = bisect.bisect_right(self.offsets, index) - 1
        shard = self.shards[shard_no]
        local = index - int(self.offsets[shard_no])
        f = self._handle(shard["path"])
        mean = f.get_slice("mean")[local].float()
        rng = item_rng(self.seed, self.epoch, index)
        if self.sample_posterior:
            std = f.get_slice("std")[local].float()
            generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
            latents = mean + std * torch.randn(mean.shape, generator=generator)
        else:
            latents = mean
        dropped = bool(self.caption_dropout) and rng.random() < self.caption_dropout
        text = f.get_tensor("uncond") if dropped else f.get_slice("text")[local]
        return {
            "latents": (latents * self.scaling_factor).permute(1, 0, 2, 3).contiguous(),  # [T,C,h,w] -> [C,T,h,w]
            "text_embeds": text.float(),
            "caption": "" if dropped else shard["captions"][local],
            "key": shard["keys"][local],
        }


def collate_latents(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch cached items: ``latents`` ``[B, C, T, h, w]`` and ``text_embeds`` ``[B, L, D]`` stacked; lists otherwise.

    Raises:
        DataError: an empty batch.
    """
    if not items:
        raise DataError("cannot collate an empty batch")
    return {
        "latents": torch.stack([item["latents"] for item in items]),
        "text_embeds": torch.stack([item["text_embeds"] for item in items]),
        "caption": [item["caption"] for item in items],
        "key": [item["key"] for item in items],
    }
