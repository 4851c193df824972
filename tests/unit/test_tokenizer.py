"""CLIPBPETokenizer: fixed CLIP ids, parity with transformers' CLIPTokenizer, CLIP's cleaning and truncation."""

from __future__ import annotations

import random

import pytest
import torch

from vidgen.errors import InputError
from vidgen.models.tokenizer import EOT_ID, SOT_ID, VOCAB_SIZE, CLIPBPETokenizer, hf_clip_tokenizer


@pytest.fixture(scope="module")
def tok() -> CLIPBPETokenizer:
    return CLIPBPETokenizer(context_length=32)


@pytest.fixture(scope="module")
def hf_tok():
    return hf_clip_tokenizer(model_max_length=32)


# Ids as OpenAI CLIP's tokenizer gives them (start 49406, end 49407).
KNOWN_IDS = {
    "a red circle moves left": [49406, 320, 736, 7117, 6880, 1823, 49407],
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "Hello, world!": [49406, 3306, 267, 1002, 256, 49407],
}


@pytest.mark.parametrize("text", sorted(KNOWN_IDS))
def test_known_clip_ids(tok, text):
    row = tok(text)[0]
    expected = KNOWN_IDS[text]
    assert row[: len(expected)].tolist() == expected
    assert row[len(expected) :].eq(0).all()  # zero padding, as CLIP pads
    assert row.dtype == torch.long and row.shape == (32,)


def test_vocabulary_and_special_ids(tok):
    assert tok.vocab_size == VOCAB_SIZE
    assert (tok.sot_id, tok.eot_id) == (SOT_ID, EOT_ID)
    # the special strings inside a text are the special tokens, as in CLIP
    assert tok.encode("<|startoftext|>") == [SOT_ID]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    """Text the two tokenizers must agree on: no HTML entities, curly quotes or other text ftfy would repair."""
    rng = random.Random(seed)
    words = ("a", "red", "circle", "moves", "left", "The", "QUICK", "brown", "fox's", "don't", "we'll", "they're",
             "I'm", "you've", "he'd", "isn't", "slides", "to", "the", "right", "on", "white", "background", "3d",
             "2023", "x264", "café", "naïve", "Zürich", "über", "東京", "日本語", "кошка", "Ελλάδα", "🙂", "🚀🚀",
             "e-mail", "co-op", "U.S.A.", "#hashtag", "@user", "50%", "$100", "...", "?!", "--", "(left)", "[x]",
             "½", "²", "Ⅷ", "ﬁsh".replace("ﬁ", "fi"), "mother-in-law", "it's", "O'Neil", "'quoted'", "a/b", "1,000")
    seps = (" ", "  ", "\t", "\n", ", ", " - ", "")
    texts = []
    for _ in range(n):
        k = rng.randint(1, 14)
        texts.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(k)))
    return texts


def test_parity_with_transformers_clip_tokenizer(tok, hf_tok):
    captions = [
        "a screen shot of heroes of the storm with people in action",
        "A man is playing guitar on stage while the crowd cheers",
        "  leading and trailing   spaces\tand\nnew lines  ",
        "numbers 12345 and 3.14 and 1/2",
        "what's up? it'll be fine; they'd say so!!!",
    ]
    texts = captions + _random_texts(300)
    for text in texts:
        ours = tok.token_rows(text)[0]
        theirs = hf_tok(text, truncation=True, max_length=32)["input_ids"]
        assert ours == theirs, text


def test_long_text_truncated_with_end_token_in_last_slot(tok, hf_tok):
    text = " ".join(["word"] * 50 + ["tail"])
    row = tok(text)[0]
    assert row[0].item() == SOT_ID and row[-1].item() == EOT_ID
    assert (row != 0).all()
    assert tok.token_rows(text)[0] == hf_tok(text, truncation=True, max_length=32)["input_ids"]
    # argmax finds the end token, which is what ViCLIP pools at
    assert row.argmax().item() == 31
    with pytest.raises(InputError, match="context length is 32"):
        tok(text, truncate=False)


def test_clip_cleaning_ftfy_and_html(tok):
    # ftfy uncurls quotes (so the contraction splits as in plain ASCII), HTML entities are unescaped twice
    assert tok.encode("a cat\u2019s toy") == tok.encode("a cat's toy")
    assert tok.encode("fish &amp;amp; chips") == tok.encode("fish & chips")
    assert tok.encode("\uff21\uff22\uff23") == tok.encode("abc")  # full-width letters
    assert tok.encode("MiXeD   Case\n\ntext") == tok.encode("mixed case text")


def test_decode_round_trip(tok):
    assert tok.decode(tok(["a red circle moves left"])[0].tolist()) == "a red circle moves left"


def test_context_length_and_batch(tok):
    batch = tok(["one", "two words", "three little words"], context_length=8)
    assert batch.shape == (3, 8)
    assert batch[:, 0].eq(SOT_ID).all()
    with pytest.raises(InputError):
        CLIPBPETokenizer(context_length=1)
    with pytest.raises(InputError):
        tok.encode(None)  # type: ignore[arg-type]


def test_hf_tokenizer_zero_padding_option():
    hf = hf_clip_tokenizer(32, pad_token="!")
    ids = hf("a red circle", padding="max_length", max_length=32)["input_ids"]
    assert ids[:5] == [SOT_ID, 320, 736, 7117, EOT_ID] and set(ids[5:]) == {0}
