"""The CPU demo end to end (tiny settings): every reported number is the validation-selected one and
agrees with evaluation from the saved checkpoints, the fixed grid is searched and charged in full, the
figure is linked, and the demo runs under torchrun with two processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from meltr.checkpoint import load_checkpoint
from meltr.config import ConfigError
from scripts import demo
from scripts.digits import DigitsCNN, PairedDigits, accuracy, collate, load_digits_split

ROOT = Path(__file__).resolve().parents[2]
# 12 steps of 16 images, validation every 4: three evaluations to select from
TINY = ["--set", "seeds=[0]", "--set", "batch_size=16", "--set", "trainer.max_steps=12", "--set", "trainer.eval_every=4",
        "--set", "trainer.log_every=2"]


def _row(table: str, method: str) -> list[str]:
    line = next(l for l in table.splitlines() if l.startswith(f"| {method} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _val_history(run_dir: Path) -> dict[int, float]:
    """Validation accuracy by step, in log order."""
    records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["metrics"]["val_acc"] for r in records if r["kind"] == "eval"}


def test_split_is_stratified_and_disjoint() -> None:
    split = load_digits_split(10, 7, 0.3)
    assert torch.equal(torch.bincount(split.labelled_y), torch.full((10,), 10))
    assert torch.equal(torch.bincount(split.val_y), torch.full((10,), 7))
    images = torch.cat([split.labelled_x, split.val_x, split.test_x, split.unlabelled_x]).flatten(1)
    assert len(images) == 1797 and len(split.random_y) == len(split.unlabelled_x)
    assert len({tuple(x.tolist()) for x in images}) == 1797  # the 1,797 digits images are distinct: the parts are disjoint


def test_harmful_model_adds_the_random_label_loss() -> None:
    split = load_digits_split(10, 10, 0.3)
    batch = collate([PairedDigits(split)[i] for i in range(8)])
    plain, harmful = DigitsCNN(), DigitsCNN(harmful=True)
    harmful.load_state_dict(plain.state_dict())  # the same parameters: the fourth loss needs no new head
    out = harmful(batch)
    assert tuple(out) == harmful.loss_names == ("cls", "rotation", "mixup", "random_labels")
    expected = torch.nn.functional.cross_entropy(harmful.logits(batch["u"]), batch["r"])
    torch.testing.assert_close(out["random_labels"], expected)
    assert tuple(plain(batch)) == plain.loss_names == ("cls", "rotation", "mixup")


def test_demo_reports_validation_selected_runs_and_their_checkpoints(tmp_path) -> None:
    args = ["--set", f"out_dir={tmp_path}", "--set", "settings=[harmful]", "--set", "methods=[sum,fixed,meltr]",
            "--set", "fixed_grid=[0.0,1.0]", *TINY]
    assert demo.main(args) == 0
    text = (tmp_path / "results.md").read_text()
    table = text.split("## (b)")[1]
    split = load_digits_split(10, 10, 0.3)

    def check(run_dir: Path, row: list[str]) -> float:
        """The run's best.pt is its first best validation; the row shows its val and test accuracy."""
        state = load_checkpoint(run_dir / "best.pt")
        history = _val_history(run_dir)
        assert len(history) == 3
        best = max(history.values())
        assert state["step"] == next(s for s, v in history.items() if v == best) and state["best"]["value"] == best
        model = DigitsCNN(harmful=True)
        model.load_state_dict(state["model"])
        test = accuracy(model.eval(), split.test_x, split.test_y)
        assert float(row[2].split(" +- ")[0]) == pytest.approx(100 * best, abs=0.006)
        assert float(row[3].split(" +- ")[0]) == pytest.approx(100 * test, abs=0.006)

    for method in ("sum", "meltr"):
        check(demo.run_dir_of(tmp_path, "harmful", method, "", 0), _row(table, method))
    # fixed: all 2^3 grid points ran; the reported one is the first with the best validation accuracy
    assert len(list((tmp_path / "harmful" / "fixed").iterdir())) == 8
    points = [p for p, _ in demo.combiners(demo.DemoConfig(fixed_grid=[0.0, 1.0]), "fixed", DigitsCNN(harmful=True).loss_names)]
    vals = [max(_val_history(demo.run_dir_of(tmp_path, "harmful", "fixed", p, 0)).values()) for p in points]
    best = points[vals.index(max(vals))]
    assert f"seed 0: {best}" in table
    check(demo.run_dir_of(tmp_path, "harmful", "fixed", best, 0), _row(table, "fixed"))
    # compute = runs x seconds per run, and the grid is charged in full
    for method, runs in (("sum", 1), ("fixed", 8), ("meltr", 1)):
        row = _row(table, method)
        assert int(row[1]) == runs and float(row[5]) == pytest.approx(runs * float(row[4]), abs=0.05 * runs + 0.05)
    assert re.search(r"!\[task weights[^\]]*\]\(harmful/task_weights\.png\)", table)
    assert (tmp_path / "harmful" / "task_weights.png").stat().st_size > 0


def test_demo_config_errors_name_the_file_and_key(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  meta:\n    evry: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*trainer\.meta\.evry"):
        demo.main(["--config", str(bad)])
    with pytest.raises(ConfigError, match=r"trainer\.epochs"):
        demo.main(["--set", "trainer.epochs=three"])
    with pytest.raises(ConfigError, match=r"unknown or no methods \['mtl'\]"):
        demo.main(["--set", "methods=[sum,mtl]"])


def test_demo_runs_under_torchrun_with_two_processes(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "scripts.demo",
           "--set", f"out_dir={tmp_path}", "--set", "settings=[appendix_h]", "--set", "methods=[meltr]", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in (tmp_path / "results.md").read_text()
    assert load_checkpoint(tmp_path / "appendix_h" / "meltr" / "seed0" / "last.pt")["world_size"] == 2
