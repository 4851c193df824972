"""Fréchet video distance: how far apart two sets of videos are, through a video network's features.

Each video gives one clip of consecutive frames from its start (a video shorter
than the clip is padded with its last frame, and counted), the network turns
every clip into a feature vector, each set of vectors is fitted with a Gaussian
(mean, unbiased covariance), and the distance between the Gaussians is
``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Unterthiner et al.
2018), computed in float64. ``tr((S_a S_b)^(1/2))`` is the sum of the square
roots of the eigenvalues of ``S_a S_b`` (real and non-negative for covariance
matrices), which is what the reference code's ``scipy.linalg.sqrtm`` trace is.

Networks, chosen by name:

* ``i3d``: the Kinetics-400 I3D TorchScript detector (``i3d_torchscript.pt``,
  from StyleGAN-V) prepared as the widely used common_metrics_on_video_quality /
  VideoGPT-style code prepares it: 16-frame clips, shorter side to 224
  (bilinear, the long side rounded up), centre crop, values in ``[-1, 1]``,
  called with ``rescale=False, resize=False``; the 400 logits before the
  softmax as features. (StyleGAN-V's own code hands the detector uint8 frames
  with ``rescale=True, resize=True``: a straight resize without crop, which
  gives other numbers on non-square videos.) Opened with ``torch.jit.load``
  only; a pickle is refused.
* ``viclip``: any ViCLIP (the shipped toy one too), its video embedding before
  normalisation, over the model's own frame count and preprocessing.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidgen.errors import InputError, ModelLoadError, VidgenError

logger = logging.getLogger("vidgen")
NETS = ("viclip", "i3d")


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of ``[N, D]`` features.

    Raises:
        InputError: fewer than 2 vectors (no covariance).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"a Fréchet distance needs at least 2 videos per set, got {x.shape[0] if x.ndim == 2 else 0}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` in float64 (rounding below 0 is returned as 0).

    Raises:
        DataError: non-finite statistics (e.g. NaN features from an overflowing fp16 network).
    """
    diff = np.asarray(mu_a, np.float64) - np.asarray(mu_b, np.float64)
    sa, sb = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if not (np.isfinite(diff).all() and np.isfinite(sa).all() and np.isfinite(sb).all()):
        from vidgen.errors import DataError

        raise DataError("the features hold NaN or inf values (run the network in fp32)")
    eigenvalues = np.linalg.eigvals(sa @ sb)
    root_trace = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    return max(0.0, float(diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * root_trace))


def first_frames(total: int, length: int) -> list[int]:
    """Frames ``0 .. length - 1`` of a ``total``-frame video, the last repeated when it is shorter."""
    if total < 1:
        from vidgen.errors import VideoError

        raise VideoError("the video has no frames")
    return [min(i, total - 1) for i in range(length)]


