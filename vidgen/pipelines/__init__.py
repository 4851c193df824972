"""Sampling: the text-to-video pipeline, schedulers by name, model loading."""

from vidgen.pipelines.loading import check_model_folder, default_model_dir, load_pipeline
from vidgen.pipelines.schedulers import SCHEDULERS, make_scheduler, scheduler_names
from vidgen.pipelines.text_to_video import TextToVideoOutput, TextToVideoPipeline

__all__ = [
    "SCHEDULERS",
    "TextToVideoOutput",
    "TextToVideoPipeline",
    "check_model_folder",
    "default_model_dir",
    "load_pipeline",
    "make_scheduler",
    "scheduler_names",
]
