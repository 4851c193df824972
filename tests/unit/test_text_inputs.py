"""Every text file vidgen reads takes a UTF-8 byte-order mark, and refuses other encodings with the file and byte offset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidgen.errors import DataError, InputError, TextEncodingError, VidgenError
from vidgen.io.text import decode_text, read_text

CAPTIONS = ["a red circle moves left", "a café sign slides right"]  # é: Latin-1 writes it as one byte, 0xE9


def _prompts(path: Path):
    from vidgen.pipelines.sample import read_prompts_file

    return read_prompts_file(path)


def _script(path: Path):
    from vidgen.pipelines.story import read_script

    return [s.caption for s in read_script(path)]


def _caption_lines(path: Path):
    from vidgen.metrics.inputs import read_text_lines

    return read_text_lines(path)


def _pairs(path: Path):
    from vidgen.metrics.inputs import read_pairs

    return [(item.video.name, item.caption) for item in read_pairs(path)]


def _mapping(path: Path):
    from vidgen.data.clips import SourceIndex

    return {vid: p.name for vid, p in SourceIndex.from_mapping(path).paths.items()}


def _items(path: Path):
    from vidgen.data.interleave import read_items

    return list(read_items(path))


def _config(path: Path):
    from vidgen.config import load_config
    from vidgen.pipelines.sample import SampleConfig

    return load_config(SampleConfig, files=[path]).prompts


def _sidecar(path: Path):
    from vidgen.data.datasets import folder_items

    (path.parent / "clip.mp4").write_bytes(b"")  # only listed, never decoded
    return [caption for _, _, caption in folder_items(path.parent)[0]]


def _story_doc(path: Path):
    from vidgen.metrics.story import read_story_doc

    return read_story_doc(path.parent)


READERS = {
    "prompts .txt": ("prompts.txt", "\n".join(CAPTIONS) + "\n", _prompts),
    "prompts .jsonl": ("prompts.jsonl", "".join(json.dumps({"prompt": c}, ensure_ascii=False) + "\n" for c in CAPTIONS), _prompts),
    "story script .txt": ("script.txt", "\n".join(CAPTIONS) + "\n", _script),
    "story script .jsonl": ("script.jsonl", "".join(json.dumps({"caption": c}, ensure_ascii=False) + "\n" for c in CAPTIONS), _script),
    "captions .txt": ("captions.txt", "\n".join(CAPTIONS) + "\n", _caption_lines),
    "pairs .csv": ("pairs.csv", "video,caption\n" + "".join(f"v{i}.mp4,{c}\n" for i, c in enumerate(CAPTIONS)), _pairs),
    "pairs .jsonl": ("pairs.jsonl", "".join(json.dumps({"video": f"v{i}.mp4", "caption": c}, ensure_ascii=False) + "\n"
                                            for i, c in enumerate(CAPTIONS)), _pairs),
    "source mapping .csv": ("map.csv", "youtube_id,path\nAAAAAAAAAAA,café.mp4\n", _mapping),
    "source mapping .json": ("map.json", '{"AAAAAAAAAAA": "café.mp4"}', _mapping),
    "interleaved items": ("items.jsonl", json.dumps([{"text": CAPTIONS[1]}, {"video": "v.mp4"}], ensure_ascii=False) + "\n", _items),
    "config file": ("sample.yaml", f"prompts:\n- {CAPTIONS[1]}\n", _config),
    "caption sidecar": ("clip.txt", CAPTIONS[1] + "\n", _sidecar),
    "story document": ("story.jsonl", json.dumps([{"text": CAPTIONS[1]}, {"video": "clip_000.mp4", "start": 0, "end": 1}],
                                                  ensure_ascii=False) + "\n", _story_doc),
}


@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
def test_every_text_input_takes_a_byte_order_mark(tmp_path, reader):
    name, text, read = READERS[reader]
    for folder, data in (("plain", text.encode()), ("bom", b"\xef\xbb\xbf" + text.encode())):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(data)
    assert read(tmp_path / "bom" / name) == read(tmp_path / "plain" / name)


@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
def test_every_text_input_not_in_utf8_names_the_file_and_the_byte(tmp_path, reader):
    name, text, read = READERS[reader]
    data = text.encode("latin-1")
    (tmp_path / name).write_bytes(data)
    with pytest.raises(VidgenError) as caught:
        read(tmp_path / name)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "not UTF-8" in message, message
    assert str(tmp_path / name) in message and f"byte offset {data.index(0xE9)}" in message, message


def test_decoding_errors_are_both_input_and_data_errors(tmp_path):
    data = b"\xef\xbb\xbfa\nb\xff"
    with pytest.raises(TextEncodingError, match=rf"'x.txt' is not UTF-8 text: cannot decode byte 0xff at byte offset {data.index(0xFF)} \(line 2\)"):
        decode_text(data, "x.txt")  # the offset counts the mark: it is a byte of the file
    assert issubclass(TextEncodingError, InputError) and issubclass(TextEncodingError, DataError)
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfkept")
    assert read_text(tmp_path / "t.txt") == "\ufeffkept"  # only the leading mark is an encoding signature
