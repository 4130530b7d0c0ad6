"""MOSI metrics vs independent references (scipy, sklearn, plain Python) and a hand-computed case."""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from evaluation import mosi
from evaluation.mosi import MOSI_METRICS, format_mosi, mosi_metrics

SEEDS = (0, 1, 2, 3, 4)


# ---------------------------------------------------------------- independent reference
def _py_multiclass_acc(p: np.ndarray, t: np.ndarray, bound: float) -> float:
    """Acc-7/Acc-5 with Python's built-in round(), which also rounds halves to even, in a plain loop."""
    hits = 0
    for a, b in zip(p.tolist(), t.tolist()):
        hits += round(min(max(a, -bound), bound)) == round(min(max(b, -bound), bound))
    return hits / len(p)


def _reference(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """The MMSA recipe written with scipy/sklearn; keys as in mosi_metrics."""
    nz = np.array([i for i, v in enumerate(t.tolist()) if v != 0], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's ConstantInputWarning, sklearn's UndefinedMetricWarning
        corr = float(pearsonr(p, t).statistic) if len(p) > 1 else math.nan
        ref = {
            "MAE": mean_absolute_error(t, p),
            "Corr": corr,
            "Acc-7": _py_multiclass_acc(p, t, 3),
            "Acc-5": _py_multiclass_acc(p, t, 2),
            "Acc-2_has0": accuracy_score(t >= 0, p >= 0),
            "F1_has0": f1_score(t >= 0, p >= 0, average="weighted"),
            "Acc-2_non0": accuracy_score(t[nz] > 0, p[nz] > 0) if nz.size else math.nan,
            "F1_non0": f1_score(t[nz] > 0, p[nz] > 0, average="weighted") if nz.size else math.nan,
        }
    ref["BA"], ref["F1"] = ref["Acc-2_non0"], ref["F1_non0"]
    return ref


def _assert_matches(got: dict[str, float], ref: dict[str, float]) -> None:
    assert tuple(got) == MOSI_METRICS
    for k in MOSI_METRICS:
        assert isinstance(got[k], float), k
        if math.isnan(ref[k]):
            assert math.isnan(got[k]), (k, got[k])
        elif k.startswith("Acc"):
            assert got[k] == ref[k], (k, got[k], ref[k])  # counts over n: exact
        else:
            assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12), (k, got[k], ref[k])


def _mosi_like(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Labels on the annotators' grid (many exact 0s and .5 halves, some beyond the clip bounds) and
    predictions mixing continuous values, exact 0s, exact halves and values outside [-3, 3]."""
    rng = np.random.default_rng(seed)
    grid = np.round(np.arange(-3.0, 3.01, 0.2), 10)
    t = rng.choice(np.concatenate([grid, np.arange(-3.5, 3.51, 0.5), [0.0] * 8]), size=n)
    p = rng.normal(0.3, 1.8, size=n)
    kind = rng.integers(0, 5, size=n)
    p[kind == 0] = 0.0
    p[kind == 1] = rng.choice(np.arange(-3.5, 3.51, 0.5), size=int((kind == 1).sum()))
    p[kind == 2] = -0.0
    # Check that the draw really exercises the edge cases this data exists for.
    need = max(2, n // 40)
    assert (t == 0).sum() >= need and (p == 0).sum() >= need
    assert np.isin(np.abs(p), [0.5, 1.5, 2.5]).sum() >= need and np.isin(np.abs(t), [0.5, 1.5, 2.5]).sum() >= need
    assert (np.abs(p) > 3).any() and (np.abs(t) > 3).any()
    return p, t


# ---------------------------------------------------------------- random data vs references
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_references_on_random_data(seed: int) -> None:
    p, t = _mosi_like(seed)
    got = mosi_metrics(p, t)
    _assert_matches(got, _reference(p, t))
    # np.corrcoef is what MMSA calls; it must agree too.
    assert got["Corr"] == pytest.approx(np.corrcoef(p, t)[0, 1], rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_references_on_small_unbalanced_splits(seed: int) -> None:
    # Small n makes absent classes and lopsided predictions common.
    rng = np.random.default_rng(100 + seed)
    for n in (2, 3, 5, 8):
        t = rng.choice([-1.5, -0.5, 0.0, 0.5, 2.5], size=n)
        p = rng.choice([-0.5, 0.0, 0.5, 1.5, 3.2], size=n)
        if np.all(p == p[0]) or np.all(t == t[0]):
            continue
        _assert_matches(mosi_metrics(p, t), _reference(p, t))


def test_float32_and_torch_inputs_give_the_float64_numbers() -> None:
    p, t = _mosi_like(7, n=64)
    p32, t32 = p.astype(np.float32), t.astype(np.float32)
    want = _reference(p32.astype(np.float64), t32.astype(np.float64))
    _assert_matches(mosi_metrics(p32, t32), want)
    _assert_matches(mosi_metrics(torch.from_numpy(p32), torch.from_numpy(t32)), want)
    # bfloat16 has no numpy dtype; values convert exactly through float64.
    pb = torch.from_numpy(p32).to(torch.bfloat16)
    _assert_matches(mosi_metrics(pb, torch.from_numpy(t32)), _reference(pb.double().numpy(), t32.astype(np.float64)))
    # Integer labels and plain lists are numbers too.
    want = _reference(np.array([0.5, -1.0, 2.0]), np.array([1.0, -2.0, 0.0]))
    _assert_matches(mosi_metrics([0.5, -1.0, 2.0], [1, -2, 0]), want)


# ---------------------------------------------------------------- a case worked by hand
def test_hand_computed_case() -> None:
    #        i:    0     1    2    3     4     5
    p = np.array([-0.5, 0.0, 2.0, 1.5, -1.5, 3.5])
    t = np.array([0.0, 2.5, 2.5, 2.0, -1.0, 2.2])
    got = mosi_metrics(p, t)

    # MAE (unclipped): |p-t| = 0.5, 2.5, 0.5, 0.5, 0.5, 1.3 -> 5.8 / 6.
    # (Clipping p5 to 3 first would give 0.8 there and 5.3 / 6.)
    assert got["MAE"] == pytest.approx(5.8 / 6, rel=1e-12)

    # Corr: sum p = 5, sum t = 8.2, sum pt = 0 + 0 + 5 + 3 + 1.5 + 7.7 = 17.2,
    # sum p^2 = 0.25 + 0 + 4 + 2.25 + 2.25 + 12.25 = 21, sum t^2 = 0 + 6.25 + 6.25 + 4 + 1 + 4.84 = 22.34.
    # r = (6*17.2 - 5*8.2) / sqrt((6*21 - 5^2) * (6*22.34 - 8.2^2)) = 62.2 / sqrt(101 * 66.8) ~ 0.75725.
    assert got["Corr"] == pytest.approx(62.2 / math.sqrt(101 * 66.8), rel=1e-12)

    # Acc-7: clip to [-3, 3], round half to even.
    #   p -> -0.5, 0, 2, 1.5, -1.5, 3 -> -0, 0, 2, 2, -2, 3
    #   t ->  0, 2.5, 2.5, 2, -1, 2.2 ->  0, 2, 2, 2, -1, 2
    #   equal at i0 (-0 == 0), i2, i3 -> 3 / 6.  (Half away from zero would give 1 / 6.)
    assert got["Acc-7"] == 3 / 6
    # Acc-5: clip to [-2, 2]: p5 3.5 -> 2 and t5 2.2 -> 2 now agree -> i0, i2, i3, i5 -> 4 / 6.
    assert got["Acc-5"] == 4 / 6

    # has0 (all 6): t >= 0: T T T T F T;  p >= 0: F T T T F T  (p1 = 0.0 counts as non-negative).
    #   correct: all but i0 -> 5 / 6.
    assert got["Acc-2_has0"] == 5 / 6
    #   class T: 5 true, 4 predicted, tp 4 -> F1 = 2*4 / (5 + 4) = 8/9
    #   class F: 1 true, 2 predicted, tp 1 -> F1 = 2*1 / (1 + 2) = 2/3
    #   weighted by true counts: (5 * 8/9 + 1 * 2/3) / 6 = (40/9 + 6/9) / 6 = 46/54.
    assert got["F1_has0"] == pytest.approx(46 / 54, rel=1e-12)

    # non0: drop i0 (t == 0) -> i1..i5.  t > 0: T T T F T;  p > 0: F T T F T  (p1 = 0.0 is negative here).
    #   correct: i2..i5 -> 4 / 5.
    assert got["Acc-2_non0"] == 4 / 5
    #   class T: 4 true, 3 predicted, tp 3 -> 6/7;  class F: 1 true, 2 predicted, tp 1 -> 2/3.
    #   weighted: (4 * 6/7 + 1 * 2/3) / 5 = (72/21 + 14/21) / 5 = 86/105.
    assert got["F1_non0"] == pytest.approx(86 / 105, rel=1e-12)

    # MELTR Table 6's BA / F1 are the non-zero variant.
    assert got["BA"] == got["Acc-2_non0"] and got["F1"] == got["F1_non0"]
    # And the hand numbers agree with the library references.
    _assert_matches(got, _reference(p, t))


def test_non0_excludes_exactly_the_zero_labels() -> None:
    # A label of 1e-9 (or -1e-9) is not zero and stays; 0.0 and -0.0 are dropped.
    t = np.array([0.0, -0.0, 1e-9, -1e-9, 1.0])
    p = np.array([5.0, -5.0, 1.0, 1.0, 1.0])
    got = mosi_metrics(p, t)
    # Kept: i2 (T vs T ok), i3 (F vs T wrong), i4 (ok) -> 2/3. Dropping nothing would give 3/5.
    assert got["Acc-2_non0"] == 2 / 3
    # Appending more zero-labelled samples, however wrong, leaves the non0 metrics unchanged.
    got2 = mosi_metrics(np.append(p, [-3.0, 3.0]), np.append(t, [0.0, 0.0]))
    assert (got2["Acc-2_non0"], got2["F1_non0"]) == (got["Acc-2_non0"], got["F1_non0"])
    assert got2["Acc-2_has0"] != got["Acc-2_has0"]


def test_zero_prediction_is_positive_for_has0_and_negative_for_non0() -> None:
    got = mosi_metrics([0.0, 0.0], [1.0, -1.0])
    assert got["Acc-2_has0"] == 0.5  # 0 >= 0: right for +1, wrong for -1
    assert got["Acc-2_non0"] == 0.5  # 0 > 0 is False: wrong for +1, right for -1
    got = mosi_metrics([0.0, 0.0], [1.0, 2.0])
    assert got["Acc-2_has0"] == 1.0 and got["Acc-2_non0"] == 0.0


@pytest.mark.parametrize(
    ("value", "rounded", "other"),
    [
        (2.5, 2, 3),  # half to even, not away from zero
        (-0.5, 0, -1),
        (1.5, 2, 1),  # not truncation
        (0.5, 0, 1),
        (-1.5, -2, -1),
        (-2.5, -2, -3),
        (2.4999, 2, 3),
        (3.5, 3, 2),  # clipped to 3 first (unclipped half-to-even would give 4)
        (-3.5, -3, -2),
    ],
)
def test_acc7_rounds_half_to_even_after_clipping(value: float, rounded: int, other: int) -> None:
    # The prediction sits on the tested value; a label on the expected class must match and a label on
    # the class a wrong rounding would pick must not.
    assert mosi_metrics([value], [float(rounded)])["Acc-7"] == 1.0
    assert mosi_metrics([value], [float(other)])["Acc-7"] == 0.0


def test_acc5_clips_at_two() -> None:
    got = mosi_metrics([2.6, -3.0], [3.0, -2.4])
    # Acc-5: 2.6 -> 2 vs 3.0 -> 2, and -3.0 -> -2 vs -2.4 -> -2: both equal.
    assert got["Acc-5"] == 1.0
    # Acc-7: round(2.6) = 3 == 3, but -3 != round(-2.4) = -2.
    assert got["Acc-7"] == 0.5


# ---------------------------------------------------------------- degenerate splits
@pytest.mark.parametrize("constant", ["pred", "label"])
def test_constant_input_gives_nan_corr_like_the_references(constant: str) -> None:
    p, t = _mosi_like(3, n=50)
    # The mean of 50 copies of 0.1 is not exactly 0.1, so centring leaves ~1e-17 residues: np.corrcoef
    # (MMSA's call) then returns a rounding artefact instead of NaN. Constancy must be tested exactly.
    if constant == "pred":
        p = np.full_like(p, 0.1)
    else:
        t = np.full_like(t, 0.1)
    assert np.mean(p if constant == "pred" else t) != 0.1  # the trap is really set
    got = mosi_metrics(p, t)
    assert math.isnan(got["Corr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(pearsonr(p, t).statistic)
    _assert_matches(got, _reference(p, t))  # every other metric stays defined


def test_nearly_constant_input_still_has_a_correlation() -> None:
    p = np.array([1.0, 1.0 + 2**-40, 1.0, 1.0 + 2**-40])
    t = np.array([0.0, 1.0, 0.5, 2.0])
    got = mosi_metrics(p, t)
    assert got["Corr"] == pytest.approx(pearsonr(p, t).statistic, rel=1e-9)


def test_huge_values_do_not_overflow_the_correlation() -> None:
    p = np.array([1e200, -1e200, 3e200, 0.0])
    t = np.array([1.0, -1.0, 2.0, 0.5])
    assert mosi_metrics(p, t)["Corr"] == pytest.approx(pearsonr(p / 1e200, t).statistic, rel=1e-12)


def test_single_sample() -> None:
    got = mosi_metrics([0.4], [-0.4])
    assert math.isnan(got["Corr"])
    assert got["MAE"] == pytest.approx(0.8)
    assert got["Acc-7"] == 1.0  # round(0.4) = 0 == -0 = round(-0.4)
    assert got["Acc-2_has0"] == 0.0 and got["F1_has0"] == 0.0 and got["BA"] == 0.0


def test_all_zero_labels_make_the_non0_metrics_nan() -> None:
    p = np.array([0.3, -0.2, 0.0, 1.7])
    t = np.zeros(4)
    got = mosi_metrics(p, t)
    for k in ("Acc-2_non0", "F1_non0", "BA", "F1"):
        assert math.isnan(got[k]), k
    # has0 is still defined: all labels are in the "non-negative" class.
    assert got["Acc-2_has0"] == 3 / 4
    assert got["F1_has0"] == pytest.approx(f1_score(t >= 0, p >= 0, average="weighted"))
    assert math.isnan(got["Corr"])  # constant labels
    assert got["MAE"] == pytest.approx(2.2 / 4)
    # -0.0 is zero as well.
    assert math.isnan(mosi_metrics([1.0, 2.0], [-0.0, 0.0])["BA"])


@pytest.mark.parametrize(
    ("p", "t"),
    [
        ([1.0, -1.0, 0.5, -2.0], [1.0, 2.0, 0.5, 3.0]),  # no negative label; predictions of both signs
        ([1.0, 2.0, 0.5, 3.0], [1.0, -2.0, 0.5, -3.0]),  # every prediction positive; labels of both signs
        ([-1.0, -2.0, -0.5, 0.0], [1.0, 2.0, 0.5, 3.0]),  # every prediction wrong, one class only in labels
        ([1.0, 2.0, 0.5, 3.0], [1.0, 2.0, 0.5, 3.0]),  # one class everywhere
    ],
)
def test_weighted_f1_with_an_absent_class_matches_sklearn(p: list[float], t: list[float]) -> None:
    p_arr, t_arr = np.array(p), np.array(t)
    got = mosi_metrics(p_arr, t_arr)
    _assert_matches(got, _reference(p_arr, t_arr))
    # A class with no true sample has weight 0, so sklearn's zero_division setting cannot matter.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for zd in (0.0, 1.0):
            non0 = f1_score(t_arr > 0, p_arr > 0, average="weighted", zero_division=zd)
            has0 = f1_score(t_arr >= 0, p_arr >= 0, average="weighted", zero_division=zd)
            assert got["F1_non0"] == pytest.approx(non0) and got["F1_has0"] == pytest.approx(has0)


# ---------------------------------------------------------------- input validation
@pytest.mark.parametrize(
    ("p", "t", "exc", "match"),
    [
        (np.zeros((3, 1)), np.zeros(3), ValueError, r"pred must be 1-D.*\(3, 1\)"),
        (np.zeros(3), np.zeros((1, 3)), ValueError, r"label must be 1-D"),
        (np.float64(1.0), np.zeros(1), ValueError, r"pred must be 1-D.*\(\)"),
        (np.zeros(0), np.zeros(0), ValueError, r"pred is empty"),
        (np.zeros(3), np.zeros(4), ValueError, r"same length.*3 predictions and 4 labels"),
        (np.array([0.0, np.nan, 1.0]), np.zeros(3), ValueError, r"pred has 1 non-finite.*\[1\]"),
        (np.zeros(3), np.array([np.inf, 0.0, -np.inf]), ValueError, r"label has 2 non-finite.*\[0, 2\]"),
        (np.array([True, False]), np.zeros(2), TypeError, r"pred must be real numbers.*bool"),
        (np.zeros(2), np.array(["a", "b"]), TypeError, r"label must be real numbers"),
        (np.zeros(2), np.array([1j, 2j]), TypeError, r"label must be real numbers.*complex"),
        (torch.zeros(2, 2), torch.zeros(4), ValueError, r"pred must be 1-D"),
        (torch.tensor([0.0, float("nan")]), torch.zeros(2), ValueError, r"pred has 1 non-finite"),
    ],
)
def test_invalid_inputs_raise_naming_the_problem(p: npt.ArrayLike, t: npt.ArrayLike, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        mosi_metrics(p, t)


def test_inputs_are_not_modified() -> None:
    p, t = _mosi_like(1)
    p0, t0 = p.copy(), t.copy()
    mosi_metrics(p, t)
    assert np.array_equal(p, p0) and np.array_equal(t, t0)


# ---------------------------------------------------------------- report and module hygiene
def test_format_mosi_names_the_paper_variant() -> None:
    p = np.array([-0.5, 0.0, 2.0, 1.5, -1.5, 3.5])
    t = np.array([0.0, 2.5, 2.5, 2.0, -1.0, 2.2])
    line = format_mosi(mosi_metrics(p, t))
    assert "\n" not in line
    # Values from test_hand_computed_case, as percentages with one decimal / three decimals.
    assert line.startswith("BA(=Acc-2_non0) 80.0  F1(=F1_non0) 81.9  MAE 0.967  Corr 0.757 | ")
    assert "Acc-2_has0 83.3  F1_has0 85.2  Acc-7 50.0  Acc-5 66.7" in line
    assert "F1(=F1_non0) 81.90" in format_mosi(mosi_metrics(p, t), digits=2)
    assert "BA(=Acc-2_non0) nan" in format_mosi(mosi_metrics([1.0, 2.0], [0.0, 0.0]))
    bad = dict(mosi_metrics(p, t))
    del bad["BA"], bad["Corr"]
    with pytest.raises(KeyError, match=r"\['Corr', 'BA'\]"):
        format_mosi(bad)


def test_module_imports_only_numpy_and_stdlib() -> None:
    # The module must not lean on the libraries the tests use as references.
    tree = ast.parse(Path(mosi.__file__).read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module.split(".")[0])
    assert mods <= {"__future__", "math", "collections", "typing", "numpy"}, mods


def test_exported_from_the_package() -> None:
    import evaluation

    assert evaluation.mosi_metrics is mosi_metrics and evaluation.format_mosi is format_mosi
