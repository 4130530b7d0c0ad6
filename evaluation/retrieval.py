"""Text-video retrieval metrics: R@K, median rank and mean rank.

Conventions (those of the official UniVL ``metrics.compute_metrics``):

* A similarity matrix has **rows = queries** and **columns = candidates**; higher is better.
* Recall values are **fractions** in [0, 1] (``0.30`` means 30 %); use :func:`to_percent` or
  :func:`format_metrics` for percentages.
* Ranks are 0-based inside the code; ``MedR``/``MeanR`` are reported **1-based**
  (median/mean of the 0-based ranks, plus one), so a perfect model has ``MedR == 1.0``.

Tie handling (``ties=``), for a query whose true candidate scores ``g``, with ``a`` other candidates
scoring strictly above ``g`` and ``e`` other candidates scoring exactly ``g``:

* ``"optimistic"``: rank ``a`` (ties broken in favour of the true candidate).
* ``"pessimistic"``: rank ``a + e`` (ties broken against it).
* ``"official"`` (default): what ``compute_metrics`` does. It sorts the row descending and takes
  *every* position whose value equals ``g`` (``np.where``), so the query contributes the ``e + 1``
  ranks ``a, a+1, ..., a+e``. All statistics (R@K numerator and denominator, median, mean) are then
  taken over this expanded list, i.e. a tied query carries ``e + 1`` times the weight of the others.
  Without ties all three modes agree.

Non-finite inputs: NaN is rejected (the official code would silently drop a query whose true score is
NaN, because ``NaN - NaN != 0``). Infinite scores are allowed; note that the official code would also
drop a query whose true score is ``+inf`` tied with another ``+inf`` (``inf - inf`` is NaN), whereas here
that is an ordinary tie.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch

Ties = Literal["official", "optimistic", "pessimistic"]
_TIES = ("official", "optimistic", "pessimistic")
# Rows compared at once; bounds the temporary [chunk, n_candidates] boolean arrays.
_CHUNK = 1024

__all__ = [
    "Ties",
    "format_metrics",
    "ranks",
    "retrieval_metrics",
    "retrieval_metrics_multi",
    "text_to_video",
    "to_percent",
    "video_to_text",
]


def _as_matrix(sim: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return ``sim`` as a 2-D float64 numpy array, rejecting NaN.

    float64 holds every float16/bfloat16/float32 value exactly, so the conversion changes neither the
    order of the scores nor which of them are equal.
    """
    if isinstance(sim, torch.Tensor):
        arr = sim.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        arr = np.asarray(sim)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"similarity matrix must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"similarity matrix must be 2-D and non-empty, got shape {tuple(arr.shape)}")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise ValueError(f"similarity matrix contains {n_nan} NaN value(s); ranks would be undefined")
    return arr


def _check_ties(ties: str) -> None:
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(ks)
    if not out or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in out):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}")
    return tuple(int(k) for k in out)


def _expand(above: np.ndarray, tied: np.ndarray, ties: str) -> np.ndarray:
    """0-based ranks from per-query counts.

    Args:
        above: [Q] int, number of wrong candidates scoring strictly above the true one.
        tied: [Q] int, number of wrong candidates scoring exactly the true one.
        ties: tie mode (module docstring).

    Returns:
        [Q] ranks for "optimistic"/"pessimistic"; [sum(tied + 1)] ranks for "official".
    """
    if ties == "optimistic":
        return above
    if ties == "pessimistic":
        return above + tied
    # official: query q contributes above[q], above[q]+1, ..., above[q]+tied[q].
    reps = tied + 1
    starts = np.repeat(above, reps)
    # Offset inside each run: position in the flat array minus where the run began.
    run_begin = np.repeat(np.cumsum(reps) - reps, reps)
    return starts + (np.arange(int(reps.sum())) - run_begin)


