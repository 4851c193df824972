"""CLIPSIM scorers: ViCLIP (one embedding per 8-frame video) and frame-level CLIP (per-frame cosine, averaged).

The two are different numbers and reports say which is which:

* ViCLIP CLIPSIM: cosine between ViCLIP's video embedding and its text
  embedding (text cut at 32 tokens). Sensitive to motion and frame order.
* CLIP CLIPSIM (as text-to-video papers report it): a ``transformers``
  ``CLIPModel`` (ViT-B/32 in the papers) embeds each frame and the prompt; the
  per-frame cosines are averaged. Raw cosine, no x100.

Both cache text embeddings for the life of the scorer (one run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vidgen.errors import ModelLoadError, first_line
from vidgen.metrics.preprocess import CLIP_MEAN, CLIP_STD, VideoPreprocess, get_preprocess, normalize_frames, resize_short_center_crop


class _TextCache:
    """Normalised text embeddings kept per distinct text."""

    def __init__(self) -> None:
        self.embeddings: dict[str, torch.Tensor] = {}

    def get(self, texts: Sequence[str], encode) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.embeddings]
        if missing:
            for text, emb in zip(missing, encode(missing)):
                self.embeddings[text] = emb
        return torch.stack([self.embeddings[t] for t in texts])


class ViCLIPScorer:
    """Video-level CLIPSIM with ViCLIP.

    Args:
        model: a loaded :class:`~vidgen.models.viclip.ViCLIP` (put in eval mode here).
        preprocess: ``"demo"``, ``"vbench"`` or a :class:`VideoPreprocess`;
            presets are sized to the model's frames and image size.
        device: where the model is (inputs are moved there).
        source: the checkpoint the model came from, for reports.
    """

    name = "viclip"

    def __init__(self, model, preprocess: str | VideoPreprocess = "demo", device: str | torch.device | None = None,
                 source: str | None = None):
        self.model = model.eval()
        self.source = source
        first = next(model.parameters())
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = first.dtype
        c = model.config
        self.preprocess = (get_preprocess(preprocess, c.num_frames, c.image_size) if isinstance(preprocess, str) else preprocess)
        self.tokenizer = model.tokenizer()
        self._texts = _TextCache()

    def describe(self) -> dict[str, Any]:
        """The metric's definition for reports."""
        from vidgen.models.viclip import config_name

        return {
            "metric": "ViCLIP CLIPSIM: cosine of L2-normalised ViCLIP video and text embeddings (raw, no x100)",
            "model_size": config_name(self.model.config) or "custom",
            **({"checkpoint": self.source} if self.source else {}),
            "text_context": self.model.config.context_length,
            "preprocess": self.preprocess.describe(),
        }

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(texts)
        # Positions after the last end token never reach the pooled features (causal attention): drop them.
        ids = ids[:, : int(ids.argmax(dim=1).max()) + 1].to(self.device)
        return torch.nn.functional.normalize(self.model.encode_text(ids).float(), dim=-1).cpu()

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings ``[N, D]`` (float32, CPU), cached per text."""
        return self._texts.get(list(texts), self._encode_texts)

    @torch.inference_mode()
    def embed_videos(self, videos: torch.Tensor) -> torch.Tensor:
        """Normalised video embeddings ``[B, D]`` (float32, CPU) of preprocessed ``[B, T, 3, S, S]`` input."""
        x = videos.to(self.device, self.dtype)
        return torch.nn.functional.normalize(self.model.encode_video(x).float(), dim=-1).cpu()

    def load_video(self, path: str | os.PathLike) -> tuple[torch.Tensor, list[int]]:
        """Decode and preprocess one video; returns ``([T, 3, S, S], frame indices)``."""
        return self.preprocess.load(path)


class CLIPFrameScorer:
    """Frame-level CLIPSIM with a ``transformers`` ``CLIPModel`` from a local folder.

    Frames are preprocessed with torch as CLIP does (shorter side to the
    model's image size, bicubic, centre crop, CLIP mean/std), without
    transformers' image processors.

    Args:
        path: a folder ``CLIPModel.from_pretrained`` opens (config.json + weights;
            tokenizer files optional: the shipped CLIP vocabulary is used otherwise).
        device: ``"cpu"``/``"cuda"``.
        dtype: weight dtype.
        num_frames: frames scored per video (16 as the papers; all frames of
            shorter videos).

    Raises:
        ModelLoadError: the folder is missing or not a CLIP model.
    """

    name = "clip"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", dtype: torch.dtype = torch.float32, num_frames: int = 16):
        from transformers import CLIPModel, CLIPTokenizer

        from vidgen.models.tokenizer import hf_clip_tokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"CLIP model folder {str(path)!r} not found or has no config.json")
        try:
            self.model = CLIPModel.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype).to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            reason = first_line(exc)
            raise ModelLoadError(f"cannot load CLIP model {str(path)!r}: {reason}") from None
        max_len = self.model.config.text_config.max_position_embeddings
        has_tokenizer = any((path / name).is_file() for name in ("tokenizer.json", "vocab.json"))
        self.tokenizer = CLIPTokenizer.from_pretrained(str(path)) if has_tokenizer else hf_clip_tokenizer(max_len)
        self.max_length = max_len
        self.device, self.dtype, self.num_frames = torch.device(device), dtype, num_frames
        self.size = self.model.config.vision_config.image_size
        self.path = path
        self._texts = _TextCache()

    def describe(self) -> dict[str, Any]:
        return {
            "metric": "CLIP CLIPSIM: mean over frames of the cosine between each frame's and the prompt's CLIP embedding",
            "model": str(self.path),
            "frames": f"all frames up to {self.num_frames}, else {self.num_frames} segment middles",
            "resize": f"shorter side to {self.size} (bicubic, antialiased), centre crop",
            "normalisation": f"CLIP mean {list(CLIP_MEAN)} std {list(CLIP_STD)}",
        }

    def frame_indices(self, total: int) -> list[int]:
        """Every frame of a short video, else ``num_frames`` evenly spread."""
        from vidgen.io.sampling import uniform_indices

        return list(range(total)) if 0 < total <= self.num_frames else uniform_indices(total, self.num_frames)

    def transform(self, frames: np.ndarray) -> torch.Tensor:
        """RGB uint8 ``[T, H, W, 3]`` -> CLIP input ``[T, 3, size, size]``."""
        x = resize_short_center_crop(torch.from_numpy(np.ascontiguousarray(frames)), self.size)
        return normalize_frames(x, CLIP_MEAN, CLIP_STD)

    @staticmethod
    def _features(out) -> torch.Tensor:
        # transformers < 5 returns the projected tensor; 5.x a model output whose pooler_output is it.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        out = self.model.get_text_features(input_ids=batch["input_ids"].to(self.device),
                                           attention_mask=batch["attention_mask"].to(self.device))
        return torch.nn.functional.normalize(self._features(out).float(), dim=-1).cpu()

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised prompt embeddings ``[N, D]``, cached per text."""
        return self._texts.get(list(texts), self._encode_texts)

    @torch.inference_mode()
    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised per-frame embeddings ``[T, D]`` of preprocessed ``[T, 3, S, S]`` frames."""
        out = self.model.get_image_features(pixel_values=frames.to(self.device, self.dtype))
        return torch.nn.functional.normalize(self._features(out).float(), dim=-1).cpu()

    def score(self, frames: torch.Tensor, text: str) -> float:
        """Mean over frames of ``cos(frame, text)``."""
        return float((self.embed_frames(frames) @ self.embed_texts([text])[0]).mean())
