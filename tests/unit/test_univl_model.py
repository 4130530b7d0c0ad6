"""UniVL on tiny configs: any loss subset on random batches, the documented deviations, config errors and the
config's plain-dict round trip. (The loss contract, gradients and MELTR's derivatives are checked for every
backbone in ``tests/contract``.)"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from backbones.common.losses import masked_cross_entropy, masked_frame_nce_loss
from backbones.univl import LOSS_NAMES, UniVL, UniVLConfig
from meltr import config as meltr_config
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
    """``meltr.config.to_dict`` / ``from_dict`` (strict) store the config in checkpoints: nested BertConfigs,
    tuples and Literals come back equal, through ``torch.save`` with ``weights_only`` loading."""
    cfg = UniVLConfig.tiny(task="caption", losses=("mlm", "decoder"), sentiment_loss="mse")
    cfg = cfg.replace(cross=dataclasses.replace(cfg.cross, attention="explicit"))
    plain = meltr_config.to_dict(cfg)
    loaded = torch.load(_save(plain), weights_only=True)  # what a checkpoint stores
    assert meltr_config.from_dict(loaded, UniVLConfig) == cfg
    with pytest.raises(ValueError, match="text.hidden_sise"):
        meltr_config.from_dict({**plain, "text": {**plain["text"], "hidden_sise": 8}}, UniVLConfig)


def _tower(vocab: int, positions: int, attention: str = "sdpa") -> dict[str, Any]:
    return {"vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": positions, "type_vocab_size": 2,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "attention": attention}


# Written by the hand-made UniVLConfig.to_dict that meltr.config.to_dict replaced (run on the config of
# test_config_round_trips_through_a_plain_dict): checkpoints hold this form.
OLD_TO_DICT = {
    "text": _tower(512, 64), "visual": _tower(1024, 64), "cross": _tower(32, 128, "explicit"), "decoder": _tower(512, 64),
    "video_dim": 1024, "max_words": 12, "max_frames": 10, "margin": 0.1, "task": "caption", "losses": ["mlm", "decoder"],
    "layout": "auto", "target_loss": "decoder", "visual_input_dim": 0, "sentiment_loss": "mse",
}


def test_a_config_dict_of_the_old_to_dict_still_loads() -> None:
    cfg = UniVLConfig.tiny(task="caption", losses=("mlm", "decoder"), sentiment_loss="mse")
    cfg = cfg.replace(cross=dataclasses.replace(cfg.cross, attention="explicit"))
    assert meltr_config.from_dict(OLD_TO_DICT, UniVLConfig) == cfg


def _save(obj: object) -> Any:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer
