"""Masked-language and masked-frame corruption, as the official UniVL / MELTR loaders do it.

Facts followed (reference/univl.md §5.6, §4.6; MELTR's univl loaders):

* Text: every token except the first ([CLS]) and the last real one ([SEP]) is chosen independently with
  probability ``prob`` (0.15). A chosen token becomes [MASK] with probability 0.8, a token drawn uniformly
  from the *whole* vocabulary (specials included, as the official ``random.choice(vocab)``) with 0.1, and
  stays unchanged with 0.1. Labels hold the original id at chosen positions and -1 elsewhere, padding
  included.
* Frames: every valid frame is chosen with probability ``prob`` and zeroed in the raw feature space (before
  the model's LayerNorm). ``video_labels_index`` holds the frame index at chosen frames and -1 elsewhere.
* MELTR's fine-tuning loaders re-draw the whole mask of a sample until at least one token (resp. frame) is
  chosen. That is rejection sampling, so it is reproduced here by re-drawing the rows with nothing chosen,
  which gives the same conditional distribution. A text with nothing maskable (``[CLS][SEP]``) and a video
  without valid frames are left alone instead of looping forever. (MELTR's MSRVTT loaders also give up
  after one draw when the text has a single word piece; we force that case too, as YouCook2's does.)
* The official *test* loaders mask at 0.15 without forcing: pass ``at_least_one=False``.

All randomness comes from the ``torch.Generator`` passed in, so a (seed, sample) pair always gives the same
mask whatever the worker or process layout.
"""

from __future__ import annotations

import torch
from torch import Tensor

from data.text import BERT_UNCASED_SPECIALS, SpecialIds

__all__ = ["mask_tokens", "mask_frames", "IGNORE_INDEX"]

#: Label of positions that are not predicted (the official ``-1``).
IGNORE_INDEX = -1
_MASK_SHARE = 0.8  # of chosen tokens → [MASK]
_RANDOM_SHARE = 0.1  # of chosen tokens → random id; the remaining 0.1 are kept


def _check_prob(prob: float, at_least_one: bool) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"mask probability must be in [0, 1], got {prob}")
    if at_least_one and prob == 0.0:
        raise ValueError("at_least_one=True needs a mask probability > 0 (it would re-draw forever)")


def _choose(eligible: Tensor, prob: float, at_least_one: bool, generator: torch.Generator) -> Tensor:
    """Bernoulli(prob) over ``eligible`` [N, T], re-drawing rows with nothing chosen if asked.

    Returns:
        Boolean [N, T], a subset of ``eligible``.
    """
    chosen = (torch.rand(eligible.shape, generator=generator) < prob) & eligible
    if at_least_one:
        # Rows that could be masked but were not: re-draw them whole, like the official while-loop.
        redo = eligible.any(-1) & ~chosen.any(-1)
        while bool(redo.any()):
            rows = redo.nonzero().squeeze(-1)
            draw = torch.rand((rows.numel(), eligible.shape[-1]), generator=generator) < prob
            chosen[rows] = draw & eligible[rows]
            redo = eligible.any(-1) & ~chosen.any(-1)
    return chosen


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, *, generator: torch.Generator, prob: float = 0.15,
                special: SpecialIds = BERT_UNCASED_SPECIALS, at_least_one: bool = True) -> tuple[Tensor, Tensor]:
    """MLM corruption of ``[CLS] ... [SEP]`` texts.

    Args:
        input_ids: [L] or [N, L] int64, ``[CLS] pieces [SEP]`` followed by padding.
        attention_mask: Same shape, 1 on real tokens (a prefix of each row).
        generator: Source of all random draws.
        prob: Probability that an eligible token is chosen (official 0.15).
        special: Special ids; [MASK] id and the vocabulary size for random replacements.
        at_least_one: Re-draw until each row with a maskable token has at least one chosen (MELTR).

    Returns:
        ``(pairs_masked_text, pairs_token_labels)``, both shaped like ``input_ids``, int64. Labels are the
        original id at chosen positions and -1 elsewhere.
    """
    _check_prob(prob, at_least_one)
    if input_ids.shape != attention_mask.shape or input_ids.dim() not in (1, 2):
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         "must both be [L] or [N, L]")
    single = input_ids.dim() == 1
    ids = input_ids.unsqueeze(0) if single else input_ids
    valid = (attention_mask.unsqueeze(0) if single else attention_mask).bool()

    positions = torch.arange(ids.shape[-1])
    last = valid.sum(-1, keepdim=True) - 1  # index of [SEP] in each row
    # Position rule of the official loaders (not first, not last real token), plus an id guard so that a
    # special token that reached the text some other way is never a prediction target.
    protected = torch.tensor([special.pad, special.cls, special.sep, special.mask])
    eligible = valid & (positions > 0) & (positions < last) & ~torch.isin(ids, protected)

    chosen = _choose(eligible, prob, at_least_one, generator)
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(0, special.vocab_size, ids.shape, generator=generator)
    to_mask = chosen & (action < _MASK_SHARE)
    to_random = chosen & (action >= _MASK_SHARE) & (action < _MASK_SHARE + _RANDOM_SHARE)

    masked = ids.clone()
    masked[to_mask] = special.mask
    masked[to_random] = random_ids[to_random]
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    if single:
        return masked.squeeze(0), labels.squeeze(0)
    return masked, labels


def mask_frames(video: Tensor, video_mask: Tensor, *, generator: torch.Generator, prob: float = 0.15,
                at_least_one: bool = True) -> tuple[Tensor, Tensor]:
    """Masked-frame corruption: zero a random subset of the valid frames.

    Args:
        video: [F, D] or [N, F, D] float, raw features (zero-padded).
        video_mask: [F] or [N, F], 1 on valid frames.
        generator: Source of all random draws.
        prob: Probability that a valid frame is chosen (official 0.15).
        at_least_one: Re-draw until each row with a valid frame has at least one chosen (MELTR).

    Returns:
        ``(masked_video, video_labels_index)``: ``masked_video`` like ``video`` with chosen frames set to
        exact zeros; ``video_labels_index`` like ``video_mask``, int64, the frame index at chosen frames and
        -1 elsewhere.
    """
    _check_prob(prob, at_least_one)
    if video.dim() not in (2, 3) or video.shape[:-1] != video_mask.shape:
        raise ValueError(f"video {tuple(video.shape)} must be [F, D] or [N, F, D] with video_mask "
                         f"{tuple(video_mask.shape)} = its leading dims")
    single = video.dim() == 2
    vid = video.unsqueeze(0) if single else video
    valid = (video_mask.unsqueeze(0) if single else video_mask).bool()

    chosen = _choose(valid, prob, at_least_one, generator)
    masked = vid.masked_fill(chosen.unsqueeze(-1), 0.0)
    frame_index = torch.arange(vid.shape[1]).expand_as(chosen)
    labels = torch.where(chosen, frame_index, torch.full_like(frame_index, IGNORE_INDEX))
    if single:
        return masked.squeeze(0), labels.squeeze(0)
    return masked, labels
