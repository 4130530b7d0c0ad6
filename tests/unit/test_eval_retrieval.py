"""Retrieval metrics vs an independent brute-force reference and the official UniVL golden numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import retrieval
from evaluation.retrieval import (
    format_metrics,
    ranks,
    Ties,
    retrieval_metrics,
    retrieval_metrics_multi,
    text_to_video,
    to_percent,
    video_to_text,
)

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared/fixtures/univl/golden.pt"
MODES: tuple[Ties, ...] = ("official", "optimistic", "pessimistic")


# ---------------------------------------------------------------- brute-force reference (plain loops)
def _bf_ranks_one(scores: list[float], own: set[int]) -> tuple[int, int]:
    """(optimistic, pessimistic) 0-based position of the first own candidate in a sorted list.

    Sorts (score desc, then own-first or own-last) with Python's sort, then walks the list.
    """
    out = []
    for own_first in (True, False):
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], (j not in own) if own_first else (j in own)))
        out.append(next(p for p, j in enumerate(order) if j in own))
    return out[0], out[1]


def _bf_rank_list(opt_pess: list[tuple[int, int]], ties: str) -> list[int]:
    ranks_out: list[int] = []
    for opt, pess in opt_pess:
        if ties == "optimistic":
            ranks_out.append(opt)
        elif ties == "pessimistic":
            ranks_out.append(pess)
        else:  # the official np.where picks every tied position, i.e. every rank from opt to pess
            ranks_out.extend(range(opt, pess + 1))
    return ranks_out


def _bf_summary(rank_list: list[int], ks: tuple[int, ...], prefix: str = "") -> dict[str, float]:
    n = len(rank_list)
    srt = sorted(rank_list)
    med = srt[n // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2
    out = {f"{prefix}R@{k}": sum(r < k for r in rank_list) / n for k in ks}
    out[f"{prefix}MedR"] = med + 1
    out[f"{prefix}MeanR"] = sum(rank_list) / n + 1
    return out


def bf_square(sim: np.ndarray, ties: str, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    rows = [_bf_ranks_one(list(map(float, sim[i])), {i}) for i in range(sim.shape[0])]
    return _bf_summary(_bf_rank_list(rows, ties), ks)


def bf_multi(sim: np.ndarray, t2v: list[int], ties: str, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    n_text, n_video = sim.shape
    t_rows = [_bf_ranks_one(list(map(float, sim[t])), {t2v[t]}) for t in range(n_text)]
    v_rows = []
    for v in range(n_video):
        own = {t for t in range(n_text) if t2v[t] == v}
        best = max(sim[t, v] for t in own)
        # Only the best own text competes; the video's other texts are removed from the candidate list.
        keep = [t for t in range(n_text) if t not in own] + [next(t for t in own if sim[t, v] == best)]
        v_rows.append(_bf_ranks_one([float(sim[t, v]) for t in keep], {len(keep) - 1}))
    return {**_bf_summary(_bf_rank_list(t_rows, ties), ks, "t2v_"), **_bf_summary(_bf_rank_list(v_rows, ties), ks, "v2t_")}


def _tied_matrix(rng: np.random.Generator, n_rows: int, n_cols: int) -> np.ndarray:
    # Few distinct values, so most rows have ties with their true score.
    return rng.integers(0, 4, size=(n_rows, n_cols)).astype(np.float32)


def _assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k


# ---------------------------------------------------------------- golden (official compute_metrics)
@pytest.fixture(scope="module")
def golden() -> dict:
    assert GOLDEN.is_file(), f"golden fixture missing: {GOLDEN}"
    return torch.load(GOLDEN, weights_only=True)["outputs"]


@pytest.mark.parametrize(
    "sim_key,metric_key",
    [("retrieval_metric_example_sim", "rand_sim_20x20"), ("sim_joint_cos", "sim_joint_cos"), ("sim_cross", "sim_cross")],
)
def test_official_numbers_reproduced_exactly(golden: dict, sim_key: str, metric_key: str) -> None:
    want = golden["retrieval_metrics"][metric_key]
    for sim in (golden[sim_key], golden[sim_key].numpy()):
        got = retrieval_metrics(sim)  # default ties = official
        assert (got["R@1"], got["R@5"], got["R@10"], got["MedR"]) == (want["R1"], want["R5"], want["R10"], want["MR"])
        t2v = text_to_video(sim)
        assert t2v["t2v_R@1"] == want["R1"] and t2v["t2v_MedR"] == want["MR"]


def test_golden_literal_values(golden: dict) -> None:
    # Independent of the stored dict: the values quoted in the fixture README.
    got = retrieval_metrics(golden["retrieval_metric_example_sim"])
    assert (got["R@1"], got["R@5"], got["R@10"], got["MedR"]) == (0.30, 0.65, 0.80, 2.5)
    got = retrieval_metrics(golden["sim_joint_cos"])
    assert (got["R@1"], got["R@5"], got["R@10"], got["MedR"]) == (0.25, 1.0, 1.0, 3.0)


# ---------------------------------------------------------------- brute force, with and without ties
@pytest.mark.parametrize("ties", MODES)
@pytest.mark.parametrize("n", [1, 2, 7, 23])
def test_square_matches_brute_force(ties: Ties, n: int) -> None:
    rng = np.random.default_rng(n)
    for sim in (rng.standard_normal((n, n)).astype(np.float32), _tied_matrix(rng, n, n)):
        want = bf_square(sim, ties, ks=(1, 3, 5, 10))
        _assert_close(retrieval_metrics(sim, ks=(1, 3, 5, 10), ties=ties), want)
        _assert_close(retrieval_metrics(torch.from_numpy(sim), ks=(1, 3, 5, 10), ties=ties), want)


def test_chunked_path_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "_CHUNK", 3)  # force several partial chunks
    rng = np.random.default_rng(5)
    sim = _tied_matrix(rng, 11, 11)
    for ties in MODES:
        _assert_close(retrieval_metrics(sim, ties=ties), bf_square(sim, ties))
    sim = _tied_matrix(rng, 14, 5)
    idx = [t % 5 for t in range(14)]
    for ties in MODES:
        _assert_close(retrieval_metrics_multi(sim, idx, ties=ties), bf_multi(sim, idx, ties))


def test_tie_modes_by_hand() -> None:
    # Row 0: true score 1 tied with one other -> official ranks {0, 1}; row 1: clear win -> rank 0.
    sim = np.array([[1.0, 1.0], [0.0, 1.0]])
    assert ranks(sim, "official").tolist() == [0, 1, 0]
    assert ranks(sim, "optimistic").tolist() == [0, 0]
    assert ranks(sim, "pessimistic").tolist() == [1, 0]
    off = retrieval_metrics(sim)
    assert off["R@1"] == pytest.approx(2 / 3) and off["MedR"] == 1.0 and off["MeanR"] == pytest.approx(4 / 3)
    pes = retrieval_metrics(sim, ties="pessimistic")
    assert pes["R@1"] == 0.5 and pes["MedR"] == 1.5 and pes["MeanR"] == 1.5
    assert retrieval_metrics(sim, ties="optimistic")["R@1"] == 1.0


def test_all_tied_row_spreads_over_every_rank() -> None:
    sim = np.zeros((4, 4))  # every score equal: official counts each row at ranks 0..3
    assert ranks(sim).tolist() == [0, 1, 2, 3] * 4
    assert retrieval_metrics(sim)["R@1"] == 0.25 and retrieval_metrics(sim)["MedR"] == 2.5


def test_dtypes_and_directions() -> None:
    rng = np.random.default_rng(1)
    sim = rng.standard_normal((9, 9)).astype(np.float32)
    ref = retrieval_metrics(sim)
    # bfloat16 rounding creates ties; the result must equal the numpy result on the same rounded values.
    bf = torch.from_numpy(sim).to(torch.bfloat16)
    assert retrieval_metrics(bf) == retrieval_metrics(bf.float().numpy())
    assert retrieval_metrics(sim.astype(np.float64)) == ref
    v2t = video_to_text(sim)
    assert v2t == {"v2t_" + k: v for k, v in retrieval_metrics(sim.T.copy()).items()}
    assert text_to_video(sim) == {"t2v_" + k: v for k, v in ref.items()}


def test_infinite_scores_are_ordinary_values() -> None:
    sim = np.array([[np.inf, np.inf, 0.0], [-np.inf, 0.0, 1.0], [0.0, 0.0, -np.inf]])
    for ties in MODES:
        _assert_close(retrieval_metrics(sim, ties=ties), bf_square(sim, ties))


# ---------------------------------------------------------------- several captions per video
@pytest.mark.parametrize("ties", MODES)
def test_multi_matches_brute_force(ties: Ties) -> None:
    rng = np.random.default_rng(3)
    n_video = 6
    idx = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 1, 3]  # 1 to 3 texts per video, not grouped
    for sim in (rng.standard_normal((12, n_video)), _tied_matrix(rng, 12, n_video)):
        _assert_close(retrieval_metrics_multi(sim, idx, ties=ties), bf_multi(sim, idx, ties))
        _assert_close(retrieval_metrics_multi(torch.from_numpy(sim), torch.tensor(idx), ties=ties), bf_multi(sim, idx, ties))


@pytest.mark.parametrize("ties", MODES)
def test_multi_with_one_text_per_video_equals_square(ties: Ties) -> None:
    rng = np.random.default_rng(4)
    sim = _tied_matrix(rng, 10, 10)
    got = retrieval_metrics_multi(sim, list(range(10)), ties=ties)
    assert got == {**text_to_video(sim, ties=ties), **video_to_text(sim, ties=ties)}


def test_multi_is_invariant_to_text_order() -> None:
    rng = np.random.default_rng(6)
    sim = rng.standard_normal((15, 5))
    idx = np.arange(15) % 5
    perm = rng.permutation(15)
    assert retrieval_metrics_multi(sim, idx) == retrieval_metrics_multi(sim[perm], idx[perm])


def test_multi_v2t_by_hand() -> None:
    # Video 0 owns texts 0 (0.1) and 1 (0.8); video 1 owns text 2.
    sim = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.6]])
    got = retrieval_metrics_multi(sim, [0, 0, 1], ks=(1,))
    # v2t video 0: best own 0.8 beats foreign text 2 (0.5) -> rank 0 (with the worst own text, 0.1, it
    # would be rank 1). Video 1: own 0.6 loses to foreign text 0 (0.9) -> rank 1.
    assert (got["v2t_R@1"], got["v2t_MedR"], got["v2t_MeanR"]) == (0.5, 1.5, 1.5)
    # t2v: text 0 ranks its video second, texts 1 and 2 first.
    assert got["t2v_R@1"] == pytest.approx(2 / 3) and got["t2v_MedR"] == 1.0
    # A video's own texts tied with each other are not competitors, even pessimistically.
    tied_own = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert retrieval_metrics_multi(tied_own, [0, 0, 1], ties="pessimistic")["v2t_R@1"] == 1.0
    assert retrieval_metrics_multi(tied_own, [0, 0, 1], ties="official")["v2t_MeanR"] == 1.0


# ---------------------------------------------------------------- input checks and formatting
def test_input_errors() -> None:
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="ties"):
        retrieval_metrics(np.eye(2), ties="average")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(np.eye(2), ks=(0, 5))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(np.zeros(3))
    with pytest.raises(ValueError, match=r"out of range.*\[1\]"):
        retrieval_metrics_multi(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match=r"videos \[1\]"):
        retrieval_metrics_multi(np.zeros((2, 2)), [0, 0])
    with pytest.raises(ValueError, match="one per row"):
        retrieval_metrics_multi(np.zeros((3, 2)), [0, 1])


def test_percent_and_format() -> None:
    m = {"t2v_R@1": 0.3, "t2v_R@5": 0.65, "t2v_MedR": 2.5, "t2v_MeanR": 4.0}
    assert to_percent(m) == {"t2v_R@1": 30.0, "t2v_R@5": 65.0, "t2v_MedR": 2.5, "t2v_MeanR": 4.0}
    assert format_metrics(m) == "t2v_R@1 30.00  t2v_R@5 65.00  t2v_MedR 2.5  t2v_MeanR 4"
    assert format_metrics(m, percent=False, digits=3) == "t2v_R@1 0.300  t2v_R@5 0.650  t2v_MedR 2.5  t2v_MeanR 4"
