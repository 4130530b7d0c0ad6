"""Both All-in-one row scripts run with TINY=1 (real mp4 files in the official MSRVTT layout, tiny model) and
their evaluation reproduces from the saved checkpoint; the baseline and the fork's MLM meta-objective
(``model.target_loss``) are one switch each."""

from __future__ import annotations

from tests.rows import check_tiny_run, run_script

METRICS = {"t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_MedR", "uniform_t2v_R@1", "R@1_sum"}


def test_7k_row_runs_tiny_with_meltr_and_evaluation_reproduces(tmp_path) -> None:
    state = check_tiny_run("paper/allinone_msrvtt7k_retrieval.sh", tmp_path / "7k", ["ind_itc", "mlm"], METRICS)
    assert state["config"]["data"]["split"] == "7k" and state["best"]["metric"] == "R@1_sum"
    assert state["config"]["trainer"]["combiner"]["name"] == "meltr"
    assert "selected on R@1_sum (2 views averaged): t2v_R@1" in state["stdout"]


def test_9k_row_runs_tiny_with_the_sum_baseline(tmp_path) -> None:
    state = check_tiny_run("paper/allinone_msrvtt9k_retrieval.sh", tmp_path / "9k", ["ind_itc", "mlm"], METRICS,
                           env={"METHOD": "sum"}, meta=False)
    assert state["config"]["data"]["split"] == "9k" and state["config"]["trainer"]["combiner"]["name"] == "sum"


def test_fork_target_loss_switch_puts_mlm_first(tmp_path) -> None:
    # (the old key model.primary is read from old YAML files and checkpoints: tests/unit/test_target_loss.py)
    state = check_tiny_run("paper/allinone_msrvtt7k_retrieval.sh", tmp_path / "fork", ["mlm", "ind_itc"], METRICS,
                           args=["--set", "model.target_loss=mlm"])
    assert state["config"]["model"]["target_loss"] == "mlm"


def test_missing_checkpoint_stops_with_the_path(tmp_path) -> None:
    proc = run_script("paper/allinone_msrvtt7k_retrieval.sh", {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "a.ckpt")})
    assert proc.returncode == 2 and f"INIT_MODEL not found: {tmp_path / 'a.ckpt'}" in proc.stderr


def test_row_runs_under_torchrun_with_two_gloo_processes(tmp_path) -> None:
    # the unused pooler is frozen by the recipe, so DDP does not wait for its gradient
    state = check_tiny_run("paper/allinone_msrvtt7k_retrieval.sh", tmp_path / "ddp", ["ind_itc", "mlm"], METRICS,
                           env={"NGPU": "2", "OMP_NUM_THREADS": "1"})
    assert state["config"]["trainer"]["combiner"]["name"] == "meltr"
