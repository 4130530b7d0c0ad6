"""meltr.plot's task weights against the step, over several runs (the CPU demo's figure)."""

from __future__ import annotations

import math

import pytest

from meltr.plot import build_weights_over_steps, weights_over_steps


def _train(step: int, weights: dict[str, float]) -> dict:
    return {"kind": "train", "step": step, "epoch": 0, "task_weights": weights}


RUN_A = [_train(0, {"cls": 1.0, "aux": 1.0}), {"kind": "eval", "step": 5}, _train(5, {"cls": 1.5, "aux": 0.5})]
RUN_B = [_train(0, {"cls": 1.0, "aux": 1.0}), _train(5, {"cls": 2.5, "aux": -0.5}), _train(10, {"cls": 3.0})]


def test_weights_are_averaged_per_step_with_their_range() -> None:
    d = weights_over_steps([RUN_A, RUN_B])
    assert d["steps"] == [0, 5, 10]
    assert d["mean"]["cls"] == [1.0, 2.0, 3.0] and d["min"]["cls"] == [1.0, 1.5, 3.0] and d["max"]["cls"] == [1.0, 2.5, 3.0]
    assert d["mean"]["aux"][:2] == [1.0, 0.0] and math.isnan(d["mean"]["aux"][2])  # no run logged aux at step 10
    with pytest.raises(ValueError, match="no train records"):
        weights_over_steps([[{"kind": "eval", "step": 0}]])


def test_one_panel_per_combiner_with_a_line_per_task() -> None:
    import matplotlib  # noqa: F401  - pinned: a missing matplotlib fails, never skips
    fig = build_weights_over_steps({"linear": [RUN_A], "meltr": [RUN_A, RUN_B]}, title="demo")
    assert [ax.get_title() for ax in fig.axes] == ["linear", "meltr"]
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()][1:] == ["cls", "aux"]  # after the zero line
    assert list(fig.axes[1].get_lines()[1].get_ydata()) == [1.0, 2.0, 3.0]
