"""Killed jobs run again and full or read-only disks: the same command completes only what is missing, finished
outputs stay as they are, and a failed write leaves nothing under a final name and ends in one line."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.disk_faults import FullDisk, read_only
from vidgen.cli.main import main
from vidgen.errors import OutputError

TINY = ["--frames", "3", "--height", "16", "--width", "16", "--steps", "2", "--no-progress"]


def files(folder) -> dict[str, bytes | dict]:
    """Every file under ``folder`` by relative path (hidden temporaries included), with its bytes; a video's
    settings as read, less the path it names (the folders compared differ)."""
    found = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            found[str(p.relative_to(folder))] = p.read_bytes()
            if p.suffix == ".yaml":
                found[str(p.relative_to(folder))] = {k: v for k, v in yaml.safe_load(p.read_text()).items() if k != "out"}
    return found


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"vidgen {command}: error: "), err
    return err


# ------------------------------------------------------------------ vidgen sample


def sample(model, out, *extra):
    prompts = ["a red circle slides left", "a blue square moves up", "a green triangle"]
    return main(["sample", "--model", str(model), *[a for p in prompts for a in ("--prompt", p)], "--out", str(out),
                 *TINY, *map(str, extra)])


def test_sample_rerun_after_a_kill_finishes_only_the_missing_videos(tiny_motion_model, tmp_path, capsys):
    assert sample(tiny_motion_model, tmp_path / "whole") == 0
    whole = files(tmp_path / "whole")
    assert len(whole) == 6
    out = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", out)
    # What a kill leaves: video 1 renamed into place but not its settings, video 2 not written, a temporary.
    (out / "001-a-blue-square-moves-up-s0.yaml").unlink()
    for suffix in (".mp4", ".yaml"):
        (out / f"002-a-green-triangle-s0{suffix}").unlink()
    (out / ".002-a-green-triangle-s0.x1y2z3w4.tmp.mp4").write_bytes(b"half a video")
    first = (out / "000-a-red-circle-slides-left-s0.mp4").stat()
    capsys.readouterr()

    assert sample(tiny_motion_model, out) == 0  # the same command, no --overwrite
    printed = capsys.readouterr().out
    assert "1 of 3 videos already in" in printed and printed.count("wrote ") == 2
    assert files(out) == whole  # byte-identical to the uninterrupted run, and no temporaries left
    again = (out / "000-a-red-circle-slides-left-s0.mp4").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # the finished one untouched

    assert sample(tiny_motion_model, out) == 0  # all done: nothing is rendered
    assert "3 of 3 videos already in" in capsys.readouterr().out and files(out) == whole
    assert sample(tiny_motion_model, out, "--steps", 3) == 2  # another command's videos are not taken as its own
    assert "made with other settings (sampling.steps 2 -> 3)" in one_error_line(capsys, "sample")


def test_sample_killed_between_video_and_settings_is_redone(tiny_motion_model, tmp_path, monkeypatch, capsys):
    """The video and its .yaml appear together: a kill between them leaves a video the next run redoes."""
    renames = []
    real_replace = os.replace

    def killed_after_the_first_rename(src, dst):
        renames.append(dst)
        real_replace(src, dst)
        if len(renames) == 1:
            raise KeyboardInterrupt  # stands in for SIGKILL right after the first file went into place

    monkeypatch.setattr(os, "replace", killed_after_the_first_rename)
    out = tmp_path / "v"
    assert sample(tiny_motion_model, out) == 130
    monkeypatch.setattr(os, "replace", real_replace)
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 1  # one half of the first video's pair
    assert sample(tiny_motion_model, out) == 0
    assert len(list(out.glob("*.mp4"))) == len(list(out.glob("*.yaml"))) == 3
    assert sample(tiny_motion_model, tmp_path / "whole") == 0
    assert files(out) == files(tmp_path / "whole")


def test_sample_on_a_full_disk_leaves_nothing_and_says_so(tiny_motion_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "disk" / "v.mp4"
    out.parent.mkdir()
    FullDisk(out.parent, free=500, scratch=tmp_path).install(monkeypatch)
    rc = main(["sample", "--model", str(tiny_motion_model), "--prompt", "a red circle", "--out", str(out), *TINY])
    err = one_error_line(capsys, "sample")
    assert rc == 2 and str(out) in err and "No space left on device" in err
    assert os.listdir(out.parent) == []  # no truncated video under its name, no temporaries
    monkeypatch.undo()  # space freed: the same command now succeeds without --overwrite
    assert main(["sample", "--model", str(tiny_motion_model), "--prompt", "a red circle", "--out", str(out), *TINY]) == 0
    assert sorted(os.listdir(out.parent)) == ["v.mp4", "v.yaml"]


def test_sample_disk_full_at_a_settings_file_leaves_no_video_without_it(tiny_motion_model, tmp_path, monkeypatch, capsys):
    assert sample(tiny_motion_model, tmp_path / "whole") == 0
    whole = files(tmp_path / "whole")
    names = sorted(whole)
    # Room for the first video and its settings and for the second video, not for the second settings file.
    free = sum((tmp_path / "whole" / n).stat().st_size for n in names[:3]) + 10
    out = tmp_path / "disk"
    out.mkdir()
    FullDisk(out, free=free, scratch=tmp_path).install(monkeypatch)
    assert sample(tiny_motion_model, out) == 2
    err = one_error_line(capsys, "sample")
    assert str(out / names[2]) in err and "No space left on device" in err
    assert files(out) == {n: whole[n] for n in names[:2]}  # the finished pair only: no video without its settings
    monkeypatch.undo()
    assert sample(tiny_motion_model, out) == 0
    assert files(out) == whole


def test_a_million_prompts_plan_by_one_listing(tmp_path):
    """Planning reads the output folder once (the old plan looked up every file: 98 s for 1M prompts)."""
    from vidgen.config import to_yaml
    from vidgen.pipelines.sample import SampleConfig, plan_jobs

    n = 200_000
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a red circle number {i}\n" for i in range(n)))
    out = tmp_path / "out"
    out.mkdir()
    last = f"{n - 1:03d}-a-red-circle-number-{n - 1}-s0"
    (out / f"{last}.mp4").write_bytes(b"video")
    (out / f"{last}.yaml").write_text(to_yaml(SampleConfig(prompts_file=str(prompts), out=str(out))))
    (out / "000-a-red-circle-number-0-s0.mp4").write_bytes(b"a video whose settings were never written")
    jobs = plan_jobs(SampleConfig(prompts_file=str(prompts), out=str(out)))
    assert len(jobs) == n and [j.index for j in jobs if j.done] == [n - 1]
    assert jobs[-1].path == out / f"{last}.mp4" and len({j.name for j in jobs}) == n
    assert not any(j.done for j in plan_jobs(SampleConfig(prompts_file=str(prompts), out=str(out), overwrite=True)))
    (out / "001-a-red-circle-number-1-s0.yaml").mkdir()
    with pytest.raises(OutputError, match="001-a-red-circle-number-1-s0.yaml' is a folder"):
        plan_jobs(SampleConfig(prompts_file=str(prompts), out=str(out)))


# ------------------------------------------------------------------ vidgen data shard


@pytest.fixture
def rows_and_clips(tmp_path):
    """Five rows in a .jsonl and their clips (12 counter frames each)."""
    import json

    from tests.conftest import make_counter_video
    from vidgen.data.rows import parse_row

    clips = tmp_path / "clips"
    clips.mkdir()
    records = [{"YoutubeID": "AAAAAAAAAAA", "Start_timestamp": float(2 * i), "End_timestamp": float(2 * i + 1),
                "Caption": f"caption {i}"} for i in range(5)]
    for record in records:
        make_counter_video(clips / parse_row(record).clip_name, num_frames=12, fps=10.0, size=(32, 24))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in records))
    return rows, clips


def shard_members(folder) -> dict[str, dict[str, bytes]]:
    """Each shard's members by name with their bytes (tar headers carry the time they were written)."""
    import tarfile

    members = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members[shard.name] = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    return members


