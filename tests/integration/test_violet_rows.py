"""Every VIOLET row script runs with TINY=1 (synthetic frame/VQ pickles and json in the official formats, tiny
model) and its evaluation reproduces from the saved checkpoint; missing checkpoints stop the script at once."""

from __future__ import annotations

import pytest

from tests.rows import check_tiny_run, run_script

RETRIEVAL = {"t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_MedR"}
QA = {"acc", "acc_official_batch_mean", "n", "n_oov"}
ROWS = {
    "msrvtt7k_retrieval": (["vtm", "mtm", "mvm"], RETRIEVAL),
    "msrvtt9k_retrieval": (["vtm", "mtm", "mvm"], RETRIEVAL),
    "tgif_action": (["mc", "vtm", "mtm", "mvm"], QA),
    "tgif_transition": (["mc", "vtm", "mtm", "mvm"], QA),
    "tgif_frame": (["oe", "vtm", "mtm", "mvm"], QA),
    "msvd_qa": (["oe", "vtm", "mtm", "mvm"], QA),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_row_runs_tiny_and_evaluation_reproduces_from_checkpoint(row: str, tmp_path) -> None:
    losses, metrics = ROWS[row]
    state = check_tiny_run(f"paper/violet_{row}.sh", tmp_path / row, losses, metrics)
    assert state["config"]["model"]["size"] == "tiny" and state["config"]["data"]["size_img"] == 32
    if metrics is QA:
        assert state["metrics"]["n"] > 0 and 0.0 <= state["metrics"]["acc"] <= 1.0


def test_fork_quirks_and_baseline_switches(tmp_path) -> None:
    state = check_tiny_run("paper/violet_tgif_action.sh", tmp_path / "fork", ["mc", "vtm", "mtm", "mvm"], QA,
                           env={"METHOD": "sum"}, meta=False, args=["--set", "model.fork_quirks=true"])
    assert state["config"]["model"]["fork_quirks"] is True and state["config"]["trainer"]["combiner"]["name"] == "sum"


def test_missing_checkpoints_stop_with_the_path(tmp_path) -> None:
    proc = run_script("paper/violet_msvd_qa.sh", {"DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "set INIT_MODEL to the official ckpt_violet_pretrain.pt" in proc.stderr
    (tmp_path / "pre.pt").touch()
    proc = run_script("paper/violet_msvd_qa.sh", {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "pre.pt"),
                                            "SWIN_INIT": str(tmp_path / "swin.pt")})
    assert proc.returncode == 2 and f"SWIN_INIT not found: {tmp_path / 'swin.pt'}" in proc.stderr


def test_row_runs_under_torchrun_with_two_gloo_processes(tmp_path) -> None:
    state = check_tiny_run("paper/violet_tgif_frame.sh", tmp_path / "ddp", ["oe", "vtm", "mtm", "mvm"], QA,
                           env={"NGPU": "2", "OMP_NUM_THREADS": "1"})
    assert state["metrics"]["n"] > 0
