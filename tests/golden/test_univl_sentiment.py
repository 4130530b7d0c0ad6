"""UniVL's CMU-MOSI additions: the sentiment loss is L1 (or MSE) of predict_sentiment, the head and the
visual projection learn from it, and official checkpoints leave both at init (reported)."""

from __future__ import annotations

import pytest
import torch

from backbones.univl import UniVL, UniVLConfig
from backbones.univl.config import KNOWN_LOSSES
from backbones.univl.pretrained import load_official
from tests.golden._univl import load_golden


def _batch(width: int, b: int = 4, length: int = 12, frames: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(104, 500, (b, length), generator=g)
    ids[:, 0] = 101
    labels = torch.full((b, length), -1)
    labels[:, 2] = ids[:, 2]
    frames_idx = torch.full((b, frames), -1)
    frames_idx[:, 1] = 1
    return {
        "input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids),
        "video": torch.randn(b, frames, width, generator=g), "video_mask": torch.ones(b, frames, dtype=torch.long),
        "pairs_masked_text": ids.clone(), "pairs_token_labels": labels, "masked_video": torch.randn(b, frames, width, generator=g),
        "video_labels_index": frames_idx, "input_caption_ids": ids, "decoder_mask": torch.ones_like(ids), "output_caption_ids": ids,
        "label": torch.tensor([-3.0, -0.5, 0.0, 2.4])[:b],
    }


@pytest.mark.parametrize("loss,width", [("l1", 1024), ("mse", 20)])
def test_sentiment_loss_is_the_regression_error_of_predict_sentiment(loss: str, width: int) -> None:
    model = UniVL(UniVLConfig.tiny(task="sentiment", losses=KNOWN_LOSSES, sentiment_loss=loss, visual_input_dim=width)).eval()
    batch = _batch(width)
    out = model(batch)
    assert tuple(out) == KNOWN_LOSSES and model.target_loss == "sentiment"
    pred = model.predict_sentiment(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["video"], batch["video_mask"])
    err = pred - batch["label"]
    torch.testing.assert_close(out["sentiment"], err.abs().mean() if loss == "l1" else err.square().mean())
    out["sentiment"].backward()
    assert model.sentiment_head.weight.grad.abs().sum() > 0
    assert (model.visual_projection is None) == (width == 1024)
    if model.visual_projection is not None:
        assert model.visual_projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="label"):
        model({k: v for k, v in batch.items() if k != "label"})


def test_official_checkpoint_leaves_our_modules_at_init_and_reports_them() -> None:
    model = UniVL(UniVLConfig.tiny(task="sentiment", losses=KNOWN_LOSSES, visual_input_dim=20))
    report = load_official(model, load_golden()["state_dict"])
    assert set(report.left_at_init) == {"sentiment_head.weight", "sentiment_head.bias", "visual_projection.weight", "visual_projection.bias"}
    assert report.ignored == []
    # the pretrained visual embedding is used unchanged behind the projection
    torch.testing.assert_close(model.visual.embeddings.word_embeddings.weight, load_golden()["state_dict"]["visual.embeddings.word_embeddings.weight"])