def shard(rows, clips, out):
    return main(["data", "shard", str(rows), "--clips", str(clips), "--out", str(out), "--max-count", "2"])


def test_shard_rerun_after_a_kill_keeps_finished_shards_and_writes_the_rest(rows_and_clips, tmp_path, monkeypatch, capsys):
    import json

    rows, clips = rows_and_clips
    assert shard(rows, clips, tmp_path / "whole") == 0
    out = tmp_path / "killed"
    real_replace = os.replace
    placed = []

    def killed_after_the_second_shard(src, dst):
        real_replace(src, dst)
        placed.append(os.path.basename(dst))
        if placed[-1] == "shard-000001.tar":
            raise KeyboardInterrupt  # stands in for SIGKILL between the shard and its index entry

    monkeypatch.setattr(os, "replace", killed_after_the_second_shard)
    assert shard(rows, clips, out) == 130
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(os.listdir(out)) == ["shard-000000.tar", "shard-000001.tar", "shards.json"]
    first = (out / "shard-000000.tar").stat()
    capsys.readouterr()

    assert shard(rows, clips, out) == 0  # the same command, no --overwrite
    assert "(1 already written, kept)" in capsys.readouterr().out
    assert shard_members(out) == shard_members(tmp_path / "whole")
    again = (out / "shard-000000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    index, whole = (json.loads((d / "shards.json").read_text()) for d in (out, tmp_path / "whole"))
    assert [s["samples"] for s in index["shards"]] == [s["samples"] for s in whole["shards"]] == [2, 2, 1]
    assert index["complete"] and index["samples"] == 5
    assert shard(rows, clips, out) == 0 and shard_members(out) == shard_members(tmp_path / "whole")  # nothing left to do
    assert main(["data", "shard", str(rows), "--clips", str(clips), "--out", str(out), "--max-count", "3"]) == 2
    assert "written with other settings (max_count 2 -> 3)" in capsys.readouterr().err


def test_shard_on_a_full_disk_keeps_whole_shards_only(rows_and_clips, tmp_path, monkeypatch, capsys):
    rows, clips = rows_and_clips
    assert shard(rows, clips, tmp_path / "whole") == 0
    sizes = [(tmp_path / "whole" / f"shard-00000{i}.tar").stat().st_size for i in range(2)]
    out = tmp_path / "disk"
    out.mkdir()
    FullDisk(out, free=sizes[0] + sizes[1] // 2, scratch=tmp_path).install(monkeypatch)  # the second shard does not fit
    assert shard(rows, clips, out) == 2
    err = one_error_line(capsys, "data")
    assert str(out / "shard-000001.tar") in err and "No space left on device" in err
    assert sorted(os.listdir(out)) == ["shard-000000.tar", "shards.json"]  # the finished shard and its entry
    monkeypatch.undo()
    assert shard(rows, clips, out) == 0
    assert shard_members(out) == shard_members(tmp_path / "whole")


# ------------------------------------------------------------------ vidgen data cache


@pytest.fixture
def cache_inputs(tiny_motion_model, rows_and_clips, tmp_path):
    """Two shards of two and one clips, the cache units for them, the tiny model's encoders and a frame policy."""
    from vidgen.data.cache import load_encoders, shards_from_urls
    from vidgen.data.frames import FramePolicy
    from vidgen.data.readers import iter_rows
    from vidgen.data.shards import write_shards

    rows, clips = rows_and_clips
    write_shards(list(iter_rows(rows))[:3], clips, tmp_path / "shards", max_count=2, verify=False)
    policy = FramePolicy(num_frames=4, stride=2, height=16, width=16, window="start")
    return shards_from_urls(tmp_path / "shards"), load_encoders(model=tiny_motion_model), policy


def cached(folder) -> dict[str, object]:
    """A cache folder's files: indexes as text, tensor files as their metadata and tensors (the order of the
    metadata in a file's header varies from run to run)."""
    from safetensors import safe_open

    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                found[path.name] = (f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()})
        else:
            found[path.name] = path.read_bytes()
    return found


def test_cache_rerun_after_a_kill_between_tensors_and_index(cache_inputs, tmp_path, monkeypatch):
    from vidgen.data.cache import build_cache

    units, encoders, policy = cache_inputs
    build_cache(units, encoders, tmp_path / "whole", policy=policy)
    out = tmp_path / "killed"
    real_replace = os.replace

    def killed_after_the_second_tensors(src, dst):
        real_replace(src, dst)
        if os.path.basename(dst) == "shard-000001.safetensors":
            raise KeyboardInterrupt  # stands in for SIGKILL before the index was written

    monkeypatch.setattr(os, "replace", killed_after_the_second_tensors)
    with pytest.raises(KeyboardInterrupt):
        build_cache(units, encoders, out, policy=policy)
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(os.listdir(out)) == ["shard-000000.json", "shard-000000.safetensors", "shard-000001.safetensors"]
    (out / ".shard-000001.k3j9x0ab.tmp.json").write_text("{")  # what a kill while writing the index leaves
    first = (out / "shard-000000.safetensors").stat()

    report = build_cache(units, encoders, out, policy=policy)  # the same command, no --overwrite
    assert (report.shards_existing, report.shards_done) == (1, 1)
    assert cached(out) == cached(tmp_path / "whole")  # identical tensors and indexes, no temporaries
    again = (out / "shard-000000.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_cache_on_a_full_disk_keeps_whole_shards_only(cache_inputs, tmp_path, monkeypatch):
    from vidgen.data.cache import build_cache

    units, encoders, policy = cache_inputs
    build_cache(units, encoders, tmp_path / "whole", policy=policy)
    first = sum((tmp_path / "whole" / f"shard-000000.{ext}").stat().st_size for ext in ("safetensors", "json"))
    out = tmp_path / "disk"
    out.mkdir()
    FullDisk(out, free=first + 100, scratch=tmp_path).install(monkeypatch)
    with pytest.raises(OutputError, match=r"cannot write '.*shard-000001\.safetensors': No space left on device"):
        build_cache(units, encoders, out, policy=policy)
    assert sorted(os.listdir(out)) == ["shard-000000.json", "shard-000000.safetensors"]
    monkeypatch.undo()
    build_cache(units, encoders, out, policy=policy)
    assert cached(out) == cached(tmp_path / "whole")


# ------------------------------------------------------------------ vidgen story


def story(model, out, *extra):
    return main(["story", "--model", str(model), "--prompt", "a red circle moves right", "--prompt", "a red circle moves up",
                 "--frames-per-clip", "4", "--overlap", "2", "--steps", "2", "--out", str(out),
                 "sampling.height=16", "sampling.width=16", *extra])


def test_story_rerun_after_a_kill_finishes_it_and_a_finished_one_is_left_alone(tiny_motion_model, tmp_path, capsys):
    assert story(tiny_motion_model, tmp_path / "whole") == 0
    whole = files(tmp_path / "whole")
    out = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", out)
    # What a kill while the files were moved into place leaves: the last ones still in the temporary folder.
    left = out / ".story.k3j9x0ab.tmp"
    left.mkdir()
    for name in ("story.html", "settings.json"):
        os.replace(out / name, left / name)
    capsys.readouterr()
    assert story(tiny_motion_model, out) == 0  # the same command, no --overwrite
    assert files(out) == whole  # byte-identical (same seeds), and the temporary folder is gone

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert story(tiny_motion_model, out) == 0  # finished: nothing to do, nothing rewritten
    assert "already complete" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert story(tiny_motion_model, out, "--steps", "3") == 2  # another story: still needs --overwrite
    assert "exists (pass --overwrite" in one_error_line(capsys, "story")


def test_story_on_a_full_disk_leaves_nothing(tiny_motion_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "disk"
    out.mkdir()
    FullDisk(out, free=2000, scratch=tmp_path).install(monkeypatch)
    assert story(tiny_motion_model, out) == 2
    err = one_error_line(capsys, "story")
    assert "No space left on device" in err and str(out) in err
    assert os.listdir(out) == []


# ------------------------------------------------------------------ vidgen train


def test_train_read_only_output_dir_is_one_error_before_any_model_loads(tiny_motion_model, tmp_path, monkeypatch):
    from tests.train_helpers import ClipTensors, collate, tiny_config
    from vidgen.training import loop

    def no_models(*args, **kwargs):
        raise AssertionError("the models were loaded before the output folder was checked")

    monkeypatch.setattr("vidgen.training.models.load_training_models", no_models)
    for run in (tmp_path / "ro", tmp_path / "ro" / "new-run"):  # an existing folder, and one to make inside it
        (tmp_path / "ro").mkdir(exist_ok=True)
        with monkeypatch.context() as m:
            read_only(m, tmp_path / "ro")
            with pytest.raises(OutputError, match=rf"'{run}'.*Read-only file system"):
                loop.train(tiny_config(tiny_motion_model, run, "train.max_steps=1"), dataset=ClipTensors(), collate_fn=collate)
    assert os.listdir(tmp_path / "ro") == []


def test_train_checkpoint_on_a_full_disk_is_one_error_and_leaves_no_checkpoint(tiny_motion_model, tmp_path, monkeypatch):
    from tests.train_helpers import ClipTensors, collate, tiny_config
    from vidgen.training.checkpoint import list_checkpoints
    from vidgen.training.loop import train

    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_config(tiny_motion_model, run, "train.max_steps=2")
    with monkeypatch.context() as m:
        FullDisk(run, free=20_000, scratch=tmp_path).install(m)  # the config and metrics fit, the weights do not
        with pytest.raises(OutputError, match=r"cannot write '.*checkpoint-000002': No space left on device"):
            train(cfg, dataset=ClipTensors(), collate_fn=collate)
    assert list_checkpoints(run) == [] and not [p for p in os.listdir(run) if p.startswith(".")]
    assert train(cfg, dataset=ClipTensors(), collate_fn=collate).state.step == 2  # with room again, it runs


# ------------------------------------------------------------------ vidgen data clips, vidgen export


def test_clips_rerun_clears_what_a_killed_run_was_writing(tmp_path):
    from tests.conftest import make_counter_video
    from vidgen.data.clips import SourceIndex, cut_clips
    from vidgen.data.rows import parse_row

    sources = tmp_path / "videos"
    sources.mkdir()
    make_counter_video(sources / "AAAAAAAAAAA.mp4", num_frames=30, fps=10.0)
    rows = [parse_row({"YoutubeID": "AAAAAAAAAAA", "Start_timestamp": float(s), "End_timestamp": float(s + 1),
                       "Caption": "x"}) for s in (0, 1)]
    out = tmp_path / "clips"
    out.mkdir()
    (out / rows[0].clip_name).write_bytes(b"a clip a run before finished")
    # What a SIGKILL in the middle of the second clip leaves: its temporary, named as atomic writes name them.
    stem = rows[1].clip_name[: -len(".mp4")]
    Path(tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp.mp4", dir=out)[1]).write_bytes(b"half a clip")
    report = cut_clips(rows, SourceIndex.from_folder(sources), out)
    assert (report.existing, report.done) == (1, 1)
    assert sorted(os.listdir(out)) == sorted([rows[0].clip_name, rows[1].clip_name, "clips_report.json"])
    assert (out / rows[0].clip_name).read_bytes() == b"a clip a run before finished"


def test_export_rerun_clears_what_a_killed_export_left(tiny_motion_model, tmp_path, capsys):
    from tests.train_helpers import ClipTensors, collate, tiny_config
    from vidgen.training.loop import train

    train(tiny_config(tiny_motion_model, tmp_path / "run", "train.max_steps=1"), dataset=ClipTensors(), collate_fn=collate)
    exports = tmp_path / "exports"
    exports.mkdir()
    # A kill mid-export leaves the half-written folders under the names atomic writes give them.
    for name in ("model", "adapter"):
        (Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=exports)) / "unet").mkdir()
    assert main(["export", str(tmp_path / "run"), "--out", str(exports / "model")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(exports / "adapter"), "--format", "motion-adapter"]) == 0
    assert sorted(os.listdir(exports)) == ["adapter", "model"]
    # A kill while --overwrite swapped folders: the previous export, set aside, goes back under its name.
    aside = Path(tempfile.mkdtemp(prefix=".model.", suffix=".old", dir=exports))
    os.replace(exports / "model", aside / "old")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--out", str(exports / "model")]) == 2
    assert "exists (pass --overwrite" in one_error_line(capsys, "export")
    assert sorted(os.listdir(exports)) == ["adapter", "model"] and (exports / "model" / "model_index.json").is_file()
