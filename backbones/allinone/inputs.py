"""The All-in-one training batch, as the MSRVTT loader produces it, and its checks.

Names differ from the official batch dict (``text_masks``, ``text_ids_mlm``, ``text_labels_mlm``,
``image = [video]``); the content is the same: captions padded to ``max_text_len``, HF-style MLM corruption
(labels -100 where not masked) and ``T`` already normalised frames per clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from torch import Tensor

__all__ = ["AllInOneBatch", "BATCH_KEYS", "check_batch"]


class AllInOneBatch(TypedDict):
    """One batch (B clips, T frames of H×W, L caption tokens).

    Attributes:
        video: ``[B, T, 3, H, W]`` float32 frames, already normalised (ImageNet mean/std).
        text_ids: ``[B, L]`` int64 ``[CLS] w… [SEP]`` then 0-padding.
        text_mask: ``[B, L]`` int64, 1 on real tokens.
        mlm_ids: ``[B, L]`` int64 ``text_ids`` after MLM corruption.
        mlm_labels: ``[B, L]`` int64 original id at corrupted positions, -100 elsewhere.
        index: ``[B]`` int64 sample index (used by data and evaluation, not by the model).
    """

    video: Tensor
    text_ids: Tensor
    text_mask: Tensor
    mlm_ids: Tensor
    mlm_labels: Tensor
    index: Tensor


BATCH_KEYS: tuple[str, ...] = tuple(AllInOneBatch.__annotations__)

_TEXT_KEYS = ("text_ids", "text_mask", "mlm_ids", "mlm_labels")


def check_batch(batch: Mapping[str, Any], max_text_len: int) -> None:
    """Checks the keys the model reads (all but ``index``); raises ``ValueError`` listing every problem."""
    problems = [f"missing {k!r}" for k in ("video",) + _TEXT_KEYS if k not in batch]
    present = {k: batch[k] for k in ("video",) + _TEXT_KEYS if k in batch}
    problems += [f"{k!r} is {type(v).__name__}, expected a tensor" for k, v in present.items() if not isinstance(v, Tensor)]
    tensors = {k: v for k, v in present.items() if isinstance(v, Tensor)}
    video = tensors.get("video")
    if video is not None and (video.dim() != 5 or not video.is_floating_point()):
        problems.append(f"'video' is {video.dtype} {tuple(video.shape)}, expected float [B, T, 3, H, W]")
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if k != "video"}
    for key, value in tensors.items():
        if key != "video" and (value.dim() != 2 or value.is_floating_point()):
            problems.append(f"{key!r} is {value.dtype} {tuple(value.shape)}, expected an integer [B, L] tensor")
    if len(set(shapes.values())) > 1:
        problems.append(f"text tensors disagree in shape: {shapes}")
    lengths = {s[1] for s in shapes.values() if len(s) == 2}
    if any(n > max_text_len for n in lengths):
        problems.append(f"text length {max(lengths)} exceeds max_text_len={max_text_len}")
    batch_sizes = {s[0] for s in shapes.values() if s} | ({video.shape[0]} if video is not None and video.dim() else set())
    if len(batch_sizes) > 1:
        problems.append(f"batch sizes disagree: {sorted(batch_sizes)}")
    if problems:
        raise ValueError("All-in-one batch: " + "; ".join(problems))
