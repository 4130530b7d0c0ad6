"""The UniVL training batch: 12 batch-first tensors, named as the official loaders' tuple.

The official loaders add a pair axis (``[B, 1, L]``, or ``[B, n_pair, L]`` in pre-training) that the
model flattens with ``view(-1, ...)``; our batches are already flat (``B`` = texts = videos), which is
what the model sees after that reshape. ``shared/fixtures/univl/golden.pt`` uses the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import torch
from torch import Tensor

__all__ = ["UniVLBatch", "BATCH_KEYS", "check_batch"]


class UniVLBatch(TypedDict):
    """One batch (B samples, L = max_words, F = max_frames, D = video_dim = 1024).

    Attributes:
        input_ids: ``[B, L]`` int64 ``[CLS] w… [SEP]`` then 0-padding (caption for retrieval, transcript
            for captioning).
        token_type_ids: ``[B, L]`` int64, all 0 (official ``segment_ids``).
        attention_mask: ``[B, L]`` int64, 1 on real tokens including [CLS]/[SEP].
        video: ``[B, F, D]`` float raw S3D features; padded frames are zeros.
        video_mask: ``[B, F]`` int64, 1 on valid frames.
        pairs_masked_text: ``[B, L]`` int64 ``input_ids`` after MLM corruption (80% [MASK] / 10% random / 10% kept).
        pairs_token_labels: ``[B, L]`` int64 original id at corrupted positions, -1 elsewhere.
        masked_video: ``[B, F, D]`` float ``video`` with the masked frames zeroed (raw space).
        video_labels_index: ``[B, F]`` int64 frame index at masked frames, -1 elsewhere.
        input_caption_ids: ``[B, L]`` int64 decoder input ``[CLS] c…``, 0-padded.
        decoder_mask: ``[B, L]`` int64, 1 on the decoder input tokens.
        output_caption_ids: ``[B, L]`` int64 decoder target ``c… [SEP]``, padded with 0 (not -1: the
            official loaders make [PAD] a target).
    """

    input_ids: Tensor
    token_type_ids: Tensor
    attention_mask: Tensor
    video: Tensor
    video_mask: Tensor
    pairs_masked_text: Tensor
    pairs_token_labels: Tensor
    masked_video: Tensor
    video_labels_index: Tensor
    input_caption_ids: Tensor
    decoder_mask: Tensor
    output_caption_ids: Tensor


BATCH_KEYS: tuple[str, ...] = tuple(UniVLBatch.__annotations__)

# key → kind: "text" ([B, L]), "caption" ([B, Lc]; Lc = L in every official loader, but nothing in the
# model requires it), "frames" ([B, F]) or "features" ([B, F, D]).
_LAYOUT: dict[str, str] = {
    "input_ids": "text", "token_type_ids": "text", "attention_mask": "text", "video": "features",
    "video_mask": "frames", "pairs_masked_text": "text", "pairs_token_labels": "text", "masked_video": "features",
    "video_labels_index": "frames", "input_caption_ids": "caption", "decoder_mask": "caption", "output_caption_ids": "caption",
}


def check_batch(batch: Mapping[str, Any], keys: tuple[str, ...] = BATCH_KEYS, video_dim: int | None = None) -> None:
    """Checks presence, rank and agreement of batch/length axes; raises ``ValueError`` listing every problem.

    Args:
        batch: the batch to check.
        keys: the keys that must be present (a model needs only those its active losses read).
        video_dim: expected feature size ``D``, or None to skip that check.
    """
    problems = [f"missing {k!r}" for k in keys if k not in batch]
    sizes: dict[str, dict[int, str]] = {"B": {}, "L": {}, "Lc": {}, "F": {}}
    for key in keys:
        value = batch.get(key)
        if not isinstance(value, torch.Tensor):
            if key in batch:
                problems.append(f"{key!r} is {type(value).__name__}, expected a tensor")
            continue
        kind = _LAYOUT[key]
        rank = 3 if kind == "features" else 2
        if value.dim() != rank:
            problems.append(f"{key!r} has shape {tuple(value.shape)}, expected rank {rank}")
            continue
        sizes["B"].setdefault(value.shape[0], key)
        sizes[{"text": "L", "caption": "Lc"}.get(kind, "F")].setdefault(value.shape[1], key)
        if kind == "features" and video_dim is not None and value.shape[2] != video_dim:
            problems.append(f"{key!r} has feature size {value.shape[2]}, expected video_dim={video_dim}")
        if kind != "features" and value.is_floating_point():
            problems.append(f"{key!r} is {value.dtype}, expected an integer tensor")
    problems += [f"{axis} disagrees across keys: {seen}" for axis, seen in sizes.items() if len(seen) > 1]
    if problems:
        raise ValueError("UniVL batch: " + "; ".join(problems))
