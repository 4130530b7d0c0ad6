"""Every UniVL paper-row script runs with TINY=1 (synthetic data in the official formats, tiny model)
and its evaluation reproduces from the saved checkpoint; missing inputs stop the script at once."""

from __future__ import annotations

import os
import subprocess

import pytest

from meltr.checkpoint import load_checkpoint
from meltr.log import read_jsonl
from scripts.evaluate import evaluate_checkpoint
from tests.rows import ROOT, check_tiny_run, run_script

ROWS = ["youcook_retrieval", "youcook_caption", "msrvtt7k_retrieval", "msrvtt9k_retrieval", "msrvtt_caption"]


def _run(row: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_script(f"paper/univl_{row}.sh", env)


@pytest.mark.parametrize("row", ROWS)
def test_row_runs_tiny_and_evaluation_reproduces_from_checkpoint(row: str, tmp_path) -> None:
    expected = {"t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_MedR"} if "retrieval" in row else {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    state = check_tiny_run(f"paper/univl_{row}.sh", tmp_path / row, ["joint", "alignment", "mlm", "mfm", "m_joint", "m_align", "decoder", "m_decoder"], expected)
    assert state["config"]["model"]["size"] == "tiny"


def test_baseline_method_switch(tmp_path) -> None:
    proc = _run("msrvtt7k_retrieval", {"TINY": "1", "METHOD": "sum", "OUTPUT_DIR": str(tmp_path / "sum")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "sum" / "last.pt")
    assert state["config"]["trainer"]["combiner"]["name"] == "sum" and "meta_optimizer" not in state


def test_missing_data_dir_or_checkpoint_stops_with_the_path(tmp_path) -> None:
    proc = _run("youcook_caption", {"DATA_DIR": str(tmp_path / "nowhere"), "INIT_MODEL": str(tmp_path / "x.bin")})
    assert proc.returncode == 2 and f"DATA_DIR not found: {tmp_path / 'nowhere'}" in proc.stderr
    proc = _run("youcook_caption", {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "univl.pretrained.bin")})
    assert proc.returncode == 2 and f"INIT_MODEL not found: {tmp_path / 'univl.pretrained.bin'}" in proc.stderr


@pytest.mark.parametrize("fmt", ["mmsa", "univl", "csd"])
def test_mosi_row_runs_tiny_in_every_format_and_reports_the_test_table(fmt: str, tmp_path) -> None:
    out = tmp_path / fmt
    proc = subprocess.run(["bash", "scripts/paper/univl_mosi.sh"], cwd=ROOT, env={**os.environ, "TINY": "1", "FORMAT": fmt, "OUTPUT_DIR": str(out)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = load_checkpoint(out / "best.pt")
    assert best["config"]["data"]["mosi_format"] == fmt and best["best"]["metric"] == "valid_MAE"
    assert {"valid_MAE", "test_MAE", "test_BA", "test_F1", "test_Corr", "test_Acc-2_has0", "test_Acc-7"} <= set(best["metrics"])
    assert f"BA(=Acc-2_non0) {100 * best['metrics']['test_BA']:.1f}" in proc.stdout  # the reported table is the selected checkpoint's
    train = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"]
    assert list(train[0]["losses"])[0] == "sentiment" and len(train[0]["losses"]) == 9
    now, saved = evaluate_checkpoint(str(out / "best.pt"))
    assert now == pytest.approx(saved, rel=1e-6, abs=1e-9)
