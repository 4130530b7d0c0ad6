"""The benchmark plumbing: method roles from config overrides, the saved-tensor meter's accounting and the
goal lines (no timing asserted)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.common import META_METHODS, MethodResult, goal_lines, method_role, trainer_config
from benchmarks.memory import SavedTensorMeter


def test_roles_follow_the_configs() -> None:
    assert {n: method_role(n, s) for n, s in META_METHODS.items()} == {
        "sum": "baseline", "lite_official": "official", "lite_jvp": "fast", "lite_fd": "fast", "lite_vjp": "fast",
        "current_vjp": "fast", "current_jvp": "fast", "current_fd": "fast"}
    assert method_role("x", {"hypergrad": {"name": "aid_cg"}}) == "other"
    assert method_role("x", {"hypergrad": {}}) == "fast"  # aid_fp_lite's default mode is jvp
    assert method_role("x", {"role": "official", "hypergrad": {"mode": "fd"}}) == "official"


def test_one_line_method_reaches_the_trainer_config() -> None:
    cfg = trainer_config({"hypergrad": {"mode": "fd", "fd_eps": 1e-3}, "meta": {"share_batch": True}},
                         preset="univl", optim=None, every=5, gamma=0.2)
    assert (cfg.meta.every, cfg.meta.gamma, cfg.meta.share_batch) == (5, 0.2, True)
    assert (cfg.meta.hypergrad.mode, cfg.meta.hypergrad.fd_eps) == ("fd", 1e-3)
    with pytest.raises(ValueError, match="unknown keys"):
        method_role("bad", {"hypergrads": {}})
    with pytest.raises(TypeError):
        trainer_config({"hypergrad": {"nope": 1}}, preset="univl", optim=None, every=3, gamma=0.1)


def test_saved_tensor_meter_counts_live_storages_once_and_skips_parameters() -> None:
    w = torch.randn(64, 64, requires_grad=True)
    x = torch.randn(32, 64)
    with SavedTensorMeter(exclude=[w]) as meter:
        (w * w).sum().backward()  # saves only w, twice: excluded
        h = x @ w  # saves x (8 KiB; w needs no saving for x has no grad)
        y = h.tanh()  # saves its output y (8 KiB)
        z = (y * y).sum()  # saves y twice: the same storage, counted once
        assert meter.live_bytes == 2 * 32 * 64 * 4
        z.backward()
        del h, y, z
    assert meter.live_bytes == 0
    assert meter.peak_bytes == 2 * 32 * 64 * 4


def test_goal_lines_verdicts() -> None:
    res = {"sum": MethodResult(100.0, 10.0, 20.0, 3), "lite_official": MethodResult(190.0, 30.0, 40.0, 3),
           "lite_jvp": MethodResult(120.0, 10.2, 20.5, 3), "lite_fd": MethodResult(140.0, 12.0, None, 3)}
    lines = goal_lines(res, every=3)
    text = "\n".join(lines)
    assert "(a) lite_jvp: overhead over sum / official-style overhead = 20.0 / 90.0 ms = 0.22 (goal <= 0.33): met" in text
    assert "(b) lite_jvp: step time / sum step time at K=3 = 1.200 (goal <= 1.35 at K=3): met" in text
    assert "(a) lite_fd: overhead over sum / official-style overhead = 40.0 / 90.0 ms = 0.44 (goal <= 0.33): NOT met" in text
    assert "(c) lite_fd: saved-tensor peak / sum = 1.200 (goal <= 1.05): NOT met; process peak / sum = n/a" in text
    assert "not measured" in text  # lite_fd's process peak
    assert "informational" in "\n".join(goal_lines(res, every=5))
