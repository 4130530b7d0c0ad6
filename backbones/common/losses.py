"""Video-language losses, reduced exactly as the official UniVL code reduces them.

Every function returns a 0-dim tensor (the form MELTR consumes; see ``meltr.interface``). The
reductions are the official ones, which are not always a plain mean of per-sample terms:

* :func:`max_margin_ranking_loss`: mean over the ``N²`` cells of the sum of both hinges (diagonal included);
* :func:`mil_nce_loss`: mean over one anchor row per source video;
* :func:`cross_en_loss`: mean over text rows (text→video only);
* :func:`masked_frame_nce_loss`: mean over the masked frames, every frame of the batch a candidate;
* :func:`masked_cross_entropy`: mean over the non-ignored targets.

One documented deviation: when a batch has no masked frame / no non-ignored target, the official mean
over an empty set is NaN; here the loss is 0 (with a graph), so one unlucky batch cannot poison a run.
Wherever the official value is finite the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = [
    "MIL_NCE_MASK",
    "MFM_MASK",
    "max_margin_ranking_loss",
    "mil_nce_loss",
    "cross_en_loss",
    "masked_frame_nce_loss",
    "masked_cross_entropy",
]

# Official masking constants (finite, so masked entries underflow to exactly 0 after exp).
MIL_NCE_MASK = -1e12
MFM_MASK = -1e8


def _check_square(sim: Tensor, name: str) -> None:
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"{name} needs a square [N, N] similarity with positives on the diagonal, got {tuple(sim.shape)}")


def max_margin_ranking_loss(sim: Tensor, margin: float = 0.1) -> Tensor:
    """Bidirectional hinge ranking loss on a text-video similarity matrix (UniVL ``MaxMarginRankingLoss``).

    Every cell ``(i, j)`` carries two hinges, ``relu(margin + sim[i, j] - sim[i, i])`` (row ``i``'s positive)
    and ``relu(margin + sim[i, j] - sim[j, j])`` (column ``j``'s positive). The loss is the *sum* of the
    two averaged over the ``N²`` cells (the golden fixture pins this: half of it would be a mean over
    ``2·N²`` terms). Diagonal cells are included and each contributes ``2·margin``. Negative weighting
    (only active with ``n_pair > 1``) is not used by any fine-tuning run and is not implemented.

    Args:
        sim: ``[N, N]`` similarities, row = text, column = video, positives on the diagonal.
        margin: hinge margin (UniVL default 0.1).

    Returns:
        0-dim loss.
    """
    _check_square(sim, "max_margin_ranking_loss")
    positive = sim.diagonal()
    hinges = F.relu(margin + sim - positive[:, None]) + F.relu(margin + sim - positive[None, :])
    return hinges.mean()


def mil_nce_loss(sim: Tensor, batch_size: int, n_pair: int) -> Tensor:
    """MIL-NCE over groups of ``n_pair`` clips per video (UniVL pre-training stage one/two joint loss).

    Rows/columns are ordered video-major: index ``b·n_pair + k`` is clip ``k`` of video ``b``. For row
    ``i``, the candidates are column ``i`` of ``sim`` (every text vs clip ``i``) and row ``i`` with the
    same-video clips removed (text ``i`` vs clips of other videos); the positives are the texts of the
    same video in the first half. Only the middle clip of each video is an anchor.

    Args:
        sim: ``[B·n_pair, B·n_pair]`` text-video similarities (dot products in pre-training).
        batch_size: number of source videos ``B`` in the (per-GPU) batch.
        n_pair: clips per video.

    Returns:
        0-dim loss, the mean over the ``B`` anchors.
    """
    n = batch_size * n_pair
    if sim.shape != (n, n):
        raise ValueError(f"mil_nce_loss: sim is {tuple(sim.shape)}, expected [{n}, {n}] for "
                         f"batch_size={batch_size}, n_pair={n_pair}")
    group = torch.arange(n, device=sim.device) // n_pair
    same_video = group[:, None] == group[None, :]
    from_video = sim.t()  # row i: every text scored against clip i
    from_text = sim.masked_fill(same_video, MIL_NCE_MASK)  # row i: text i against other videos' clips
    log_probs = torch.cat([from_video, from_text], dim=1).log_softmax(dim=1)
    positives = torch.cat([same_video, torch.zeros_like(same_video)], dim=1)
    row_loss = -log_probs.masked_fill(~positives, MIL_NCE_MASK).logsumexp(dim=1)
    anchors = torch.arange(batch_size, device=sim.device) * n_pair + n_pair // 2
    return row_loss[anchors].mean()


def cross_en_loss(sim: Tensor) -> Tensor:
    """Text→video softmax cross-entropy with diagonal targets (UniVL/CLIP4Clip ``CrossEn``).

    One direction only: each text row is a softmax over videos; the video→text direction is not added.

    Args:
        sim: ``[N, N]`` logits, row = text, column = video.

    Returns:
        0-dim loss, the mean over rows.
    """
    _check_square(sim, "cross_en_loss")
    return -sim.log_softmax(dim=-1).diagonal().mean()


def masked_frame_nce_loss(pred: Tensor, target: Tensor, video_mask: Tensor, labels_index: Tensor) -> Tensor:
    """Masked-frame NCE (UniVL CMFM): each masked frame's prediction must pick its own feature out of
    every valid frame of the batch.

    Args:
        pred: ``[N, F, D]`` predicted features (the MFM head on the cross encoder's video part).
        target: ``[N, F, D]`` the *unmasked*, normalised video features.
        video_mask: ``[N, F]``, 1 on valid frames. A score is masked (``-1e8``, added as the official
            code does) when its row frame or its column frame is padding.
        labels_index: ``[N, F]``, -1 on frames that were not masked; the loss averages the other rows.

    Returns:
        0-dim loss, mean of ``-log softmax(pred · targetᵀ)[r, r]`` over the masked frames ``r``.
    """
    scores = rearrange(pred, "n f d -> (n f) d") @ rearrange(target, "n f d -> d (n f)")
    valid = rearrange(video_mask, "n f -> (n f)").to(scores.dtype)
    scores = scores + (1.0 - valid[:, None] * valid[None, :]) * MFM_MASK
    nce = -scores.log_softmax(dim=-1).diagonal()
    selected = rearrange(labels_index, "n f -> (n f)") != -1
    # where() rather than multiplying by the mask: a 0 weight would still propagate a NaN/inf.
    total = torch.where(selected, nce, torch.zeros_like(nce)).sum()
    return total / selected.sum().clamp(min=1)


def masked_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = -1) -> Tensor:
    """Token cross-entropy averaged over the targets that are not ``ignore_index`` (CMLM, caption decoder).

    Args:
        logits: ``[..., V]`` unnormalised scores.
        labels: ``[...]`` target ids; ``ignore_index`` marks positions without a target. UniVL's caption
            targets are padded with 0 ([PAD]), not -1, so padding *is* a target there (official quirk).
        ignore_index: the label value to skip (UniVL uses -1).

    Returns:
        0-dim loss: ``sum of CE over kept targets / number of kept targets``.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=ignore_index, reduction="sum")
    return total / (flat_labels != ignore_index).sum().clamp(min=1)
