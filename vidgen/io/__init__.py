"""Video input/output: seeking decode, frame sampling, MP4/GIF writing, safe output files, UTF-8 text inputs."""

from vidgen.io.files import atomic_output, atomic_write_bytes, atomic_write_text, check_output_path, ensure_writable_dir
from vidgen.io.sampling import demo_indices, fps_indices, stride_indices, uniform_indices
from vidgen.io.video import VideoInfo, is_video_file, iter_frames, probe, read_frames
from vidgen.io.writer import to_uint8_frames, upscale, write_video

__all__ = [
    "VideoInfo",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "demo_indices",
    "ensure_writable_dir",
    "fps_indices",
    "is_video_file",
    "iter_frames",
    "probe",
    "read_frames",
    "stride_indices",
    "to_uint8_frames",
    "uniform_indices",
    "upscale",
    "write_video",
]
