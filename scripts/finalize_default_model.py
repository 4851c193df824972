"""Turn a trained toy model folder into the shipped default: fp16 weights, ViCLIP, eval, model card, examples.

    python scripts/finalize_default_model.py --model runs/toy/model_order3 --viclip runs/toy/viclip/viclip --run runs/toy --out checkpoints

Weights are stored in fp16 (loaded back as fp32) and the text vocabulary is trimmed to
the toy world's words (vidgen.models.vocab_trim); the script checks that this changes
sampled frames by at most --fp16-tolerance before writing anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = [
    "a red circle moves left on a white background",
    "a blue triangle moves up on a black background",
    "a green square moves right on a gray background",
    "a yellow circle stays still on a black background",
    "a magenta triangle moves down on a white background",
    "a cyan square moves left on a gray background",
]


def _fp16_copy(model: Path, viclip: Path, dst: Path) -> None:
    """The model and ViCLIP stored in fp16, their text vocabulary trimmed to the toy world's words."""
    from vidgen.toyworld.captions import vocabulary_texts
    from vidgen.models.vocab_trim import trim_model_folder

    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".fp16-") as full:
        _fp16_full_copy(model, viclip, Path(full))
        # The toy captions reach 844 of CLIP's 49408 tokens; the other rows were never trained and were
        # half of the folder (a 12 MB table in each text tower). Toy-world captions give identical outputs.
        trim_model_folder(full, dst, vocabulary_texts(), overwrite=True, max_shard_bytes=6 * 2**20)


def _fp16_full_copy(model: Path, viclip: Path, dst: Path) -> None:
    import torch

    from vidgen.models.viclip_io import load_viclip, save_viclip
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.settings import SamplingSettings, read_model_defaults, write_model_defaults
    from vidgen.toyworld.captions import model_vocabulary

    pipe = load_pipeline(model, device="cpu")
    for name in ("unet", "vae", "text_encoder"):
        getattr(pipe, name).to(torch.float16)
    # Shards of at most 6 MB keep every file in the repository small.
    pipe.save_pretrained(str(dst), safe_serialization=True, max_shard_size="6MB")
    # Stories continue a clip with one RePaint resampling round per step (smoother joins, docs/toyworld.md), and
    # no guidance below timestep 200 (the last 5 of 25 steps: guidance there takes the corners off squares).
    defaults = read_model_defaults(model)
    story = dict(defaults.story)
    if "resample" not in story and defaults.sampling.get("scheduler") == "ddim":
        story["resample"] = 1
    sampling = {"guidance_interval": [200, 1000], **defaults.sampling}
    write_model_defaults(dst, SamplingSettings(**sampling), story)
    model_vocabulary().save(dst)  # the words the model knows: prompts outside them are named when sampling
    save_viclip(load_viclip(viclip).to(torch.float16), dst / "viclip", overwrite=True, max_shard_bytes=6 * 2**20)


def _guidance(model: Path) -> float:
    """The guidance scale the model folder samples with by default (its sample_defaults.yaml)."""
    import yaml

    return float(yaml.safe_load((model / "sample_defaults.yaml").read_text())["guidance"])


def _viclip_recall(viclip: Path, config: Path) -> dict[str, float]:
    """Re-measure the ViCLIP's held-out Recall@K with today's eval set (unambiguous captions)."""
    from vidgen.config import load_config
    from vidgen.models.viclip_io import load_viclip
    from vidgen.toyworld.streams import heldout_retrieval
    from vidgen.training.viclip import ViCLIPTrainConfig

    return heldout_retrieval(load_viclip(viclip).float().eval(), load_config(ViCLIPTrainConfig, files=[config]))


def _max_frame_diff(a: Path, b: Path, prompts: list[str], guidance: float) -> float:
    import numpy as np
    import torch

    from vidgen.pipelines.loading import load_pipeline

    diffs = []
    pipes = [load_pipeline(p, device="cpu") for p in (a, b)]
    for i, prompt in enumerate(prompts):
        frames = [p(prompt, num_frames=8, height=32, width=32, num_inference_steps=25, guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(i)).frames for p in pipes]
        diffs.append(float(np.abs(frames[0] - frames[1]).max()))
    return max(diffs)


