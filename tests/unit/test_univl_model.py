"""UniVL on tiny configs: any loss subset on random batches, the documented deviations, config errors and the
config's plain-dict round trip. (The loss contract, gradients and MELTR's derivatives are checked for every
backbone in ``tests/contract``.)"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backbones.common.losses import masked_cross_entropy, masked_frame_nce_loss
from backbones.univl import LOSS_NAMES, UniVL, UniVLConfig
from meltr.interface import check_losses
from tests.golden._univl import random_batch


@pytest.mark.parametrize("losses", [("joint",), ("alignment", "decoder"), ("mlm", "mfm", "m_decoder"), LOSS_NAMES])
def test_subsets_on_random_batches(losses: tuple[str, ...]) -> None:
    """Any subset returns exactly itself, on a batch of another size with random lengths, in train mode."""
    target = "alignment" if "alignment" in losses else losses[0]
    cfg = UniVLConfig.tiny(losses=losses, target_loss=target)
    model = UniVL(cfg).train()
    out = model(random_batch(cfg, batch_size=3, seed=len(losses)))
    assert tuple(out) == losses and model.target_loss == target
    check_losses(model, out)


def test_losses_without_targets_are_zero_not_nan() -> None:
    """Documented deviation: the official mean over zero targets is NaN; ours is 0 (with a graph)."""
    logits = torch.randn(2, 5, 7, requires_grad=True)
    ce = masked_cross_entropy(logits, torch.full((2, 5), -1))
    assert ce.item() == 0.0 and ce.requires_grad
    pred = torch.randn(2, 3, 4, requires_grad=True)
    nce = masked_frame_nce_loss(pred, torch.randn(2, 3, 4), torch.ones(2, 3), torch.full((2, 3), -1))
    assert nce.item() == 0.0 and nce.requires_grad


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="unknown"):
        UniVLConfig.tiny(losses=("joint", "itm"))
    with pytest.raises(ValueError, match="order"):
        UniVLConfig.tiny(losses=("alignment", "joint"))
    with pytest.raises(ValueError, match="target_loss"):
        UniVLConfig.tiny(losses=("joint",))  # retrieval's target is alignment
    with pytest.raises(ValueError, match="task"):
        UniVLConfig.tiny(task="qa")
    with pytest.raises(ValueError, match="max_words"):
        UniVLConfig.tiny(max_words=100)


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = UniVLConfig.tiny(task="caption", losses=("mlm", "decoder"))
    plain = cfg.to_dict()
    loaded = torch.load(_save(plain), weights_only=True)  # what a checkpoint stores
    assert UniVLConfig.from_dict(loaded) == cfg
    with pytest.raises(ValueError, match="text.hidden_sise"):
        UniVLConfig.from_dict({**plain, "text": {**plain["text"], "hidden_sise": 8}})


def _save(obj: object) -> Any:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer
