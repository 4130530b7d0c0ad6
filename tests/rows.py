"""Running a paper-row script with TINY=1 and checking what it leaves behind (shared by the row tests)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meltr.checkpoint import load_checkpoint
from meltr.log import read_jsonl
from scripts.evaluate import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, env: dict[str, str], args: list[str] = (), timeout: int = 300) -> subprocess.CompletedProcess:
    """``bash scripts/<script> args...`` from the repository root with ``env`` added to the environment."""
    return subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "2", **env},
                          capture_output=True, text=True, timeout=timeout)


def check_tiny_run(script: str, out: Path, losses: list[str], metrics: set[str], env: dict[str, str] | None = None,
                   meta: bool = True, args: list[str] = ()) -> dict[str, Any]:
    """Runs ``script`` with TINY=1 into ``out`` and checks the run: the printed summary equals the saved
    checkpoint's metrics, the logged losses are ``losses`` in order, a meta step was logged (``meta``), the
    ``metrics`` keys exist, and evaluating ``last.pt`` again reproduces them. Returns the checkpoint."""
    proc = run_script(script, {"TINY": "1", "OUTPUT_DIR": str(out), **(env or {})}, list(args))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])  # a report line follows the JSON
    state = load_checkpoint(out / "last.pt")
    assert state["metrics"] == summary["metrics"]
    records = read_jsonl(out / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert list(train[0]["losses"]) == losses
    assert any(r["kind"] == "meta" for r in records) == meta
    assert metrics <= set(state["metrics"]), sorted(state["metrics"])
    now, saved = evaluate_checkpoint(str(out / "last.pt"))
    assert now == pytest.approx(saved, rel=1e-6, abs=1e-9)
    state["stdout"] = proc.stdout
    return state
