"""The two examples a new user runs first, with the documented defaults, as a user would: in a
subprocess whose stderr is a file (not a terminal), under plain Python and under torchrun.

The MLP example runs to the end with ``TrainerConfig()`` (3 epochs) and must reach a sensible
accuracy; the MiniLM example (22.7 M parameters) runs a few steps here, its full run is behind
``MELTR_SLOW_TESTS=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


from meltr.checkpoint import load_checkpoint
from meltr.log import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
SLOW = os.environ.get("MELTR_SLOW_TESTS") == "1"


def _run(args: list[str], tmp_path: Path, nproc: int = 1, timeout: int = 300) -> str:
    """Runs ``python -m <args>`` (or torchrun with ``nproc`` processes) with stderr to a file; returns it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1" if nproc > 1 else "2", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else [sys.executable]
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:  # a file, not a TTY: what SLURM, nohup and notebooks see
        proc = subprocess.run([*launcher, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def _check_log(text: str, run_dir: Path, total: int) -> None:
    """Plain progress lines (step, loss, task weights, ETA), the evaluation and the result line."""
    steps = [int(m) for m in re.findall(rf"step (\d+)/{total} ", text)]
    assert steps and steps[0] == 1 and steps == sorted(steps)
    assert re.search(r"weights cls [-\d.e]+", text) and "ETA" in text
    final = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert final["kind"] == "summary" and final["step"] == total
    assert f"done at step {total}" in text and f"test_acc {final['metrics']['test_acc']:.4g}" in text
    assert "\r" not in text  # no progress bar without a terminal


def test_mlp_example_learns_with_the_defaults_and_logs_without_a_terminal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    text = _run(["examples.mlp", "--run-dir", str(run)], tmp_path)
    state = load_checkpoint(run / "last.pt")
    _check_log(text, run, state["step"])
    assert state["epoch"] == 3  # TrainerConfig's default epochs
    # 10 classes: chance is 0.1; an MLP with the defaults must do far better
    assert state["metrics"]["test_acc"] > 0.8
    assert load_checkpoint(run / "best.pt")["best"]["value"] >= state["metrics"]["test_acc"]


def test_mlp_example_under_torchrun_initialises_ddp_and_shards_the_loader(tmp_path: Path) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    one = _run(["examples.mlp", "--run-dir", str(single), "--max-steps", "4"], tmp_path)
    two = _run(["examples.mlp", "--run-dir", str(double), "--max-steps", "4"], tmp_path, nproc=2)
    assert "sharding train_loader across 2 ranks" in two and "2 rank(s)" in two
    state = load_checkpoint(double / "last.pt")
    assert state["world_size"] == 2 and len(list(double.glob("last.pt.rank1.*"))) == 1  # one committed set
    # each rank reads half of the data: an epoch has half as many steps as in one process
    per_epoch = [int(re.search(r"\((\d+) per epoch\)", t).group(1)) for t in (one, two)]
    assert abs(per_epoch[1] - per_epoch[0] / 2) <= 1
    assert read_jsonl(double / "metrics.jsonl")[-1]["step"] == 4


def _minilm_steps() -> list[str]:
    return [] if SLOW else ["--max-steps", "3"]


def test_minilm_example_runs_and_logs_without_a_terminal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    text = _run(["examples.minilm", "--run-dir", str(run), *_minilm_steps()], tmp_path, timeout=900)
    state = load_checkpoint(run / "last.pt")
    _check_log(text, run, state["step"])
    if SLOW:  # the full run with the defaults: two classes, chance is 0.5
        assert state["metrics"]["test_acc"] > 0.9


def test_minilm_example_under_torchrun(tmp_path: Path) -> None:
    run = tmp_path / "run"
    text = _run(["examples.minilm", "--run-dir", str(run), "--max-steps", "2"], tmp_path, nproc=2, timeout=600)
    assert "sharding train_loader across 2 ranks" in text and "2 rank(s)" in text
    assert load_checkpoint(run / "last.pt")["world_size"] == 2
