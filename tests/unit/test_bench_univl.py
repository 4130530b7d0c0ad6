"""The UniVL benchmark compares like with like: its official-style beam search and its chunked alignment
scoring give the same numbers as the model's own methods (no timing here; see benchmarks/univl.py)."""

from __future__ import annotations

import pytest
import torch

from backbones.univl import UniVL, UniVLConfig
from backbones.univl.generate import beam_search
from benchmarks.univl import CLS_ID, SEP_ID, official_decode_fn, random_batch

BEAM = 3


@pytest.fixture(scope="module")
def model_and_batch() -> tuple[UniVL, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = UniVLConfig.tiny()
    model = UniVL(cfg).eval()  # random weights; eval so dropout cannot make the two searches differ
    return model, random_batch(cfg, 4, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("encoders", [True, False], ids=["encoders+cross_per_step", "cross_per_step"])
def test_official_style_beam_search_equals_generate(model_and_batch, encoders: bool) -> None:
    model, b = model_and_batch
    inputs = (b["input_ids"], b["token_type_ids"], b["attention_mask"], b["video"], b["video_mask"])
    ours = model.generate(*inputs, beam_size=BEAM, bos_id=CLS_ID, eos_id=SEP_ID)
    decode = official_decode_fn(model, *inputs, beam_size=BEAM, encoders=encoders)
    official = beam_search(decode, b["input_ids"].shape[0], beam_size=BEAM, max_length=model.cfg.max_words,
                           bos_id=CLS_ID, eos_id=SEP_ID)
    assert len(ours.ids) == 4 and all(len(ids) > 0 for ids in ours.ids)
    assert official.ids == ours.ids
    torch.testing.assert_close(official.scores, ours.scores, rtol=0, atol=1e-5)


def test_official_decode_fn_recomputes_per_beam_row(model_and_batch) -> None:
    # Row r of the decode function belongs to video r // beam: its logits must be video 1's for rows 3..5.
    model, b = model_and_batch
    inputs = (b["input_ids"], b["token_type_ids"], b["attention_mask"], b["video"], b["video_mask"])
    decode = official_decode_fn(model, *inputs, beam_size=BEAM)
    prefix = torch.full((1, 1), CLS_ID)
    with torch.no_grad():
        rows = decode(torch.tensor([3, 4, 5]), prefix.expand(3, 1))
        text = model.encode_text(b["input_ids"][1:2], b["token_type_ids"][1:2], b["attention_mask"][1:2])
        video = model.encode_video(b["video"][1:2], b["video_mask"][1:2])
        cross = model.cross_encode(text, b["attention_mask"][1:2], video, b["video_mask"][1:2])
        direct = model.decode(cross.hidden, cross.mask, prefix, torch.ones_like(prefix))
    torch.testing.assert_close(rows, direct.expand(3, -1, -1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 5, 7])
def test_chunked_alignment_equals_unchunked(model_and_batch, chunk: int) -> None:
    model, _ = model_and_batch
    b = random_batch(model.cfg, 12, torch.Generator().manual_seed(1))
    with torch.no_grad():
        text = model.encode_text(b["input_ids"], b["token_type_ids"], b["attention_mask"])
        video = model.encode_video(b["video"], b["video_mask"])
        whole = model.alignment_similarity(text, b["attention_mask"], video, b["video_mask"], text_chunk=None)
        chunked = model.alignment_similarity(text, b["attention_mask"], video, b["video_mask"], text_chunk=chunk)
    assert whole.shape == (12, 12)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
