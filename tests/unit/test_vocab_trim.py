"""Trimmed vocabularies: the corpus tokenises as before, model folders shrink and give the same outputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vidgen.errors import InputError, ModelLoadError, OutputError
from vidgen.models.tokenizer import EOT_TOKEN, CLIPBPETokenizer, Vocabulary, hf_clip_tokenizer

CORPUS = ["a red circle slides to the left", "the small cobalt box rises over a plain gray background",
          "video of a turquoise triangular shape not moving", "Hello, world! 42 cafés"]


@pytest.fixture(scope="module")
def clip() -> Vocabulary:
    return Vocabulary.clip()


@pytest.fixture(scope="module")
def small(clip) -> Vocabulary:
    return clip.trimmed(CORPUS)


def _as_clip_ids(ids: torch.Tensor, vocabulary: Vocabulary, clip: Vocabulary) -> torch.Tensor:
    return torch.tensor(vocabulary.ids_in(clip))[ids]


def test_trimmed_vocabulary_tokenises_the_corpus_as_clip_does(clip, small):
    full, trimmed = CLIPBPETokenizer(32), CLIPBPETokenizer(32, vocabulary=small)
    assert 512 + 2 < len(small) < 700  # bytes (with and without end of word), specials, the corpus's merges
    assert torch.equal(_as_clip_ids(trimmed(CORPUS), small, clip), full(CORPUS))
    # Ids follow CLIP's order: byte symbols keep 0-511 (padding with 0 is "!"), the end token is the largest id.
    assert small.tokens[:512] == clip.tokens[:512] and small.tokens[-1] == EOT_TOKEN
    # transformers' tokenizer over the trimmed files agrees too.
    hf = hf_clip_tokenizer(32, pad_token="!", vocabulary=small)
    ids = hf(CORPUS[:3], padding="max_length", max_length=32, return_tensors="pt").input_ids
    assert torch.equal(_as_clip_ids(ids, small, clip), full(CORPUS[:3]))


def test_words_outside_the_corpus_fall_apart_but_round_trip(small):
    tok = CLIPBPETokenizer(32, vocabulary=small)
    ids = tok.encode("a purple giraffe")
    assert len(ids) > 3  # "purple" and "giraffe" are not in the corpus: smaller pieces
    assert tok.decode(ids) == "a purple giraffe"


def test_vocabulary_files_round_trip_and_bad_files(small, tmp_path):
    small.save(tmp_path / "v")
    assert Vocabulary.from_folder(tmp_path / "v") == small
    with pytest.raises(OutputError):
        small.save(tmp_path / "v")  # never overwritten silently
    hf_clip_tokenizer(32, vocabulary=small).save_pretrained(str(tmp_path / "hf"))
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / "hf" / name).unlink(missing_ok=True)
    assert Vocabulary.from_folder(tmp_path / "hf") == small  # read from tokenizer.json
    assert Vocabulary.from_folder(tmp_path) is None
    (tmp_path / "v" / "merges.txt").unlink()
    with pytest.raises(ModelLoadError, match="come together"):
        Vocabulary.from_folder(tmp_path / "v")
    small.save(tmp_path / "w")
    (tmp_path / "w" / "vocab.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="unreadable tokenizer files"):
        Vocabulary.from_folder(tmp_path / "w")
    with pytest.raises(InputError, match="merges"):
        Vocabulary(small.tokens[:600] + (small.tokens[-2], small.tokens[-1]), small.merges)


@pytest.fixture(scope="module")
def trimmed_folder(tiny_motion_model, tmp_path_factory):
    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import save_viclip
    from vidgen.models.vocab_trim import trim_model_folder

    root = tmp_path_factory.mktemp("trim")
    src = root / "full"
    shutil.copytree(tiny_motion_model, src)
    torch.manual_seed(0)
    save_viclip(ViCLIP(get_config("tiny")).eval(), src / "viclip")
    report = trim_model_folder(src, root / "small", CORPUS)
    return src, root / "small", report


def test_trimmed_model_folder_gives_the_same_text_states(trimmed_folder):
    from vidgen.metrics.clipsim import ViCLIPScorer
    from vidgen.models.viclip_io import load_viclip
    from vidgen.pipelines.loading import load_pipeline

    src, dst, report = trimmed_folder
    assert report["tokens_before"] == 49408 and report["tokens_after"] < 700
    assert report["bytes_after"] < report["bytes_before"]
    a, b = load_pipeline(src), load_pipeline(dst)
    assert b.text_encoder.config.vocab_size == report["tokens_after"]
    torch.testing.assert_close(b.encode_prompt(CORPUS, torch.device("cpu")), a.encode_prompt(CORPUS, torch.device("cpu")),
                               rtol=0, atol=0)
    full, small = load_viclip(src / "viclip"), load_viclip(dst / "viclip")
    assert full.vocabulary is None and len(small.vocabulary) == report["tokens_after"]
    torch.testing.assert_close(ViCLIPScorer(small)._encode_texts(CORPUS), ViCLIPScorer(full)._encode_texts(CORPUS),
                               rtol=0, atol=0)
    assert json.loads((dst / "viclip" / "config.json").read_text())["vocab_size"] == report["tokens_after"]


def test_trim_refuses_what_it_would_lose(trimmed_folder, tmp_path):
    from vidgen.models.viclip_io import load_viclip
    from vidgen.models.vocab_trim import trim_model_folder

    src, dst, _ = trimmed_folder
    with pytest.raises(OutputError):
        trim_model_folder(src, dst, CORPUS)  # exists, no overwrite
    with pytest.raises(InputError):
        trim_model_folder(src, src, CORPUS, overwrite=True)
    with pytest.raises(InputError):
        trim_model_folder(src, tmp_path / "x", [" "])
    with pytest.raises(InputError, match="must be strings"):
        trim_model_folder(src, tmp_path / "x", ["a", 3])
    with pytest.raises(InputError, match="apart from it"):
        trim_model_folder(src, src / "inside", CORPUS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError):
        trim_model_folder(tmp_path / "empty", tmp_path / "y", CORPUS)  # not a model folder
    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(OutputError):
        trim_model_folder(src, other, CORPUS, overwrite=True)  # never replaces a folder that is not a model of ours
    assert (other / "config.json").is_file()
    # A ViCLIP folder whose tokenizer files disagree with its table is refused at load.
    bad = tmp_path / "bad"
    shutil.copytree(dst / "viclip", bad)
    Vocabulary.clip().trimmed(["one word"]).save(bad, overwrite=True)
    with pytest.raises(ModelLoadError, match="tokens"):
        load_viclip(bad)


def test_trimmed_viclip_loads_from_its_weights_file_and_is_refused_without_its_vocabulary(trimmed_folder, tmp_path):
    from transformers import CLIPTextModel

    from vidgen.models.viclip import ViCLIP, get_config
    from vidgen.models.viclip_io import load_viclip, save_viclip

    _, dst, report = trimmed_folder
    assert len(load_viclip(dst / "viclip" / "model.safetensors").vocabulary) == report["tokens_after"]
    bare = tmp_path / "bare"
    shutil.copytree(dst / "viclip", bare)
    for name in ("vocab.json", "merges.txt"):
        (bare / name).unlink()
    with pytest.raises(ModelLoadError, match="no vocab.json"):
        load_viclip(bare)
    # Saving a full-vocabulary model over a trimmed one leaves no stale tokenizer files behind.
    save_viclip(ViCLIP(get_config("tiny")), bare, overwrite=True)
    assert load_viclip(bare).vocabulary is None and not (bare / "vocab.json").exists()
    # The text encoder's padding id follows its token (the tiny encoder pads with the end token).
    text_encoder = CLIPTextModel.from_pretrained(str(dst / "text_encoder"))
    assert text_encoder.config.pad_token_id == text_encoder.config.eos_token_id == report["tokens_after"] - 1


def test_a_base_folder_from_a_trimmed_viclip_keeps_its_vocabulary(trimmed_folder, tmp_path):
    from transformers import CLIPTextModel, CLIPTokenizer

    from vidgen.models.assemble import write_base_folder
    from vidgen.models.viclip_io import load_viclip

    _, dst, _ = trimmed_folder
    out = write_base_folder(dst / "vae", dst / "viclip", tmp_path / "base")
    viclip = load_viclip(dst / "viclip")
    assert Vocabulary.from_folder(out / "tokenizer") == viclip.vocabulary
    # (With "!" as its pad token, transformers' tokenizer reads a "!" in a text as padding: the last text has one.)
    ids = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))(CORPUS[:3], padding="max_length", max_length=32,
                                                                 return_tensors="pt").input_ids
    torch.testing.assert_close(ids, viclip.tokenizer()(CORPUS[:3]))
    text_encoder = CLIPTextModel.from_pretrained(str(out / "text_encoder"))
    index = viclip.vocabulary.encoder
    assert (text_encoder.config.bos_token_id, text_encoder.config.eos_token_id) == (index["<|startoftext|>"], index[EOT_TOKEN])
