"""Video question-answering accuracy (open-ended and multiple choice), over every test question.

Conventions (reference/violet.md §5, reference/datasets.md §4.4):

* ``pred`` holds predicted class ids (OE: the argmax over the answer vocabulary; MC: over the options) and
  ``answer`` the labels of the json. A label of **-1** marks an answer outside the vocabulary: it stays in the
  denominator and is always wrong (the field's convention: official MSVD-QA code, ClipBERT, VIOLET's test loop
  comparing argmax with the stored label).
* :func:`qa_accuracy` is the accuracy over all questions (the default we report).
* :func:`official_batch_mean` is what the MELTR/VIOLET test loop prints: the test loader has
  ``drop_last=True``, so the last partial batch is **dropped**, and the number is the mean of the per-batch
  accuracies. ``batch_size`` is the loader's batch (json value × GPUs under DataParallel); items are taken
  in the given order.
* Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["OOV_LABEL", "qa_accuracy", "official_batch_mean", "qa_metrics"]

#: Label of a question whose answer is not in the vocabulary.
OOV_LABEL = -1

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _as_ints(x: ArrayLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids (take the argmax of logits first), got {arr.dtype}")
    return arr.astype(np.int64)


def _pair(pred: ArrayLike, answer: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, a = _as_ints(pred, "pred"), _as_ints(answer, "answer")
    if p.shape != a.shape:
        raise ValueError(f"pred has {p.size} entries but answer has {a.size}")
    if (a < OOV_LABEL).any():
        raise ValueError(f"answer labels must be >= {OOV_LABEL} (-1 = out of vocabulary), got {int(a.min())}")
    return p, a


def qa_accuracy(pred: ArrayLike, answer: ArrayLike) -> float:
    """Fraction of questions with ``pred == answer``; -1 labels count and are always wrong.

    Args:
        pred: [N] predicted class ids.
        answer: [N] labels (-1 = out of vocabulary).
    """
    p, a = _pair(pred, answer)
    return float(np.mean((p == a) & (a != OOV_LABEL)))


def official_batch_mean(pred: ArrayLike, answer: ArrayLike, batch_size: int) -> float:
    """The MELTR/VIOLET test number: mean over full batches of each batch's accuracy (last partial batch dropped).

    Args:
        pred: [N] predicted class ids, in loader order.
        answer: [N] labels (-1 = out of vocabulary, always wrong).
        batch_size: Loader batch size.

    Raises:
        ValueError: ``N < batch_size`` (the official loop would have no batch).
    """
    p, a = _pair(pred, answer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_full = p.size // batch_size
    if n_full == 0:
        raise ValueError(f"{p.size} questions make no full batch of {batch_size} (drop_last leaves nothing)")
    hits = ((p == a) & (a != OOV_LABEL))[: n_full * batch_size].reshape(n_full, batch_size)
    return float(np.mean(hits.mean(axis=1)))


def qa_metrics(pred: ArrayLike, answer: ArrayLike, batch_size: int | None = None) -> dict[str, float]:
    """``acc`` (all questions), ``n``, ``n_oov`` and, with ``batch_size``, ``acc_official_batch_mean``."""
    p, a = _pair(pred, answer)
    out = {"acc": qa_accuracy(p, a), "n": float(p.size), "n_oov": float(np.sum(a == OOV_LABEL))}
    if batch_size is not None:
        out["acc_official_batch_mean"] = official_batch_mean(p, a, batch_size)
    return out