def _examples(model: Path, out: Path, guidance: float) -> list[tuple[str, str]]:
    """Sample the example prompts with the shipped settings; write GIFs for the README."""
    import torch
    import yaml

    from vidgen.io.writer import to_uint8_frames, write_video
    from vidgen.toyworld.judge import faithfulness, judge_frames
    from vidgen.pipelines.loading import load_pipeline
    from vidgen.pipelines.sample import slugify

    pipe = load_pipeline(model, device="cpu")
    interval = yaml.safe_load((model / "sample_defaults.yaml").read_text()).get("guidance_interval")
    rows = []
    for i, prompt in enumerate(EXAMPLES):
        frames = pipe(prompt, num_frames=8, height=32, width=32, num_inference_steps=25, guidance_scale=guidance,
                      guidance_interval=interval, generator=torch.Generator().manual_seed(i)).frames[0]
        name = f"{i:02d}-{slugify(prompt)}.gif"
        write_video(out / name, frames, fps=8, upscale_factor=4, overwrite=True)
        ok = faithfulness(judge_frames(to_uint8_frames(frames)), prompt).matches
        rows.append((prompt, name, all(ok.values())))
    return rows


def _machine() -> str:
    """``"a 2-core CPU"`` or ``"an NVIDIA H100 ..."``: what this script runs on (the recipe's other steps ran there too)."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"an {torch.cuda.get_device_name(0)}"
    return f"a {os.cpu_count()}-core CPU"


def _step_times(run: Path) -> list[tuple[str, float | None, str]]:
    """``(step, seconds, note)`` from the recipe's markers in ``run/done/`` (``"<seconds> s [(note)]"``), in the
    order scripts/train_default_model.sh runs its steps; ``None`` seconds for a marker in another form (one made by hand to skip a step)."""
    import re

    recipe = (Path(__file__).parent / "train_default_model.sh").read_text()
    order = re.findall(r"^step (\w+)", recipe, flags=re.M)  # the step names, in the order the recipe runs them
    markers = sorted((f for f in (run / "done").glob("*") if f.is_file() and f.suffix != ".tmp" and f.name != "finalize"),
                     key=lambda f: (order.index(f.name) if f.name in order else len(order), f.name))
    steps = []
    for marker in markers:
        text = marker.read_text().strip()
        m = re.fullmatch(r"(\d+(?:\.\d+)?) s(?: \((.*)\))?", text, flags=re.S)
        steps.append((marker.name, float(m.group(1)), m.group(2) or "") if m else (marker.name, None, text))
    return steps


def _reports(args: argparse.Namespace) -> dict:
    """The VAE, ViCLIP and text-encoder reports for the card (the ViCLIP's Recall@K re-measured)."""
    if args.reports is not None:
        earlier = json.loads(args.reports.read_text())
        vae, text_encoder = earlier["vae"], earlier["text_encoder"]
    else:
        vae = json.loads((args.run / "vae" / "vae_report.json").read_text())
        text_encoder = json.loads((args.run / "base" / "text_encoder_report.json").read_text())
    trained = args.viclip.parent / "viclip_report.json"  # beside a freshly trained ViCLIP
    viclip = {**(json.loads(trained.read_text()) if trained.is_file() or args.reports is None else earlier["viclip"]),
              **_viclip_recall(args.viclip, args.viclip_config)}
    return {"vae": vae, "viclip": viclip, "text_encoder": text_encoder}


def main(argv: list[str] | None = None) -> int:
    from vidgen.errors import VidgenError
    from vidgen.pipelines.settings import load_job_config
    from vidgen.toyworld.suites import EvalConfig, format_table, run_toyworld_eval

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="exported model folder (vidgen export)")
    p.add_argument("--viclip", required=True, type=Path, help="the toy ViCLIP")
    p.add_argument("--run", required=True, type=Path, help="the training run folder (for its reports)")
    p.add_argument("--out", required=True, type=Path, help="where the default model goes (checkpoints/)")
    p.add_argument("--viclip-config", type=Path, default=Path("configs/toy/viclip.yaml"),
                   help="the ViCLIP's training config (its held-out eval set is re-measured)")
    p.add_argument("--n", type=int, default=120, help="eval prompts")
    p.add_argument("--fp16-tolerance", type=float, default=0.05, help="max frame difference fp16 storage may cause")
    p.add_argument("--reports", type=Path, help="take the VAE and text-encoder reports (and the ViCLIP's, when it has none "
                   "beside it) from this eval_summary.json: the shipped one, when a run retrained only some parts")
    args = p.parse_args(argv)
    started = time.monotonic()
    from vidgen.io.files import atomic_folder
    from vidgen.models.tokenizer import Vocabulary
    from vidgen.training.export import is_model_folder

    try:
        with atomic_folder(args.out, overwrite=True, replaceable=is_model_folder) as tmp:
            _fp16_copy(args.model, args.viclip, tmp)
            guidance = _guidance(args.model)
            diff = _max_frame_diff(args.model, tmp, EXAMPLES[:3], guidance)
            if diff > args.fp16_tolerance:
                raise VidgenError(f"fp16 storage changes sampled frames by {diff:.4f} > {args.fp16_tolerance}; not shipping it")
            report = run_toyworld_eval(load_job_config(EvalConfig, overrides={
                "model": str(tmp), "n": args.n, "out": str(args.run / "eval"), "overwrite": True}))
            examples = _examples(tmp, tmp / "examples", guidance)
            shutil.copy(args.run / "eval" / "contact_sheet.png", tmp / "examples" / "contact_sheet.png")
            reports = _reports(args)
            (tmp / "eval_summary.json").write_text(json.dumps({"fp16_max_frame_diff": diff, "eval": report.summary,
                                                               **reports}, indent=1))
            card = model_card(report.summary, format_table(report.summary), reports, diff, examples, guidance,
                              _step_times(args.run) + [("finalize", time.monotonic() - started, "this script, to here")],
                              _machine(), vocabulary=len(Vocabulary.from_folder(tmp / "tokenizer")))
            (tmp / "README.md").write_text(card)
    except VidgenError as exc:
        print(f"finalize_default_model: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def model_card(summary: dict, table: str, reports: dict, fp16_diff: float, examples: list[tuple[str, str, bool]],
               guidance: float, steps: list[tuple[str, float | None, str]], machine: str = "this machine",
               vocabulary: int | None = None) -> str:
    sep = reports["text_encoder"]["separation_before"], reports["text_encoder"]["separation_after"]
    pairs = ", ".join(f"{k} {sep[0][k]:.2f} -> {sep[1][k]:.2f}" for k in ("left/right", "up/down", "circle/square"))
    trim_note = [] if vocabulary is None else [
        f"- Text vocabulary trimmed to the {vocabulary} of CLIP's 49408 tokens that the toy world's words reach (every byte "
        "symbol stays, so any prompt tokenises; `vidgen.models.vocab_trim`): the toy captions give identical outputs, "
        "other words fall apart into characters, which the model knows nothing about either way. `viclip/` carries the "
        "same `vocab.json` + `merges.txt`."
    ]
    lines = [
        "# vidgen toy-world model (the shipped default)",
        "",
        "A small text-to-video latent diffusion model trained from scratch on vidgen's procedurally generated",
        "toy world: one coloured shape (circle, square, triangle; red, yellow, green, cyan, blue, magenta) moving",
        "left/right/up/down or staying still over a white, black or gray background, captioned in varied English.",
        "It exists so that `vidgen sample --prompt ...` works on a fresh machine with no downloads, and so that",
        "every part of vidgen has an honest, measurable end-to-end test. It knows nothing outside that world.",
        "",
        "## Parts",
        "",
        "- `unet/`: `UNetMotionModel` (SD-style U-Net with motion modules), 64-128-128 channels, v-prediction,",
        "  trained with `vidgen train` (configs/train/toy.yaml, 3600 steps of 16 clips) on cached latents",
        "  of 8-frame clips; the noise schedule has zero terminal SNR, the loss is plain v-MSE. Then a second",
        "  stage (configs/train/toy_shift.yaml, 1500 steps) on a schedule whose SNR is divided by 36 at every",
        "  step (`model.snr_shift=6`, stored as the scheduler's `trained_betas`), so that the motion is not",
        "  settled by the noise in the first two sampling steps, and with context frames (the first 1-2 latent",
        "  frames of 20% of the clips given clean and left out of the loss), so stories can continue a clip.",
        "  Then a third stage (configs/train/toy_order.yaml, runs of 1000 + 2000 + 1200 steps): clips noised to an SNR of at",
        "  most 0.01 are shown in reverse frame order half of the time while the target stays the clip as it is",
        "  (`train.reverse_prob=0.5`), so at those noise levels only the caption tells which way the object",
        "  moves; before it, the sampler's first steps took the direction from the noise (left/right was a coin",
        "  flip whatever the prompt said).",
        "- `vae/`: `AutoencoderKL`, 32x32 RGB frames <-> 8x8x4 latents (configs/toy/vae.yaml).",
        "- `text_encoder/` + `tokenizer/`: a `CLIPTextModel` (CLIP BPE, 32 tokens) started from the toy ViCLIP's",
        "  text tower and sharpened on the training captions (scripts/tune_text_encoder.py --separate): the",
        "  contrastive tower gave captions that differ only in direction nearly equal states, because the toy",
        "  ViCLIP's video tower barely sees frame order, and what the denoiser learns follows how far apart the",
        "  encoder puts such captions. Token-state distance between a caption and its attribute-swapped twin",
        f"  (relative to the state norm): {pairs}. Frozen during denoiser training.",
        "- `viclip/`: the toy ViCLIP (configs/toy/viclip_final.yaml), used by `vidgen score` and `vidgen eval` by default.",
        "  Its text tower is `text_encoder/` above, unchanged (frozen while the rest trained; only the text",
        "  projection learnt, starting from the first toy ViCLIP's); its video tower sees 2-frame tubelets and was",
        "  trained with time-reversed twins captioned with the opposite direction, so it scores the direction of",
        "  motion as well as colour, shape and background. (The first toy ViCLIP, whose text tower started the text",
        "  encoder, embedded a clip and the same clip played backwards almost identically.)",
        "- `sample_defaults.yaml`: 8 frames at 32x32, upscaled x4 for viewing, 8 fps; stories show the previous",
        "  clip's last frames clean (`story: {pin: clean}`), as the model learnt in the second stage, with one RePaint",
        "  resampling round per step (`story: {resample: 1}`; with DDIM; another scheduler turns it off); guidance only at",
        "  timesteps 200-1000 (`guidance_interval`): the last steps take the prompt alone, as guidance there rounds",
        "  squares' corners.",
        *trim_note,
        "- Weights stored in fp16 (loaded as fp32); the largest frame difference this causes on sampled clips is "
        f"{fp16_diff:.4f} (on a 0-1 scale).",
        "",
        "## Training data",
        "",
        "Toy-world clips written in InternVid's row format and run through the InternVid path:",
        "`vidgen data toyworld` -> `filter --min-aesthetic 4` -> `clips` -> `shard` -> `cache` -> `vidgen train`.",
        "Five attribute pairs are held out of training: (red, triangle), (green, circle), (blue, square),",
        "(circle, down), (square, left).",
        "",
        f"## Measured (vidgen eval --suite toyworld, {summary['all']['n']} prompts, half held-out combinations)",
        "",
        table,
        "",
        f"Toy ViCLIP on 100 held-out real clips: text->video Recall@1 {reports['viclip']['t2v_recall@1']:.2f}, "
        f"Recall@5 {reports['viclip']['t2v_recall@5']:.2f}; video->text Recall@1 {reports['viclip']['v2t_recall@1']:.2f}.",
        f"VAE: reconstruction PSNR {reports['vae']['psnr_db']:.1f} dB; the judge reads reconstructions the same as the "
        f"originals for colour {reports['vae']['judge_color']:.2f}, shape {reports['vae']['judge_shape']:.2f}, "
        f"motion {reports['vae']['judge_motion']:.2f}, background {reports['vae']['judge_background']:.2f}.",
        "",
        f"## Examples (seed = row index, the sample defaults: 25 DDIM steps, guidance {guidance:g})",
        "",
        "| prompt | clip | judge agrees |",
        "|---|---|---|",
    ]
    lines += [f"| {p} | ![{p}](examples/{n}) | {'yes' if ok else 'no'} |" for p, n, ok in examples]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        f"bash scripts/train_default_model.sh      # about {sum(t or 0 for _, t, _ in steps) / 3600:.1f} h on {machine}",
        "```",
        "",
        "Each step's time (the script writes them to `$RUN/done/`; steps an earlier run made say so):",
        "",
        "| step | minutes | note |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'?' if seconds is None else f'{seconds / 60:.1f}'} | {note} |" for name, seconds, note in steps]
    lines += [
        "",
        "History of these weights: the first stage was trained as the script does, except that the latent cache",
        "had been built with an earlier text encoder, so training encoded the captions on the fly",
        "(`data.cached_text=false`; the script's cache holds the same encoder's states), and the run was",
        "interrupted at step 2050 and resumed (`--resume latest`, exact). The second stage started from the",
        "first stage as shipped before (fp16-stored weights) and ran on a 1200-video toy world",
        "(configs/toy/world.yaml with `num_videos: 1200`, 6582 clips after the aesthetic filter) where the",
        "script uses the first stage's 3000-video cache; the third stage ran on that same 1200-video cache.",
        "The shipped ViCLIP was trained after the denoiser with the script's `viclip_final` step (it needs only the",
        "text encoder); the first toy ViCLIP, the scorer until then, gave generated clips a CLIPSIM ratio of",
        "0.933 (it did not see the direction of motion, nor shape as well).",
        "",
        "Licence: Apache-2.0, like vidgen. The training data is synthetic.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
