"""Multi-view dual-encoder retrieval as All-in-one's ``compute_ind_irtr_recall`` evaluates it.

Official behaviour (reference/allinone.md §5, checked against ``shared/fixtures/allinone/golden.pt``):

* the test set is sampled ``retrieval_views`` (3) times with random frames; per view, every text and every
  video is embedded independently (text-only and video-only passes);
* per view the cosine matrix is taken (rows = texts; each row divided by ``max(‖row‖, 1e-8)``), and the
  **similarity matrices** are averaged: ``Σ_views (cos(text_v, video_v) / V)``, summed in view order. The
  embeddings themselves are never averaged;
* text→video ranks break ties **optimistically**; video→text ranks **average** tied positions
  (rank ``a + e/2`` with ``a`` candidates above the true one and ``e`` others tied with it);
* R@1 counts ranks equal to 0, R@K (K > 1) ranks below K, so a tie-averaged rank of 0.5 is no R@1 hit but an
  R@5 hit; MedR / MeanR are the median / mean rank plus one.

Results use the keys and the fraction convention of :mod:`evaluation.retrieval` (``t2v_R@1`` = 0.25 for
25 %). The official code logs t2v as ``tr_*`` and v2t as ``ir_*``. Nothing here depends on a backbone: pass
the embeddings (or the per-view similarity matrices).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from evaluation.retrieval import _check_ks, ranks, text_to_video  # one ks validation for the package

__all__ = ["cosine_similarity", "average_similarities", "multiview_similarity", "video_to_text_averaged",
           "allinone_metrics", "multiview_retrieval"]


def cosine_similarity(text: Tensor, video: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine matrix of the official ``sim_matrix``.

    Args:
        text: [N, D] text embeddings.
        video: [M, D] video embeddings.
        eps: Floor of the row norms.

    Returns:
        [N, M], rows = texts.
    """
    if text.dim() != 2 or video.dim() != 2 or text.shape[1] != video.shape[1]:
        raise ValueError(f"need [N, D] text and [M, D] video embeddings, got {tuple(text.shape)} and "
                         f"{tuple(video.shape)}")
    a = text / text.norm(dim=1, keepdim=True).clamp_min(eps)
    b = video / video.norm(dim=1, keepdim=True).clamp_min(eps)
    return a @ b.T


def average_similarities(sims: Sequence[Tensor]) -> Tensor:
    """``Σ_v (sims[v] / V)``, summed in view order (the official arithmetic, bit for bit).

    Args:
        sims: V >= 1 matrices [N, M] of the same shape.
    """
    if len(sims) == 0:
        raise ValueError("need at least one view")
    if any(s.shape != sims[0].shape for s in sims):
        raise ValueError(f"per-view similarity shapes differ: {[tuple(s.shape) for s in sims]}")
    # Each view is divided before the sum, as the official loop does; (Σ sims) / V differs in the last bit.
    total = sims[0] / len(sims)
    for s in sims[1:]:
        total = total + s / len(sims)
    return total


def multiview_similarity(text: Tensor | Sequence[Tensor], videos: Sequence[Tensor], eps: float = 1e-8) -> Tensor:
    """Average over views of the per-view cosine matrices.

    Args:
        text: [N, D] text embeddings used for every view, or one [N, D] tensor per view (the official code
            re-embeds the text in each view; it is the same text).
        videos: One [M, D] tensor of video embeddings per view.
        eps: See :func:`cosine_similarity`.

    Returns:
        [N, M] averaged similarities, rows = texts.
    """
    texts = [text] * len(videos) if isinstance(text, Tensor) else list(text)
    if len(texts) != len(videos):
        raise ValueError(f"got {len(texts)} text views for {len(videos)} video views")
    return average_similarities([cosine_similarity(t, v, eps) for t, v in zip(texts, videos)])


def video_to_text_averaged(sim: Tensor | np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Video→text metrics of a [N_text, N_video] matrix with tied ranks averaged (official ``v2t_metrics``).

    Returns:
        ``v2t_R@k`` (fractions), ``v2t_MedR``, ``v2t_MeanR``.
    """
    ks = _check_ks(ks)
    arr = sim.detach().to("cpu", torch.float64).numpy() if isinstance(sim, Tensor) else np.asarray(sim, np.float64)
    if arr.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D, got shape {arr.shape}")
    # a (optimistic) and a + e (pessimistic) bound the run of tied positions; its mean is their midpoint.
    rank = (ranks(arr.T, "optimistic") + ranks(arr.T, "pessimistic")) / 2.0
    out = {f"v2t_R@{k}": float(np.mean(rank == 0) if k == 1 else np.mean(rank < k)) for k in ks}
    out["v2t_MedR"] = float(np.median(rank)) + 1.0
    out["v2t_MeanR"] = float(np.mean(rank)) + 1.0
    return out


def allinone_metrics(sim: Tensor | np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """t2v (ties optimistic) and v2t (ties averaged) metrics of a square text-by-video matrix."""
    return {**text_to_video(sim, _check_ks(ks), ties="optimistic"), **video_to_text_averaged(sim, ks)}


def multiview_retrieval(text: Tensor | Sequence[Tensor], videos: Sequence[Tensor], *,
                        uniform_video: Tensor | None = None, uniform_text: Tensor | None = None,
                        ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """The official retrieval numbers, plus optionally those of the single uniform-frame view.

    Args:
        text: [N, D] text embeddings (or one per view).
        videos: Per random view, [N, D] video embeddings; video i is the ground truth of text i.
        uniform_video: [N, D] video embeddings of the uniform (middle-frame) sampling, if wanted.
        uniform_text: Text embeddings for that view (default: ``text``, or its first view).
        ks: Cut-offs.

    Returns:
        :func:`allinone_metrics` of the averaged matrix (``t2v_*``, ``v2t_*``), and with ``uniform_video`` the
        same keys prefixed ``uniform_`` for the single uniform view.
    """
    out = allinone_metrics(multiview_similarity(text, videos), ks)
    if uniform_video is not None:
        if uniform_text is None:
            uniform_text = text if isinstance(text, Tensor) else text[0]
        single = allinone_metrics(cosine_similarity(uniform_text, uniform_video), ks)
        out.update({f"uniform_{k}": v for k, v in single.items()})
    return out
