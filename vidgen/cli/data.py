"""``vidgen data``: InternVid rows to subsets, clips, shards, interleaved items and latent caches."""

from __future__ import annotations

import argparse

from vidgen.cli.common import COUNT, POSITIVE, SEED, add_json_arg, emit, integer, number

HELP = "prepare data: filter, sample, download, clip, shard, cache"

DESCRIPTION = """\
Everything between InternVid's annotation files (.jsonl, .csv, .parquet; local,
compressed or fsspec URLs) and a training batch. Malformed rows are reported
with their line number and skipped (--strict stops at the first). Outputs are
written under a temporary name and renamed when complete; existing outputs are
kept unless --overwrite is given."""

EPILOG = """\
examples:
  vidgen data filter InternVid-10M-FLT.jsonl -o aes.jsonl --min-aesthetic 4
  vidgen data sample full.jsonl -o diverse.jsonl -n 10000000 --seed 42
  vidgen data filter diverse.jsonl -o flt.jsonl --umt-top 0.3
  vidgen data stats flt.jsonl --plot flt.png
  vidgen data download flt.jsonl -o videos/
  vidgen data clips flt.jsonl --sources videos/ -o clips/ --short-side 256 --fps 8 --workers 8
  vidgen data shard flt.jsonl --clips clips/ -o shards/ --max-size 1GB
  vidgen data interleave flt.jsonl -o icl.jsonl --drop 0.3
  accelerate launch -m vidgen data cache shards/ -o latents/ --model MODEL_DIR --frames 16 --size 256
  vidgen data toyworld -o toy/ num_videos=500 width=32 height=32   (a synthetic InternVid-shaped dataset)"""


def _rows_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rows", metavar="ROWS", help="InternVid rows: .jsonl, .csv or .parquet (optionally .gz; local or URL)")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed row instead of skipping it")


def _report_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")