def _summarise(rank0: np.ndarray, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    n = len(rank0)
    out = {f"{prefix}R@{k}": float(np.sum(rank0 < k)) / n for k in ks}
    out[f"{prefix}MedR"] = float(np.median(rank0)) + 1.0
    out[f"{prefix}MeanR"] = float(np.mean(rank0)) + 1.0
    return out


def _diag_counts(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many off-diagonal entries are above / equal to the diagonal entry."""
    n = sim.shape[0]
    above = np.empty(n, dtype=np.int64)
    tied = np.empty(n, dtype=np.int64)
    for lo in range(0, n, _CHUNK):
        block = sim[lo : lo + _CHUNK]
        rows = np.arange(lo, lo + len(block))
        gold = block[np.arange(len(block)), rows][:, None]
        above[lo : lo + len(block)] = (block > gold).sum(axis=1)
        # The diagonal always equals itself, so subtract it to count only the *other* tied candidates.
        tied[lo : lo + len(block)] = (block == gold).sum(axis=1) - 1
    return above, tied


def ranks(sim: torch.Tensor | np.ndarray, ties: Ties = "official") -> np.ndarray:
    """0-based rank of the diagonal entry of each row.

    Args:
        sim: [Q, Q] similarities, rows = queries, ground truth on the diagonal.
        ties: tie mode (module docstring).

    Returns:
        int64 array: [Q] for "optimistic"/"pessimistic"; for "official" the expanded list (one entry
        per tied position, longer than Q when there are ties), in row order.
    """
    _check_ties(ties)
    arr = _as_matrix(sim)
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"similarity matrix must be square (ground truth on the diagonal), got {arr.shape}")
    return _expand(*_diag_counts(arr), ties)


def retrieval_metrics(
    sim: torch.Tensor | np.ndarray, ks: Sequence[int] = (1, 5, 10), ties: Ties = "official"
) -> dict[str, float]:
    """R@K, MedR and MeanR for a square similarity matrix with ground truth on the diagonal.

    With the defaults this reproduces the official UniVL ``compute_metrics`` (keys ``R1, R5, R10, MR``
    there map to ``R@1, R@5, R@10, MedR`` here).

    Args:
        sim: [Q, Q] similarities, rows = queries, columns = candidates (torch or numpy, any float dtype).
        ks: cut-offs K for R@K.
        ties: tie mode (module docstring); default "official".

    Returns:
        ``{"R@k": fraction for k in ks, "MedR": 1-based median rank, "MeanR": 1-based mean rank}``.
    """
    return _summarise(ranks(sim, ties), _check_ks(ks), "")


def text_to_video(
    sim: torch.Tensor | np.ndarray, ks: Sequence[int] = (1, 5, 10), ties: Ties = "official"
) -> dict[str, float]:
    """Text-to-video metrics of a [N_text, N_video] square matrix (row i's video is column i).

    Returns:
        The keys of :func:`retrieval_metrics` prefixed with ``t2v_``.
    """
    return _summarise(ranks(sim, ties), _check_ks(ks), "t2v_")


def video_to_text(
    sim: torch.Tensor | np.ndarray, ks: Sequence[int] = (1, 5, 10), ties: Ties = "official"
) -> dict[str, float]:
    """Video-to-text metrics of the same text-by-video matrix: the transpose, so videos are queries.

    Args:
        sim: [N_text, N_video] square similarities, **rows still texts** (as for :func:`text_to_video`).

    Returns:
        The keys of :func:`retrieval_metrics` prefixed with ``v2t_``.
    """
    return _summarise(ranks(_as_matrix(sim).T, ties), _check_ks(ks), "v2t_")


def retrieval_metrics_multi(
    sim: torch.Tensor | np.ndarray,
    text_to_video_index: Sequence[int] | np.ndarray | torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    ties: Ties = "official",
) -> dict[str, float]:
    """Both directions when a video may have several captions (e.g. MSRVTT's 20, MSVD's ~40).

    * text-to-video: each text queries all videos; rank of its own video.
    * video-to-text: each video queries all texts; rank of its **best-scoring** own text, counted
      against the other videos' texts only (its remaining own texts are neither hits nor misses).
      Tie modes then apply to that best score ``g``: ``a`` = foreign texts above ``g``, ``e`` = foreign
      texts equal to ``g``.

    With ``text_to_video_index = range(N)`` this equals :func:`text_to_video` plus
    :func:`video_to_text` in every tie mode.

    Args:
        sim: [N_text, N_video] similarities, rows = texts.
        text_to_video_index: [N_text] ints, the column of each text's video. Every video must have at
            least one text (v2t would be undefined otherwise).
        ks: cut-offs K for R@K.
        ties: tie mode (module docstring).

    Returns:
        ``t2v_R@k``, ``t2v_MedR``, ``t2v_MeanR``, ``v2t_R@k``, ``v2t_MedR``, ``v2t_MeanR``.
    """
    _check_ties(ties)
    ks = _check_ks(ks)
    arr = _as_matrix(sim)
    n_text, n_video = arr.shape
    if isinstance(text_to_video_index, torch.Tensor):
        text_to_video_index = text_to_video_index.detach().cpu().numpy()
    idx = np.asarray(text_to_video_index)
    if idx.shape != (n_text,) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"text_to_video_index must be {n_text} ints (one per row of sim), got shape {idx.shape} dtype {idx.dtype}"
        )
    bad = np.flatnonzero((idx < 0) | (idx >= n_video))
    if bad.size:
        raise ValueError(f"text_to_video_index out of range [0, {n_video}) at text rows {bad[:10].tolist()}")
    counts = np.bincount(idx, minlength=n_video)
    orphans = np.flatnonzero(counts == 0)
    if orphans.size:
        raise ValueError(f"videos {orphans[:10].tolist()} (of {orphans.size}) have no text; v2t is undefined")

    # Best own-text score per video; every video has one (checked above), so no -inf survives unless
    # the scores themselves are -inf.
    rows = np.arange(n_text)
    gold_all = arr[rows, idx]
    best = np.full(n_video, -np.inf)
    np.maximum.at(best, idx, gold_all)

    t_above = np.empty(n_text, dtype=np.int64)
    t_tied = np.empty(n_text, dtype=np.int64)
    v_above = np.zeros(n_video, dtype=np.int64)
    v_tied = np.zeros(n_video, dtype=np.int64)
    # Row chunks keep the temporaries at [chunk, V] (MSRVTT-full is 59,800 x 2,990).
    for lo in range(0, n_text, _CHUNK):
        block = arr[lo : lo + _CHUNK]
        local = np.arange(len(block))
        own_col = idx[lo : lo + _CHUNK]
        # t2v: one true video per text, so "other candidates" are simply the other columns.
        gold = gold_all[lo : lo + _CHUNK, None]
        t_above[lo : lo + len(block)] = (block > gold).sum(axis=1)
        t_tied[lo : lo + len(block)] = (block == gold).sum(axis=1) - 1
        # v2t: a video's own texts are excluded from its candidate list.
        foreign = np.ones(block.shape, dtype=bool)
        foreign[local, own_col] = False
        v_above += ((block > best) & foreign).sum(axis=0)
        v_tied += ((block == best) & foreign).sum(axis=0)

    out = _summarise(_expand(t_above, t_tied, ties), ks, "t2v_")
    out.update(_summarise(_expand(v_above, v_tied, ties), ks, "v2t_"))
    return out


def to_percent(metrics: Mapping[str, float]) -> dict[str, float]:
    """Copy of ``metrics`` with every recall (a key containing ``R@``) times 100; ranks unchanged."""
    return {k: (100.0 * v if "R@" in k else v) for k, v in metrics.items()}


def format_metrics(metrics: Mapping[str, float], percent: bool = True, digits: int = 2) -> str:
    """One-line summary, e.g. ``"t2v_R@1 30.00  t2v_R@5 65.00  t2v_MedR 2.5"``.

    Args:
        metrics: output of one of the functions above.
        percent: print recalls as percentages (the papers' convention) rather than fractions.
        digits: decimals for recalls; ranks are printed with ``g`` formatting (e.g. ``2.5``, ``4``).
    """
    shown = to_percent(metrics) if percent else dict(metrics)
    parts = [f"{k} {v:.{digits}f}" if "R@" in k else f"{k} {v:g}" for k, v in shown.items()]
    return "  ".join(parts)