def load_torchscript(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """A TorchScript module from ``path``, never a pickle.

    Raises:
        ModelLoadError: missing, a plain pickle or ``torch.save`` file (which could run code), or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"detector file not found: {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        names = []
    if not (any(n.endswith("constants.pkl") for n in names) and any("/code/" in n or n.startswith("code/") for n in names)):
        raise ModelLoadError(f"refusing {str(path)!r}: it is not a TorchScript archive (a pickle needs code to load, and "
                             "vidgen does not unpickle detector files); give the TorchScript file, e.g. i3d_torchscript.pt")
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load TorchScript {str(path)!r}: {str(exc).splitlines()[0]}") from None


class I3DFeatures:
    """The I3D detector's pre-softmax logits of 16-frame clips, prepared as the common FVD code prepares them."""

    name = "i3d"

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", frames: int = 16, size: int = 224):
        self.path, self.device, self.frames, self.size = Path(path), torch.device(device), frames, size
        self.detector = load_torchscript(path, self.device)
        try:  # a TorchScript file that is not the detector fails here, not after decoding every video
            with torch.inference_mode():
                out = self.detector(torch.zeros(1, 3, frames, size, size, device=self.device), rescale=False, resize=False,
                                    return_features=True)
            if out.ndim != 2:
                raise RuntimeError(f"returns a {tuple(out.shape)} tensor, not [batch, features]")
        except (RuntimeError, TypeError) as exc:
            raise ModelLoadError(f"{str(path)!r} is not an FVD detector taking (x, rescale, resize, return_features): "
                                 f"{str(exc).splitlines()[0]}") from None

    def prepare(self, clip: np.ndarray) -> torch.Tensor:
        """``uint8 [T, H, W, 3]`` -> ``[3, T, size, size]`` in ``[-1, 1]``: shorter side to ``size`` (bilinear,
        the long side rounded up), centre crop."""
        x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)
        target = (self.size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), self.size)
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        top, left = (x.shape[-2] - self.size) // 2, (x.shape[-1] - self.size) // 2
        x = x[..., top : top + self.size, left : left + self.size]
        return ((x - 0.5) * 2).permute(1, 0, 2, 3).contiguous()

    @torch.inference_mode()
    def __call__(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        batch = torch.stack([self.prepare(c) for c in clips]).to(self.device)
        out = self.detector(batch, rescale=False, resize=False, return_features=True)
        return out.float().cpu().numpy().astype(np.float64)

    def describe(self) -> dict[str, Any]:
        return {"network": "i3d", "checkpoint": str(self.path), "features": "pre-softmax logits (return_features=True)",
                "clip": f"frames 0-{self.frames - 1} (the last repeated for shorter videos)",
                "resize": f"shorter side to {self.size} (bilinear), centre crop, values in [-1, 1]"}


class ViCLIPFeatures:
    """A ViCLIP's video embedding (before normalisation) of its own number of frames from each video's start."""

    name = "viclip"

    def __init__(self, model, preprocess: str = "demo", source: str = "<given>"):
        from vidgen.metrics.preprocess import get_preprocess

        self.model = model.eval()
        c = model.config
        self.frames = c.num_frames
        self.preprocess = get_preprocess(preprocess, c.num_frames, c.image_size)
        self.source = source
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype

    @torch.inference_mode()
    def __call__(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        x = torch.stack([self.preprocess.transform(c) for c in clips]).to(self.device, self.dtype)
        return self.model.encode_video(x).float().cpu().numpy().astype(np.float64)

    def describe(self) -> dict[str, Any]:
        d = self.preprocess.describe()
        return {"network": "viclip", "checkpoint": self.source, "features": "video embedding before normalisation",
                "clip": f"frames 0-{self.frames - 1} (the last repeated for shorter videos)",
                "resize": d["resize"], "normalisation": d["normalisation"]}


def load_features(net: str, *, viclip: str | None = None, i3d: str | None = None, preprocess: str = "demo",
                  device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The feature network ``net`` (``viclip``: ``viclip`` or the shipped ViCLIP; ``i3d``: the ``i3d`` TorchScript file).

    Raises:
        InputError: an unknown network, or ``i3d`` without its file.
        ModelLoadError: a checkpoint that cannot be opened.
    """
    if net not in NETS:
        raise InputError(f"unknown FVD network {net!r}; choose one of {', '.join(NETS)}")
    if net == "i3d":
        if not i3d:
            raise InputError("the i3d network needs --i3d FILE (the TorchScript detector, e.g. i3d_torchscript.pt)")
        return I3DFeatures(i3d, device=device)
    from vidgen.models.viclip_io import default_viclip_path, load_viclip

    source = Path(viclip) if viclip else default_viclip_path()
    return ViCLIPFeatures(load_viclip(source, device=device, dtype=dtype), preprocess, str(source))


@dataclass
class FeatureSet:
    """Features of the readable videos of one set, and what was skipped, padded or read from a truncated file."""

    features: np.ndarray
    videos: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    padded: int = 0
    truncated: list[tuple[str, str]] = field(default_factory=list)  # (video, note): fewer frames decode than announced


def folder_videos(folder: str | os.PathLike) -> list[Path]:
    """The video files of a folder (sorted, not recursive).

    Raises:
        InputError: not a folder, or no video in it.
    """
    from vidgen.io.video import is_video_file

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"FVD needs folders of videos; {str(folder)!r} is not a folder")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and is_video_file(p))
    if not videos:
        raise InputError(f"no videos in {str(folder)!r}")
    return videos


def video_features(extractor, videos: Sequence[str | os.PathLike], batch_size: int = 8,
                   progress: Callable[[int], None] | None = None) -> FeatureSet:
    """Features of each video's first clip; unreadable videos are skipped with their reason."""
    from vidgen.metrics.preprocess import decode_frames

    out = FeatureSet(np.zeros((0, 0)))
    chunks, batch = [], []

    def flush() -> None:
        if batch:
            chunks.append(extractor([c for _, c in batch]))
            out.videos.extend(str(p) for p, _ in batch)
            batch.clear()

    for path in videos:
        try:
            decoded = decode_frames(path, lambda total: first_frames(total, extractor.frames))
        except VidgenError as exc:
            out.skipped.append((str(path), str(exc)))
            if progress:
                progress(1)
            continue
        [(indices, frames)] = decoded.picks
        if decoded.truncated:
            out.truncated.append((str(path), decoded.note))
        out.padded += int(len(set(indices)) < extractor.frames)
        batch.append((path, frames))
        if len(batch) == batch_size:
            flush()
        if progress:
            progress(1)
    flush()
    out.features = np.concatenate(chunks) if chunks else np.zeros((0, 0))
    return out


def fvd_of_features(a: np.ndarray, b: np.ndarray) -> tuple[float, list[str]]:
    """The Fréchet distance of two feature sets, and warnings about their size.

    Raises:
        InputError: a set with fewer than 2 videos.
    """
    warnings = []
    dim = a.shape[1] if a.ndim == 2 else 0
    for name, feats in (("first", a), ("second", b)):
        if feats.shape[0] < 2:
            raise InputError(f"the {name} set has {feats.shape[0]} readable video(s); a Fréchet distance needs at least 2")
        if feats.shape[0] <= dim:
            warnings.append(f"the {name} set has {feats.shape[0]} videos for {dim} features: its covariance is singular "
                            f"and the distance unstable (use more than {dim} videos)")
    for w in warnings:
        logger.warning(w)
    return frechet_distance(*gaussian(a), *gaussian(b)), warnings


def compute_fvd(real: str | os.PathLike, generated: str | os.PathLike, extractor, batch_size: int = 8,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """FVD between the videos of two folders, with everything a report needs to state how it was made.

    Raises:
        InputError: a missing or empty folder, or fewer than 2 readable videos in a set.
    """
    import time

    start = time.perf_counter()
    sets = {name: video_features(extractor, folder_videos(path), batch_size, progress)
            for name, path in (("real", real), ("generated", generated))}
    value, warnings = fvd_of_features(sets["real"].features, sets["generated"].features)
    return {
        "fvd": value,
        "definition": {"metric": "Fréchet video distance between Gaussian fits of the two sets' features "
                                 "(float64, unbiased covariance)", **extractor.describe()},
        "sets": {name: {"folder": str(path), "videos": len(s.videos), "skipped": [{"video": v, "reason": r} for v, r in s.skipped],
                        "padded": s.padded, "truncated": [{"video": v, "note": n} for v, n in s.truncated]}
                 for (name, s), path in zip(sets.items(), (real, generated))},
        "warnings": warnings,
        "seconds": time.perf_counter() - start,
    }