def _overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _parser(sub: argparse._SubParsersAction, name: str, help: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    p.set_defaults(data_func=func)
    add_json_arg(p)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=main, data_func=None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")

    p = _parser(actions, "filter", "keep the rows that pass score, duration, caption and language thresholds", run_filter)
    _rows_args(p)
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output rows (.jsonl, .csv or .parquet)")
    p.add_argument("--min-aesthetic", type=number(), metavar="S", help="aesthetic score >= S (InternVid-Aes-18M: 4)")
    p.add_argument("--max-aesthetic", type=number(), metavar="S", help="aesthetic score <= S")
    p.add_argument("--min-umt", type=number(), metavar="S", help="UMT score >= S")
    p.add_argument("--max-umt", type=number(), metavar="S", help="UMT score <= S")
    p.add_argument("--umt-top", type=number(above=0, maximum=1), metavar="F", help="keep the top fraction F by UMT score (10M-FLT: 0.3)")
    p.add_argument("--min-duration", type=number(0), metavar="SEC", help="clip length >= SEC seconds")
    p.add_argument("--max-duration", type=number(0), metavar="SEC", help="clip length <= SEC seconds")
    p.add_argument("--min-caption-words", type=integer(0), metavar="N", help="caption of at least N words")
    p.add_argument("--max-caption-words", type=integer(0), metavar="N", help="caption of at most N words")
    p.add_argument("--language", action="append", default=[], metavar="LANG",
                   help="keep rows in this language (repeatable; rows without a language column are dropped)")
    _overwrite_arg(p)
    _report_arg(p)

    p = _parser(actions, "sample", "diversity-sample rows (weight 1 / clips per video, without replacement)", run_sample)
    _rows_args(p)
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output rows (.jsonl, .csv or .parquet)")
    p.add_argument("--count", "-n", required=True, type=integer(0), metavar="N", help="how many rows to keep")
    p.add_argument("--seed", type=SEED, default=42, help="random seed (default 42, as InternVid)")
    _overwrite_arg(p)
    _report_arg(p)

    p = _parser(actions, "stats", "count rows and histogram durations, scores and caption lengths", run_stats)
    _rows_args(p)
    p.add_argument("--plot", metavar="PNG", help="draw the histograms into this PNG")
    _report_arg(p)
    _overwrite_arg(p)

    p = _parser(actions, "clips", "cut the rows' clips from local source videos", run_clips)
    _rows_args(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--sources", metavar="DIR", help="folder of source videos named {YoutubeID}.*")
    where.add_argument("--source-map", metavar="FILE", help="mapping file: JSON {id: path}, or CSV/JSONL with youtube_id,path")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="clip folder ({YoutubeID}_{start}_{end}.mp4)")
    p.add_argument("--fps", type=POSITIVE, metavar="F", help="resample clips to F frames per second")
    p.add_argument("--short-side", type=integer(2), metavar="PX", help="resize so the shorter side is PX pixels")
    p.add_argument("--crf", type=integer(0, 51), default=18, metavar="N", help="x264 quality, lower is better (default 18)")
    p.add_argument("--workers", type=COUNT, default=1, metavar="N", help="parallel processes (default 1)")
    _overwrite_arg(p)
    _report_arg(p)

    p = _parser(actions, "download", "download the rows' source videos with yt-dlp, or write video2dataset's input", run_download)
    _rows_args(p)
    p.add_argument("--out", "-o", metavar="DIR", help="folder for {YoutubeID}.{ext} videos")
    p.add_argument("--video2dataset", metavar="FILE.parquet",
                   help="instead of downloading, write this input file for video2dataset (url, caption, clips)")
    p.add_argument("--yt-dlp", dest="yt_dlp", metavar="EXE", help="yt-dlp executable (default: yt-dlp on PATH)")
    p.add_argument("--format", metavar="F", help="yt-dlp format selector (default: video only, <= 720p)")
    p.add_argument("--workers", type=COUNT, default=4, metavar="N", help="downloads at a time (default 4)")
    p.add_argument("--timeout", type=POSITIVE, default=600.0, metavar="SEC", help="per-video time limit (default 600)")
    _overwrite_arg(p)
    _report_arg(p)

    p = _parser(actions, "shard", "pack clips into WebDataset tar shards (.mp4 + .txt + .json)", run_shard)
    _rows_args(p)
    p.add_argument("--clips", required=True, metavar="DIR", help="the clip folder written by 'vidgen data clips'")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="shard folder")
    p.add_argument("--max-size", default="1GB", metavar="SIZE", help="target shard size (default 1GB)")
    p.add_argument("--max-count", type=COUNT, default=100_000, metavar="N", help="at most N clips per shard")
    p.add_argument("--prefix", default="shard", help="shard file prefix (default shard)")
    p.add_argument("--no-verify", action="store_true", help="do not check that each clip decodes before packing it")
    _overwrite_arg(p)
    _report_arg(p)

    p = _parser(actions, "interleave", "build InternVid-ICL style interleaved video-text items", run_interleave)
    _rows_args(p)
    p.add_argument("--out", "-o", required=True, metavar="FILE.jsonl", help="items, one JSON list per line")
    p.add_argument("--variant", choices=("single", "asr", "concat"), default="single",
                   help="one video per item, with ASR transcripts, or two videos concatenated")
    p.add_argument("--drop", type=number(0, 1), default=0.3, metavar="P", help="clip drop probability (default 0.3)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    p.add_argument("--min-clips", type=COUNT, default=2, metavar="N", help="skip videos with fewer clips (default 2)")
    p.add_argument("--max-clips", type=COUNT, metavar="N", help="split longer videos into items of at most N clips")
    p.add_argument("--clip-dir", metavar="DIR", help="prefix the clip file names with this folder")
    _overwrite_arg(p)
    _report_arg(p)

    p = _parser(actions, "cache", "encode clips into VAE latents and text states once, per shard", run_cache)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="WebDataset shards (files, folders, globs, {a..b} patterns, URLs) or one clip folder")
    p.add_argument("--rows", metavar="FILE", help="with a clip folder: rows naming its clips and captions "
                   "(default: each clip's .txt sidecar)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="cache folder")
    p.add_argument("--model", metavar="DIR", help="pipeline folder with vae/, text_encoder/, tokenizer/")
    p.add_argument("--vae", metavar="DIR", help="VAE folder (AutoencoderKL)")
    p.add_argument("--text-encoder", metavar="DIR", help="text encoder folder (CLIPTextModel)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder")
    p.add_argument("--frames", type=COUNT, default=16, metavar="T", help="frames per clip (default 16)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--stride", type=COUNT, metavar="N", help="take every N-th frame (default 1)")
    rate.add_argument("--fps", type=POSITIVE, metavar="F", help="resample to F frames per second")
    p.add_argument("--size", default="256", metavar="HxW", help="frame size, one number for square (default 256)")
    p.add_argument("--resize", choices=("crop", "stretch"), default="crop", help="cover and crop, or stretch (default crop)")
    p.add_argument("--window", choices=("start", "center", "random"), default="start",
                   help="where the frames sit in a longer clip (default start)")
    p.add_argument("--clips-per-shard", type=COUNT, default=1000, metavar="N", help="with a clip folder: clips per cache shard")
    p.add_argument("--dtype", choices=("fp16", "fp32", "bf16"), default="fp16", help="storage precision (default fp16)")
    p.add_argument("--model-dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="encoder precision (default fp32)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: this process's accelerate device)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of random windows/crops (default 0)")
    _overwrite_arg(p)


    p = _parser(actions, "toyworld", "write a synthetic InternVid-shaped dataset of the toy world (videos + rows.jsonl)",
                run_toyworld)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="ToyWorldConfig YAML (repeatable)")
    p.add_argument("settings", nargs="*", metavar="key=value",
                   help="ToyWorldConfig fields: num_videos, min_clips, max_clips, min_frames, max_frames, width, height, "
                        "fps, continuous_fraction, degraded_fraction, split (train|held_out|all), layout (videos|clips), seed")
    p.add_argument("--workers", type=COUNT, metavar="N", help="videos encoded at once (default: CPU count, at most 4)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overwrite_arg(p)


# ---------------------------------------------------------------- helpers


def _write_report(path: str | None, data: dict) -> None:
    if path:
        import json

        from vidgen.io.files import atomic_write_text

        atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _finish(args: argparse.Namespace, report, lines: list[str]) -> None:
    """A data command's end: the report's summary line, its first malformed rows, then ``lines``; or, with
    ``--json``, the report as one JSON object."""
    rows = getattr(report, "rows", None)
    problems = []
    if rows is not None:
        problems = [f"  malformed row at line {line}: {reason}" for line, reason in rows.problems[:5]]
        if rows.bad > 5:
            problems.append(f"  ... {rows.bad - 5} more malformed rows (see the JSON report)")
    emit(args, report.to_dict(), [report.summary(), *problems, *lines])


def parse_hw(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"240x320"`` -> (240, 320) as (height, width).

    Raises:
        InputError: anything else.
    """
    from vidgen.errors import InputError

    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"size {text!r} must be N or HxW, e.g. 256 or 240x320") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise InputError(f"size {text!r} must be N or HxW with positive numbers")
    return values[0], values[1]


# ---------------------------------------------------------------- actions


def run_filter(args: argparse.Namespace) -> int:
    from vidgen.data.filters import FilterSpec, filter_file

    spec = FilterSpec(
        min_aesthetic=args.min_aesthetic, max_aesthetic=args.max_aesthetic, min_umt=args.min_umt, max_umt=args.max_umt,
        umt_top=args.umt_top, min_duration=args.min_duration, max_duration=args.max_duration,
        min_caption_words=args.min_caption_words, max_caption_words=args.max_caption_words, languages=tuple(args.language),
    )
    report = filter_file(args.rows, args.out, spec, strict=args.strict, overwrite=args.overwrite)
    _write_report(args.report, report.to_dict())
    _finish(args, report, [f"wrote {args.out}"])
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from vidgen.data.sampling import sample_file

    report = sample_file(args.rows, args.out, args.count, seed=args.seed, strict=args.strict, overwrite=args.overwrite)
    _write_report(args.report, report.to_dict())
    _finish(args, report, [f"wrote {args.out}"])
    return 0


def run_stats(args: argparse.Namespace) -> int:
    import json

    from vidgen.data.stats import file_stats, plot_stats
    from vidgen.io.files import atomic_write_text, check_output_path

    for path in (args.plot, args.report):
        if path:
            check_output_path(path, args.overwrite)  # fail before reading a large file
    if args.plot:
        from vidgen.extras import require

        require("matplotlib", "--plot", "data")  # before reading a large file
    stats = file_stats(args.rows, strict=args.strict)
    written = []
    if args.plot:
        written.append(plot_stats(stats, args.plot, overwrite=args.overwrite))
    if args.report:
        written.append(atomic_write_text(args.report, json.dumps(stats.to_dict(), indent=2) + "\n", overwrite=args.overwrite))
    _finish(args, stats, [f"wrote {path}" for path in written])
    return 0


def run_clips(args: argparse.Namespace) -> int:
    from vidgen.data.clips import ClipReport, SourceIndex, cut_clips
    from vidgen.data.readers import iter_rows

    sources = SourceIndex.from_folder(args.sources) if args.sources else SourceIndex.from_mapping(args.source_map)
    report = ClipReport()
    rows = iter_rows(args.rows, strict=args.strict, report=report.rows)
    cut_clips(rows, sources, args.out, fps=args.fps, short_side=args.short_side, crf=args.crf, workers=args.workers,
              overwrite=args.overwrite, report=report, report_path=args.report)
    _finish(args, report, [*(f"  failed {f['clip']}: {f['reason']}" for f in report.failed[:5]),
                           f"clips in {args.out}; report in {args.report or args.out + '/clips_report.json'}"])
    return 0


def run_download(args: argparse.Namespace) -> int:
    from vidgen.data.download import DEFAULT_FORMAT, DownloadReport, download_videos, write_video2dataset_input
    from vidgen.data.readers import RowReport, iter_rows
    from vidgen.errors import InputError

    if bool(args.out) == bool(args.video2dataset):
        raise InputError("give --out DIR (download with yt-dlp) or --video2dataset FILE.parquet, not both or neither")
    if args.video2dataset:
        rows_report = RowReport()
        count = write_video2dataset_input(iter_rows(args.rows, strict=args.strict, report=rows_report),
                                          args.video2dataset, overwrite=args.overwrite)
        command = (f"video2dataset --url_list={args.video2dataset} --input_format=parquet --url_col=url "
                   "--caption_col=caption --clip_col=clips --output_format=webdataset --output_folder=OUT "
                   "--save_additional_columns='[YoutubeID,Start_timestamp,End_timestamp,Aesthetic_Score,UMT_Score]'")
        emit(args, {"clips": count, "out": args.video2dataset, "malformed_rows": rows_report.bad, "next": command},
             [f"wrote {count} clips to {args.video2dataset} ({rows_report.bad} malformed rows skipped); run:", f"  {command}"])
        return 0
    report = DownloadReport()
    download_videos(iter_rows(args.rows, strict=args.strict, report=report.rows), args.out, executable=args.yt_dlp,
                    fmt=args.format or DEFAULT_FORMAT, workers=args.workers, timeout=args.timeout, report=report,
                    report_path=args.report)
    _finish(args, report, [f"  failed {f['youtube_id']}: {f['reason']}" for f in report.failed[:5]] + [f"videos in {args.out}"])
    return 0


def run_shard(args: argparse.Namespace) -> int:
    from vidgen.data.readers import iter_rows
    from vidgen.data.shards import ShardReport, write_shards

    report = ShardReport()
    write_shards(iter_rows(args.rows, strict=args.strict, report=report.rows), args.clips, args.out, prefix=args.prefix,
                 max_size=args.max_size, max_count=args.max_count, verify=not args.no_verify, overwrite=args.overwrite,
                 report=report)
    _write_report(args.report, report.to_dict())
    _finish(args, report, [*(f"  unreadable {bad['clip']}: {bad['reason']}" for bad in report.bad[:5]), f"shards in {args.out}"])
    return 0


def run_interleave(args: argparse.Namespace) -> int:
    from vidgen.data.interleave import InterleaveReport, build_items, write_items
    from vidgen.data.readers import iter_rows
    from vidgen.io.files import check_output_path

    check_output_path(args.out, args.overwrite)
    report = InterleaveReport()
    items = build_items(iter_rows(args.rows, strict=args.strict, report=report.rows), variant=args.variant, drop=args.drop,
                        seed=args.seed, min_clips=args.min_clips, max_clips=args.max_clips, clip_dir=args.clip_dir,
                        report=report)
    write_items(items, args.out, overwrite=args.overwrite)
    _write_report(args.report, report.to_dict())
    _finish(args, report, [f"wrote {args.out}"])
    return 0


def run_cache(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from vidgen.data.cache import build_cache, load_encoders, shards_from_folder, shards_from_urls
    from vidgen.data.frames import FramePolicy
    from vidgen.errors import InputError

    height, width = parse_hw(args.size)
    policy = FramePolicy(num_frames=args.frames, stride=args.stride, fps=args.fps, height=height, width=width,
                         resize=args.resize, crop="center", window=args.window)
    folder_input = len(args.inputs) == 1 and os.path.isdir(args.inputs[0]) and not any(
        name.endswith(".tar") for name in os.listdir(args.inputs[0]))
    if args.rows and not folder_input:
        raise InputError("--rows goes with a clip folder input, not with shards")
    shards = (shards_from_folder(args.inputs[0], args.rows, args.clips_per_shard) if folder_input
              else shards_from_urls(args.inputs))
    import torch
    from accelerate import PartialState

    # On a machine without CUDA, accelerate only forms a multi-process group (gloo) when told it runs on CPU.
    state = PartialState(cpu=args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()))
    device = str(state.device) if args.device == "auto" else args.device
    encoders = load_encoders(model=args.model, vae=args.vae, text_encoder=args.text_encoder, tokenizer=args.tokenizer,
                             device=device, dtype=args.model_dtype)
    report = build_cache(shards, encoders, args.out, policy=policy, store_dtype=args.dtype, seed=args.seed,
                         overwrite=args.overwrite, process_index=state.process_index, num_processes=state.num_processes)
    emit(args, {**dataclasses.asdict(report), "out": args.out}, report.summary())
    state.wait_for_everyone()
    return 0


def run_toyworld(args: argparse.Namespace) -> int:
    import dataclasses

    from vidgen.config import load_config
    from vidgen.toyworld import ToyWorldConfig, generate

    config = load_config(ToyWorldConfig, files=args.config, overrides=args.settings)
    done = generate(args.out, config, overwrite=args.overwrite, progress=not args.no_progress and not args.json,
                    workers=args.workers)
    emit(args, dataclasses.asdict(done),
         f"wrote {done.num_clips} clips ({done.num_degraded} degraded) from {done.num_videos} source videos in "
         f"{done.num_files} files, with their rows in {done.rows_path}, in {done.seconds:.1f} s")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.data_func is None:
        from vidgen.errors import InputError

        raise InputError("choose an action: filter, sample, stats, clips, download, shard, interleave, cache or toyworld "
                         "(vidgen data --help)")
    return int(args.data_func(args) or 0)
