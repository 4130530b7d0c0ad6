"""Smoke run of ``python -m benchmarks.gpu_check --device cpu --size tiny``: every section and method is
printed with finite numbers (the CUDA run is the same code at base size; no timing is asserted). The smoke
run takes one method per kind (baseline, official, a buffer-mode and a current-source fast mode) to stay
within CI time; the method table itself is data (``META_METHODS``)."""

from __future__ import annotations

import math

import pytest

from benchmarks import gpu_check
from benchmarks.common import META_METHODS, method_role

METHODS = {n: META_METHODS[n] for n in ("sum", "lite_official", "lite_fd", "current_vjp")}


def _section(out: str, number: int) -> list[list[str]]:
    """Cells of the table rows under ``## <number>.`` (header and separator dropped)."""
    body = out.split(f"## {number}.", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


@pytest.fixture(scope="module")
def output() -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        # A large budget: on a loaded CI machine the time guard must not skip rows (it is not what is tested).
        assert gpu_check.main(["--device", "cpu", "--size", "tiny", "--budget", "600", "--attention", "sdpa"],
                             methods=METHODS) == 0
    return buf.getvalue()


def test_device_line_and_sections(output: str) -> None:
    assert output.startswith("# MELTR GPU check: tiny size on CPU")
    for number in (1, 2, 3):
        assert f"## {number}." in output


def test_train_table_has_every_backbone_and_method_with_finite_numbers(output: str) -> None:
    rows = _section(output, 1)
    for backbone in gpu_check.BACKBONES:
        for precision in ("fp32", "bf16"):
            assert {r[3] for r in rows if r[0] == backbone and r[1] == precision} == set(METHODS), (backbone, precision)
    for r in rows:
        values = [float(c) for c in r[4:] if c]  # the overhead fraction is blank for sum
        assert len(values) == (6 if r[3] == "sum" else 7) and all(math.isfinite(v) for v in values), r
        assert float(r[4]) > 0 and float(r[7]) > 0, r  # ms and saved-tensor peak


def test_goal_table_has_each_goal_for_each_fast_mode(output: str) -> None:
    lines = [r[3] for r in _section(output, 2)]
    fast = [n for n, s in METHODS.items() if method_role(n, s) == "fast"]
    for name in fast:
        for goal in ("(a)", "(b)", "(c)"):
            assert sum(line.startswith(f"{goal} {name}:") for line in lines) == 2 * len(gpu_check.BACKBONES)  # fp32, bf16
    assert all(line.endswith(("met", "NOT met", "informational")) or "not measurable" in line for line in lines)


def test_agreement_table_compares_every_fast_mode_with_finite_numbers(output: str) -> None:
    rows = [r for r in _section(output, 3) if r[1] == "fp32"]
    fast = {n for n, s in METHODS.items() if method_role(n, s) == "fast"}
    for backbone in gpu_check.BACKBONES:
        assert {r[2] for r in rows if r[0] == backbone} == fast, backbone
    for r in rows:
        rel, cos = float(r[3]), float(r[4])
        assert math.isfinite(rel) and -1.0 <= cos <= 1.0, r
    # current_vjp is exact up to rounding (the official step on the same batch and weights): a check that the
    # two hypergradients really come from the same batch and weights; fd is an estimate (see
    # tests/unit/test_first_order_accuracy.py)
    assert all(float(r[3]) < 1e-3 for r in rows if r[2] == "current_vjp")
    assert all(float(r[3]) < 2e-2 and float(r[4]) > 0.999 for r in rows if r[2] == "lite_fd")
