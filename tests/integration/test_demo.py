"""The CPU demo end to end (tiny settings): its table agrees with evaluation from the saved
checkpoints, and it runs under torchrun with two processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meltr.checkpoint import load_checkpoint
from meltr.config import ConfigError
from scripts import demo
from scripts.digits import DigitsCNN, accuracy, load_digits_split

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "seeds=[0]", "--set", "trainer.epochs=1", "--set", "trainer.log_every=2"]


def test_demo_table_matches_evaluation_from_checkpoints(tmp_path) -> None:
    assert demo.main(["--set", f"out_dir={tmp_path}", "--set", "methods=[sum,meltr]", *TINY]) == 0
    table = (tmp_path / "results.md").read_text()
    split = load_digits_split(10, 0.3)
    for method in ("sum", "meltr"):
        state = load_checkpoint(tmp_path / method / "seed0" / "last.pt")
        model = DigitsCNN()
        model.load_state_dict(state["model"])
        acc = accuracy(model.eval(), split.test_x, split.test_y)
        assert acc == state["metrics"]["test_acc"]
        row = re.search(rf"\| {method} \| ([0-9.]+) \+- ", table)
        assert row is not None and float(row.group(1)) == pytest.approx(100 * acc, abs=0.006)
    assert (tmp_path / "meltr" / "seed0" / "metrics.jsonl").stat().st_size > 0


def test_demo_config_errors_name_the_file_and_key(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  meta:\n    evry: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*trainer\.meta\.evry"):
        demo.main(["--config", str(bad)])
    with pytest.raises(ConfigError, match=r"trainer\.epochs"):
        demo.main(["--set", "trainer.epochs=three"])


def test_demo_runs_under_torchrun_with_two_processes(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "scripts.demo",
           "--set", f"out_dir={tmp_path}", "--set", "methods=[meltr]", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in (tmp_path / "results.md").read_text()
    main_state = load_checkpoint(tmp_path / "meltr" / "seed0" / "last.pt")
    rank1 = load_checkpoint(tmp_path / "meltr" / "seed0" / "last.pt.rank1")
    assert main_state["world_size"] == 2 and set(rank1) >= {"rng", "meta"} and set(rank1["meta"]) == {"generator", "buffer"}
