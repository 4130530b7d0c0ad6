"""Decoder-state caching in beam search changes nothing: both decoding paths give the golden beams."""

from __future__ import annotations

import torch

from backbones.univl import UniVL, UniVLConfig
from tests.golden._univl import load_golden


def test_incremental_and_full_prefix_decoding_give_the_golden_beams() -> None:
    golden = load_golden()
    model = UniVL(UniVLConfig.tiny()).eval()
    model.load_state_dict(dict(golden["state_dict"]))
    i = golden["inputs"]
    args = (i["input_ids"], i["token_type_ids"], i["attention_mask"], i["video"], i["video_mask"])
    fast = model.generate(*args, incremental=True)
    full = model.generate(*args, incremental=False)
    assert fast.ids == full.ids == golden["outputs"]["beam5_hyp_ids"]
    torch.testing.assert_close(fast.scores, full.scores, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.scores, torch.as_tensor(golden["outputs"]["beam5_hyp_scores"], dtype=fast.scores.dtype), rtol=1e-6, atol=1e-5)


def test_incremental_decoding_handles_early_finished_instances() -> None:
    # A raised [SEP] bias makes one instance finish at the first step while the others run to the
    # end; the cache must follow the shrinking set of active rows.
    golden = load_golden()
    model = UniVL(UniVLConfig.tiny()).eval()
    model.load_state_dict(dict(golden["state_dict"]))
    with torch.no_grad():
        model.decoder.classifier.cls.predictions.bias[102] += 1.0
    i = golden["inputs"]
    args = (i["input_ids"], i["token_type_ids"], i["attention_mask"], i["video"], i["video_mask"])
    fast = model.generate(*args, beam_size=3, incremental=True)
    full = model.generate(*args, beam_size=3, incremental=False)
    assert fast.ids == full.ids
    assert len({len(x) for x in fast.ids}) > 1  # instances really finished at different steps
    torch.testing.assert_close(fast.scores, full.scores, rtol=1e-5, atol=1e-5)
