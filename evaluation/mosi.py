"""CMU-MOSI sentiment-regression metrics, computed as MMSA's ``MetricsTop`` does for MOSI.

Reference: MMSA ``metricsTop.py`` (``__eval_mosei_regression``, which MMSA also uses for MOSI), summarised in
``shared/reference/datasets.md`` §6.4. ``p`` are the predictions and ``t`` the labels (sentiment in [-3, 3]) over
the **whole split** at once (686 samples for MOSI test); nothing here is averaged over batches.

=============  ==========================================================================================
key            definition
=============  ==========================================================================================
``MAE``        ``mean(|p - t|)`` on the unclipped values.
``Corr``       Pearson correlation of ``p`` and ``t`` (MMSA: ``np.corrcoef(p, t)[0, 1]``).
``Acc-7``      clip ``p`` and ``t`` to [-3, 3], round both with numpy's round-half-to-even
               (2.5 -> 2, -0.5 -> -0, 1.5 -> 2), fraction of samples where they are equal.
``Acc-5``      the same with clipping to [-2, 2].
``Acc-2_has0`` "non-negative vs negative" (MMSA ``Has0_acc_2``): classes ``t >= 0`` / ``p >= 0``, all samples.
``F1_has0``    weighted F1 (sklearn ``f1_score(average="weighted")``) of that binarisation.
``Acc-2_non0`` "positive vs negative" (MMSA ``Non0_acc_2``): drop the samples whose label is exactly 0,
               then classes ``t > 0`` / ``p > 0``; a prediction of exactly 0 counts as negative.
``F1_non0``    weighted F1 of that binarisation.
``BA``         alias of ``Acc-2_non0``.
``F1``         alias of ``F1_non0``.
=============  ==========================================================================================

Why ``BA``/``F1`` are the non-zero variants: MELTR Table 6 reports BA / F1 / MAE / Corr, and its baseline rows
(MulT 83.0 / 82.8, FMT 83.5) equal the "positive vs negative" numbers of the CMU SDK scoreboard. Both variants
are returned anyway, because older papers report the has-zero one (about 2-3 points lower).

Conventions:

* Accuracies and F1 are **fractions** in [0, 1]; :func:`format_mosi` prints them as percentages, as the papers do.
* Values are returned unrounded (MMSA rounds every number to 4 decimals for its logs).
* Everything is computed in float64. float16/bfloat16/float32 inputs convert exactly, so every comparison with
  0 and every rounding is what MMSA sees on the same values; MAE and Corr can differ from a float32 computation
  in the last float32 digits only.
* Weighted F1: each class's F1 is ``2 tp / (n_true + n_pred)`` and is weighted by its number of *true*
  samples. A class no label belongs to therefore has weight 0, whatever is predicted, and sklearn's
  ``zero_division`` never affects the weighted result (it only applies to classes whose weight is 0).

Degenerate splits (documented choices; MMSA itself is noted in brackets):

* Constant ``p`` or constant ``t`` (including a single sample): ``Corr`` is **NaN**, because Pearson's
  correlation divides by the standard deviation; ``scipy.stats.pearsonr`` also returns NaN (with a
  ConstantInputWarning). Constancy is tested exactly (all values equal). [MMSA's ``np.corrcoef`` gives NaN
  with a RuntimeWarning only when the mean of the constant is exact; e.g. for 50 copies of 0.1 the mean is
  off by one ulp and it returns a meaningless value near 0 instead.] No warning is emitted; check ``math.isnan``.
* Every label exactly 0 (``-0.0`` counts as 0, as ``t != 0`` is False for it): ``Acc-2_non0``, ``F1_non0``,
  ``BA`` and ``F1`` are **NaN**, since no sample is left [MMSA crashes: it indexes with an empty float array].
* Everything else is always defined for a non-empty split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

__all__ = ["MOSI_METRICS", "format_mosi", "mosi_metrics"]

# Keys of :func:`mosi_metrics`, in the order :func:`format_mosi` prints them after the paper's four.
MOSI_METRICS: tuple[str, ...] = (
    "MAE",
    "Corr",
    "Acc-7",
    "Acc-5",
    "Acc-2_has0",
    "F1_has0",
    "Acc-2_non0",
    "F1_non0",
    "BA",
    "F1",
)


def _as_vector(x: npt.ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or sequence) as a finite 1-D float64 array.

    torch is duck-typed (``detach``/``cpu``) so that importing this module needs numpy only; a tensor is
    ``ArrayLike`` to a type checker through its ``__array__``.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        t = x.detach().cpu()
        # numpy has no bfloat16; float64 holds every bfloat16/float16/float32 value exactly.
        if t.is_floating_point():
            t = t.double()
        x = t.numpy()
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be real numbers (float or int), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one value per sample), got shape {tuple(arr.shape)}; "
            "flatten it first, e.g. .reshape(-1)"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; the metrics need at least one sample")
    arr = arr.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} has {bad.size} non-finite value(s) (NaN/inf) at indices {bad[:10].tolist()}")
    return arr


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either vector is constant (module docstring)."""
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    xc = x - x.mean()
    yc = y - y.mean()
    # Scaling each centred vector by its largest magnitude keeps the sums of squares from overflowing
    # (finite labels near 1e200 would otherwise give inf/inf); correlation is scale-invariant.
    xc = xc / np.max(np.abs(xc))
    yc = yc / np.max(np.abs(yc))
    r = float(np.dot(xc, yc) / math.sqrt(float(np.dot(xc, xc)) * float(np.dot(yc, yc))))
    # Rounding can push |r| a hair above 1 for (anti)collinear inputs.
    return max(-1.0, min(1.0, r))


