"""Community weights at Stable Diffusion 1.5's shapes: opening and sampling, vidgen against diffusers.

Random-weight parts with SD-1.5's real shapes (U-Net 860M, VAE 84M, CLIP-L text 123M parameters,
AnimateDiff v2 motion adapter) are written once in the formats users hold: a Stable Diffusion
folder, the same as one original-layout single file, a MotionAdapter folder and an original
motion-module file. Each measurement then runs in a fresh process (wall time of the phase and the
process's peak RSS), vidgen and diffusers alternating, and the medians are reported with their ratio:

* open SD folder + adapter folder: ``load_pipeline(weights=...)`` vs ``AnimateDiffPipeline.from_pretrained``;
* open a single-file SD checkpoint: vidgen's ``open_base`` vs ``StableDiffusionPipeline.from_single_file``
  (the same local configs);
* open an original motion-module file: vidgen's ``open_motion_adapter`` vs ``MotionAdapter.from_single_file``;
* sample (8 frames, 64x64, 4 steps, guidance 7.5) on the same weights: vidgen vs ``AnimateDiffPipeline``.

    python benchmarks/bench_weights.py --repeats 5 [--only sample ...] [--work /tmp/bench_weights]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("open_folder", "open_single", "open_adapter", "sample")
SAMPLE = dict(prompt="a dog running on a beach", num_frames=8, height=64, width=64, num_inference_steps=4, guidance_scale=7.5)


def write_parts(work: Path) -> None:
    """The SD-1.5-shaped parts, in every format, unless already written."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(REPO))
    from tests.weights_helpers import save_original_adapter, save_single_file_sd
    from vidgen.models.tokenizer import hf_clip_tokenizer
    from vidgen.pipelines.weights import SD15_CONFIG_DIR

    if (work / "done").is_file():
        return
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = lambda name: json.loads((SD15_CONFIG_DIR / name / "config.json").read_text())  # noqa: E731
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(config("vae")), unet=UNet2DConditionModel.from_config(config("unet")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**{k: v for k, v in config("text_encoder").items()
                                                     if k not in ("architectures", "transformers_version")})),
        tokenizer=hf_clip_tokenizer(77), scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                                 beta_end=0.012, clip_sample=False, set_alpha_to_one=False,
                                                                 steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(work / "sd"), safe_serialization=True)
    save_single_file_sd(work / "sd.safetensors", pipe)
    adapter = MotionAdapter()  # AnimateDiff v2's shape: 4 levels, 2 layers, mid block, 32 positions
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.02)
    adapter.save_pretrained(str(work / "adapter"), safe_serialization=True)
    save_original_adapter(work / "mm_sd_v15_v2.safetensors", adapter)
    (work / "done").write_text("ok")


def one(task: str, work: Path) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from vidgen.pipelines.weights import SD15_CONFIG_DIR, WeightsSettings

    start = time.perf_counter()
    if task in ("open_folder_vidgen", "sample_vidgen"):
        from vidgen.pipelines.loading import load_pipeline

        pipe = load_pipeline(weights=WeightsSettings(base=str(work / "sd"), motion_adapter=str(work / "adapter")), device="cpu")
    elif task in ("open_folder_diffusers", "sample_diffusers"):
        from diffusers import AnimateDiffPipeline, MotionAdapter

        pipe = AnimateDiffPipeline.from_pretrained(str(work / "sd"), motion_adapter=MotionAdapter.from_pretrained(str(work / "adapter")))
    elif task == "open_single_vidgen":
        from vidgen.pipelines.weights import open_base

        open_base(work / "sd.safetensors")
    elif task == "open_single_diffusers":
        from diffusers import StableDiffusionPipeline

        from vidgen.models.tokenizer import hf_clip_tokenizer

        StableDiffusionPipeline.from_single_file(str(work / "sd.safetensors"), config=str(SD15_CONFIG_DIR), local_files_only=True,
                                                 safety_checker=None, feature_extractor=None, tokenizer=hf_clip_tokenizer(77))
    elif task == "open_adapter_vidgen":
        from vidgen.pipelines.weights import open_motion_adapter

        open_motion_adapter(work / "mm_sd_v15_v2.safetensors")
    elif task == "open_adapter_diffusers":
        from diffusers import MotionAdapter

        MotionAdapter.from_single_file(str(work / "mm_sd_v15_v2.safetensors"), config=str(work / "adapter"), local_files_only=True)
    else:
        raise SystemExit(f"unknown task {task}")
    seconds = time.perf_counter() - start
    if task.startswith("sample"):
        pipe.set_progress_bar_config(disable=True)
        pipe(**{**SAMPLE, "num_inference_steps": 1, "num_frames": 2}, generator=torch.Generator().manual_seed(0))  # warm-up
        start = time.perf_counter()
        pipe(**SAMPLE, generator=torch.Generator().manual_seed(0), output_type="np")
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started (VmHWM; ru_maxrss would count the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_weights"))
    p.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES), help="the measurements to run (default all)")
    p.add_argument("--one", metavar="TASK", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.work)))
        return 0
    write_parts(args.work)
    report = {}
    for what in args.only:
        runs: dict[str, list[dict]] = {"vidgen": [], "diffusers": []}
        for _ in range(args.repeats):
            for who in ("vidgen", "diffusers"):
                out = subprocess.run([sys.executable, __file__, "--one", f"{what}_{who}", "--work", str(args.work)],
                                     capture_output=True, text=True, check=True)
                runs[who].append(json.loads(out.stdout.strip().splitlines()[-1]))
        row = {who: {k: round(statistics.median(r[k] for r in rs), 3) for k in ("seconds", "peak_rss_mib")}
               for who, rs in runs.items()}
        row["vidgen_over_diffusers"] = {k: round(row["vidgen"][k] / row["diffusers"][k], 3) for k in ("seconds", "peak_rss_mib")}
        report[what] = row
        print(what, json.dumps(row), flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
