"""data.text: tokenizer loading and UniVL encoder/decoder inputs against the real bert-base-uncased vocab."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data.errors import MissingDataFileError
from data.text import BERT_UNCASED_SPECIALS, SpecialIds, TextEncoder, decoder_ids, encoder_ids, load_tokenizer

HELLO = "Hello World! A man is slicing tomatoes."
HELLO_IDS = [101, 7592, 2088, 999, 1037, 2158, 2003, 26514, 12851, 1012, 102]  # reference/environment.md §5


def test_real_vocab_encodes_the_reference_sentence(tokenizer) -> None:
    enc = TextEncoder(tokenizer, max_words=16)
    out = enc.encode(HELLO)
    assert out["input_ids"].tolist() == HELLO_IDS + [0] * 5
    assert out["attention_mask"].tolist() == [1] * 11 + [0] * 5
    assert out["token_type_ids"].tolist() == [0] * 16
    assert all(v.dtype == torch.int64 and v.shape == (16,) for v in out.values())


def test_special_ids_are_read_from_the_tokenizer(tokenizer) -> None:
    assert TextEncoder(tokenizer, 8).special == SpecialIds(0, 100, 101, 102, 103, 30522)


@pytest.mark.parametrize("max_words", [2, 3, 6, 11, 12])
def test_encoder_truncation_keeps_cls_and_sep(tokenizer, max_words: int) -> None:
    # Official: [CLS] + pieces cut to max_words - 1 tokens, then [SEP].
    out = TextEncoder(tokenizer, max_words).encode(HELLO)
    n = min(len(HELLO_IDS), max_words)
    expected = HELLO_IDS[: n - 1] + [102] + [0] * (max_words - n)
    assert out["input_ids"].tolist() == expected
    assert int(out["attention_mask"].sum()) == n


def test_empty_text_is_cls_sep(tokenizer) -> None:
    out = TextEncoder(tokenizer, 5).encode("")
    assert out["input_ids"].tolist() == [101, 102, 0, 0, 0]
    assert out["attention_mask"].tolist() == [1, 1, 0, 0, 0]


def test_decoder_inputs_shift_by_one_and_pad_with_zero(tokenizer) -> None:
    out = TextEncoder(tokenizer, 14).encode_caption(HELLO)
    pieces = HELLO_IDS[1:-1]
    assert out["input_caption_ids"].tolist() == [101] + pieces + [0] * 4
    assert out["output_caption_ids"].tolist() == pieces + [102] + [0] * 4
    assert out["decoder_mask"].tolist() == [1] * 10 + [0] * 4
    assert (out["output_caption_ids"] >= 0).all()  # 0, never -1: the official decoder loss counts PAD targets


def test_decoder_truncates_the_caption_to_max_words_minus_one(tokenizer) -> None:
    out = TextEncoder(tokenizer, 5).encode_caption(HELLO)
    pieces = HELLO_IDS[1:5]
    assert out["input_caption_ids"].tolist() == [101] + pieces
    assert out["output_caption_ids"].tolist() == pieces + [102]
    assert out["decoder_mask"].tolist() == [1] * 5


def test_uncased_and_word_pieces(tokenizer) -> None:
    enc = TextEncoder(tokenizer, 8)
    assert enc.pieces("HELLO hello") == [7592, 7592]
    assert 100 not in enc.pieces("unaffable")
    assert any(t.startswith("##") for t in tokenizer.convert_ids_to_tokens(enc.pieces("unaffable")))


def test_callable_tokenizer_uses_bert_specials() -> None:
    enc = TextEncoder(lambda text: [len(w) + 1000 for w in text.split()], 6)
    assert enc.special == BERT_UNCASED_SPECIALS
    assert enc.encode("ab c")["input_ids"].tolist() == [101, 1002, 1001, 102, 0, 0]


def test_pure_helpers_with_custom_specials() -> None:
    sp = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, vocab_size=10)
    assert encoder_ids([7, 8, 9], 4, sp)["input_ids"].tolist() == [2, 7, 8, 3]
    dec = decoder_ids([7], 4, sp)
    assert dec["input_caption_ids"].tolist() == [2, 7, 0, 0] and dec["output_caption_ids"].tolist() == [7, 3, 0, 0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_words"):
        encoder_ids([1], 1)
    with pytest.raises(TypeError, match="tokenizer"):
        TextEncoder(42, 8)  # type: ignore[arg-type]


def test_load_tokenizer_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingDataFileError, match=f"{tmp_path / 'absent'}: tokenizer folder not found"):
        load_tokenizer(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataFileError, match="empty: tokenizer folder has neither vocab.txt nor tokenizer.json"):
        load_tokenizer(tmp_path / "empty")
