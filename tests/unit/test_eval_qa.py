"""evaluation/qa.py against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.qa import official_batch_mean, qa_accuracy, qa_metrics


def test_accuracy_counts_oov_as_wrong() -> None:
    pred = [1, 2, 0, 3, 4]
    answer = [1, 2, 0, -1, 0]  # hits 1, 2, 0; the OOV question is in the denominator
    assert qa_accuracy(pred, answer) == pytest.approx(3 / 5)
    # a model that "predicts" -1 never scores on OOV questions either
    assert qa_accuracy([-1, -1], [-1, 1]) == 0.0
    assert qa_accuracy(torch.tensor([0, 1, 1]), np.array([0, 1, 2])) == pytest.approx(2 / 3)


def test_official_batch_mean_drops_the_last_partial_batch() -> None:
    pred = [0, 0, 0, 1, 1, 1, 2, 2]
    answer = [0, 9, 9, 1, 1, 9, 2, 2]  # batch 3: [1/3, 2/3], the partial [2, 2] (both right) is dropped
    assert official_batch_mean(pred, answer, 3) == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert qa_accuracy(pred, answer) == pytest.approx(5 / 8)
    assert official_batch_mean(pred, answer, 4) == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert official_batch_mean(pred, answer, 1) == pytest.approx(qa_accuracy(pred, answer))


def test_metrics_dict() -> None:
    out = qa_metrics([1, 0, 0, 2], [1, -1, 0, 0], batch_size=3)
    assert out == pytest.approx({"acc": 0.5, "n": 4.0, "n_oov": 1.0, "acc_official_batch_mean": 2 / 3})
    assert set(qa_metrics([1], [1])) == {"acc", "n", "n_oov"}


@pytest.mark.parametrize("pred,answer,bs,err,match", [
    ([1, 2], [1], None, ValueError, "2 entries but answer has 1"),
    ([0.5, 1.0], [0, 1], None, TypeError, "integer class ids"),
    ([], [], None, ValueError, "non-empty"),
    ([1], [-2], None, ValueError, ">= -1"),
    ([1, 2], [1, 2], 3, ValueError, "no full batch of 3"),
])
def test_errors(pred, answer, bs, err, match) -> None:
    with pytest.raises(err, match=match):
        if bs is None:
            qa_accuracy(pred, answer)
        else:
            official_batch_mean(pred, answer, bs)