def _clipped_round_accuracy(p: np.ndarray, t: np.ndarray, bound: float) -> float:
    """Fraction of samples whose clipped, half-to-even-rounded prediction equals the rounded label."""
    # np.round rounds halves to even, as MMSA's ``__multiclass_acc``; -0.0 == 0.0 counts as equal.
    return float(np.mean(np.round(np.clip(p, -bound, bound)) == np.round(np.clip(t, -bound, bound))))


def _binary_accuracy(pb: np.ndarray, tb: np.ndarray) -> float:
    return float(np.mean(pb == tb))


def _weighted_f1(pb: np.ndarray, tb: np.ndarray) -> float:
    """sklearn ``f1_score(tb, pb, average="weighted")`` for boolean vectors (module docstring)."""
    f1 = np.zeros(2)
    support = np.zeros(2)
    for i, cls in enumerate((False, True)):
        is_true = tb == cls
        is_pred = pb == cls
        n_true = int(is_true.sum())
        denom = n_true + int(is_pred.sum())
        support[i] = n_true
        # denom == 0 means the class appears nowhere; its weight n_true is 0, so its F1 is irrelevant.
        f1[i] = 2.0 * int((is_true & is_pred).sum()) / denom if denom else 0.0
    # support sums to len(tb) > 0 (callers never pass empty vectors).
    return float(np.average(f1, weights=support))


def mosi_metrics(pred: npt.ArrayLike, label: npt.ArrayLike) -> dict[str, float]:
    """MOSI regression metrics over a whole split, as MMSA computes them (module docstring).

    ``BA`` and ``F1`` are the "positive vs negative" (non-zero) variants, i.e. MELTR Table 6's BA / F1.

    Args:
        pred: [N] predicted sentiment (numpy array, torch tensor on any device/dtype, or sequence).
        label: [N] true sentiment in [-3, 3], same length.

    Returns:
        ``{"MAE", "Corr", "Acc-7", "Acc-5", "Acc-2_has0", "F1_has0", "Acc-2_non0", "F1_non0", "BA", "F1"}``
        as Python floats; accuracies and F1 are fractions. ``Corr`` is NaN for a constant ``pred`` or
        ``label``; the non-zero metrics are NaN when every label is exactly 0.

    Raises:
        TypeError: non-numeric (or boolean) input.
        ValueError: input not 1-D, empty, non-finite, or of different lengths.
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(label, "label")
    if p.shape != t.shape:
        raise ValueError(f"pred and label must have the same length, got {p.size} predictions and {t.size} labels")

    out = {
        "MAE": float(np.mean(np.abs(p - t))),
        "Corr": _pearson(p, t),
        "Acc-7": _clipped_round_accuracy(p, t, 3.0),
        "Acc-5": _clipped_round_accuracy(p, t, 2.0),
    }

    # has0: zero is grouped with the positives, on both sides.
    pb, tb = p >= 0, t >= 0
    out["Acc-2_has0"] = _binary_accuracy(pb, tb)
    out["F1_has0"] = _weighted_f1(pb, tb)

    # non0: neutral labels are dropped; a neutral *prediction* stays and counts as negative (p > 0 is False).
    keep = t != 0
    if keep.any():
        pb, tb = p[keep] > 0, t[keep] > 0
        out["Acc-2_non0"] = _binary_accuracy(pb, tb)
        out["F1_non0"] = _weighted_f1(pb, tb)
    else:
        out["Acc-2_non0"] = math.nan
        out["F1_non0"] = math.nan
    out["BA"] = out["Acc-2_non0"]
    out["F1"] = out["F1_non0"]
    return out


def format_mosi(metrics: Mapping[str, float], digits: int = 1) -> str:
    """One-line report: MELTR Table 6's four numbers first, then the other variants.

    Example: ``"BA(=Acc-2_non0) 85.3  F1(=F1_non0) 85.4  MAE 0.759  Corr 0.789 | Acc-2_has0 83.1  F1_has0 83.0
    Acc-7 45.2  Acc-5 50.1"`` (on one line). Accuracies and F1 are printed as percentages with ``digits``
    decimals, MAE and Corr with three; NaN prints as ``nan``.

    Args:
        metrics: the output of :func:`mosi_metrics` (extra keys are ignored).
        digits: decimals for the percentages (the paper uses 1).
    """
    missing = [k for k in MOSI_METRICS if k not in metrics]
    if missing:
        raise KeyError(f"metrics lack {missing}; pass the dict returned by mosi_metrics")

    def pct(key: str) -> str:
        return f"{100.0 * metrics[key]:.{digits}f}"

    paper = (
        f"BA(=Acc-2_non0) {pct('BA')}  F1(=F1_non0) {pct('F1')}  "
        f"MAE {metrics['MAE']:.3f}  Corr {metrics['Corr']:.3f}"
    )
    rest = "  ".join(f"{k} {pct(k)}" for k in ("Acc-2_has0", "F1_has0", "Acc-7", "Acc-5"))
    return f"{paper} | {rest}"
