"""One TINY=1 row of each ablation table end to end (scripts/paper/ablation_table*.sh), the summariser on those
runs, and the figures from them. The runs are shared by every test of this module (one fixture)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from meltr import CombinerConfig, EpochSampler, MetaConfig, OptimConfig, Trainer, TrainerConfig
from meltr.combiners import build_combiner
from meltr.config import from_dict
from meltr.log import read_jsonl
from meltr.loss_transformer import preset
from scripts.paper_results import PAPER, TABLE7_COEFFICIENTS, TABLE11_LOSSES
from scripts.plot_meltr import FIG3, FIG4, FIG5, build_fig5, build_figures, fig5_panels, plot_fig5, plot_run
from scripts.summarize import TABLES
from scripts.summarize import main as summarize
from tests.toy_models import ToyRegression, regression_batches

ROOT = Path(__file__).resolve().parents[2]
# name -> (script, environment); msrvtt rows use 8 synthetic videos (6 steps) to stay fast
ROWS: dict[str, tuple[str, dict[str, str]]] = {
    "t7_E": ("paper/ablation_table7.sh", {"ROW": "E"}),
    "t8_lite": ("paper/ablation_table8.sh", {"ROW": "lite", "SYNTHETIC_ARGS": "--videos 8"}),
    "t9_0.001": ("paper/ablation_table9.sh", {"ROW": "0.001", "SYNTHETIC_ARGS": "--videos 8"}),
    "t10_se": ("paper/ablation_table10.sh", {"ROW": "se", "SYNTHETIC_ARGS": "--videos 8"}),
    "t10_te": ("paper/ablation_table10.sh", {"ROW": "te", "SYNTHETIC_ARGS": "--videos 8"}),
    "t11_m_decoder": ("paper/ablation_table11.sh", {"ROW": "m_decoder", "METHOD": "meltr"}),
}


def _script(script: str, env: dict[str, str], *args: str, threads: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads), **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ablation")

    def run(name: str) -> tuple[subprocess.CompletedProcess, float]:
        script, env = ROWS[name]
        start = time.perf_counter()
        # METEOR (a Java process) is skipped: the evaluation tests cover it, these runs test the rows
        proc = _script(script, {"TINY": "1", "OUTPUT_DIR": str(root / name), **env}, "--set", "eval.meteor=false", threads=1)
        return proc, time.perf_counter() - start

    # two rows at a time, one thread each: most of a tiny run is single-threaded start-up
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(ROWS, pool.map(run, ROWS)))
    for name, (proc, seconds) in done.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        print(f"{name}: {seconds:.1f} s")
        (root / name / "stdout.txt").write_text(proc.stdout)
    return {name: root / name for name in ROWS}


def _records(run: Path, kind: str) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == kind]


def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def _selected(run: Path) -> dict[str, float]:
    """The eval record best.pt holds, found independently: the first maximum of trainer.best_metric."""
    name = _config(run)["trainer"]["best_metric"]
    evals = [r["metrics"] for r in _records(run, "eval")]
    top = max(m[name] for m in evals)
    return next(m for m in evals if m[name] == top)


def test_each_row_records_its_table_and_runs_with_the_rows_settings(runs) -> None:
    rows = {n: yaml.safe_load((runs[n] / "row.json").read_text()) for n in ROWS}
    assert {n: (r["table"], r["row"], r["status"]) for n, r in rows.items()} == {
        "t7_E": ("7", "E", "finished"), "t8_lite": ("8", "lite", "finished"), "t9_0.001": ("9", "0.001", "finished"),
        "t10_se": ("10", "se", "finished"), "t10_te": ("10", "te", "cannot_train"),
        "t11_m_decoder": ("11", "m_decoder-meltr", "finished")}
    t7 = _config(runs["t7_E"])["trainer"]["combiner"]
    assert t7["name"] == "fixed" and t7["coefficients"] == {k: float(v) for k, v in TABLE7_COEFFICIENTS["E"].items()}
    hg = _config(runs["t8_lite"])["trainer"]["meta"]["hypergrad"]
    assert (hg["name"], hg["mode"]) == ("aid_fp_lite", "autograd")
    assert _config(runs["t9_0.001"])["trainer"]["meta"]["gamma"] == 0.001
    # SE only: the UniVL preset's loss transformer with the scale embedding alone
    cfg = from_dict(_config(runs["t10_se"])["trainer"]["combiner"], CombinerConfig)
    names = list(_records(runs["t10_se"], "train")[0]["losses"])
    assert build_combiner(cfg, names, "alignment").cfg == preset("univl", embedding="se", num_tasks=8)
    train = _records(runs["t11_m_decoder"], "train")
    assert list(train[0]["losses"]) == TABLE11_LOSSES["m_decoder"] and _records(runs["t11_m_decoder"], "meta")
    for n in ("t8_lite", "t9_0.001", "t10_se"):
        assert _config(runs[n])["model"]["task"] == "retrieval" and _records(runs[n], "meta")


def test_te_only_row_reports_that_it_cannot_train(runs) -> None:
    run = runs["t10_te"]
    row = yaml.safe_load((run / "row.json").read_text())
    assert row["message"].startswith("CombinerTrainingError: ") and "does not depend on the losses" in row["message"]
    assert "RESULT table 10 row te: cannot train" in (run / "stdout.txt").read_text()
    assert _records(run, "train") == [] and _records(run, "summary") == []


def test_table8_row_logs_epoch_time_and_peak_memory(runs) -> None:
    epochs = _records(runs["t8_lite"], "epoch")
    (summary,) = _records(runs["t8_lite"], "summary")
    assert len(epochs) == 1 and epochs[0]["complete"] and epochs[0]["epoch_time_s"] > 0
    assert summary["mean_epoch_time_s"] == epochs[0]["epoch_time_s"] and summary["peak_rss_mib"] == epochs[0]["peak_rss_mib"]
    train_times = [r["time"] for r in _records(runs["t8_lite"], "train")]
    assert epochs[0]["epoch_time_s"] >= train_times[-1] - train_times[0]  # the epoch spans its logged steps


def test_trainer_epoch_records_measure_time_and_peak_rss() -> None:
    def vm_hwm_mib() -> float:  # Linux's own account of the peak RSS, independent of getrusage
        (line,) = [ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:")]
        return int(line.split()[1]) / 1024

    (batch,) = regression_batches(1, 32, seed=0)
    samples = [{k: v[i] for k, v in batch.items()} for i in range(32)]
    loader = DataLoader(samples, batch_size=8, sampler=EpochSampler(32, seed=0), generator=torch.Generator(),
                        collate_fn=lambda items: {k: torch.stack([it[k] for it in items]) for k in items[0]})
    cfg = TrainerConfig(combiner=CombinerConfig(name="sum"), optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"),
                        meta=MetaConfig(), epochs=2, tensorboard=False)
    trainer = Trainer(ToyRegression(), cfg, loader, device="cpu")
    before, start = vm_hwm_mib(), time.perf_counter()
    summary = trainer.fit()
    wall, after = time.perf_counter() - start, vm_hwm_mib()
    epochs = summary["epochs"]
    assert [(e["epoch"], e["batches"], e["complete"]) for e in epochs] == [(0, 4, True), (1, 4, True)]
    assert 0 < sum(e["epoch_time_s"] for e in epochs) <= wall
    assert summary["mean_epoch_time_s"] == pytest.approx(sum(e["epoch_time_s"] for e in epochs) / 2)
    for e in epochs:
        assert before - 1 <= e["peak_rss_mib"] <= after + 1  # KiB rounding of the two sources
    assert summary["peak_rss_mib"] == max(e["peak_rss_mib"] for e in epochs)


def test_summarize_builds_every_table_from_the_runs(runs, tmp_path, capsys) -> None:
    assert summarize([str(runs[n]) for n in ROWS] + ["--out", str(tmp_path)]) == 0
    md = capsys.readouterr().out
    for tid in ("7", "8", "9", "10", "11"):
        assert f"## {TABLES[tid].title}" in md
    csvs = {}
    for tid in ("7", "8", "9", "10", "11"):
        with open(tmp_path / f"table{tid}.csv", newline="") as f:
            csvs[tid] = list(csv.DictReader(f))
    checks = [("t7_E", "7", "E"), ("t8_lite", "8", "lite"), ("t9_0.001", "9", "0.001"), ("t10_se", "10", "se"),
              ("t11_m_decoder", "11", "m_decoder-meltr")]
    for name, tid, row in checks:
        (line,) = [r for r in csvs[tid] if r["row"] == row]
        assert line["status"] == "ok" and line["run"] == str(runs[name])
        logged = _selected(runs[name])
        for col in TABLES[tid].columns:
            if col.key in logged:
                assert float(line[f"{col.key}_ours"]) == pytest.approx(logged[col.key] * col.scale, rel=1e-12, abs=1e-12)
            paper = PAPER[tid][row].get(col.key)
            assert line[f"{col.key}_paper"] == ("" if paper is None else repr(float(paper)))
    (t8,) = [r for r in csvs["8"] if r["row"] == "lite"]
    (epoch,) = _records(runs["t8_lite"], "epoch")
    assert float(t8["epoch_time_s_ours"]) == epoch["epoch_time_s"] and float(t8["peak_memory_mib_ours"]) == epoch["peak_rss_mib"]
    assert t8["time_vs_sum_pct_ours"] == ""  # no sum run among these
    (te,) = [r for r in csvs["10"] if r["row"] == "te"]
    assert te["status"] == "cannot train" and te["t2v_R@1_ours"] == "" and "CombinerTrainingError" in te["notes"]
    assert re.search(r"\| Transformer \(TE only\) \|  \| - \|  \| cannot train \|", md)
    assert {r["row"]: r["status"] for r in csvs["7"]}["meltr"] == "not run"


def test_figures_3_4_5_from_the_runs(runs, tmp_path) -> None:
    meltr_run = runs["t9_0.001"]
    written = plot_run(meltr_run, tmp_path / "f34")
    assert all(written[k].read_bytes().startswith(b"\x89PNG") for k in (FIG3, FIG4))
    train = _records(meltr_run, "train")
    names = list(train[0]["losses"])
    fig3 = build_figures(read_jsonl(meltr_run / "metrics.jsonl"))[FIG3]
    for j, n in enumerate(names):
        np.testing.assert_array_equal(fig3.axes[j].collections[0].get_offsets(), [[r["losses"][n], r["combined"]] for r in train])
        np.testing.assert_array_equal(fig3.axes[len(names) + j].collections[0].get_offsets(),
                                      [[r["losses"][n], r["task_weights"][n]] for r in train])
    fig4_lines = build_figures(read_jsonl(meltr_run / "metrics.jsonl"))[FIG4].axes[0].lines
    for line, n in zip(fig4_lines, names):  # one epoch: the mean of the logged weights
        np.testing.assert_allclose(line.get_ydata(), [np.mean([r["task_weights"][n] for r in train])], rtol=1e-12)

    order = [runs["t10_se"], runs["t10_te"], meltr_run]
    assert plot_fig5(order, tmp_path / "f5") == tmp_path / "f5" / f"{FIG5}.png"
    axes = build_fig5(fig5_panels(order)).axes
    assert [ax.get_title() for ax in axes] == ["(a) SE only", "(b) TE only", "(c) SE + TE"]
    for ax, run in ((axes[0], runs["t10_se"]), (axes[2], meltr_run)):
        logged = _records(run, "train")
        for coll, n in zip(ax.collections, names, strict=True):
            np.testing.assert_array_equal(coll.get_offsets(), [[r["losses"][n], r["task_weights"][n]] for r in logged])
    assert len(axes[1].collections) == 0 and "CombinerTrainingError" in axes[1].texts[0].get_text()


def test_unknown_rows_are_refused_with_the_valid_ones() -> None:
    proc = _script("paper/ablation_table7.sh", {"ROW": "F", "TINY": "1"})
    assert proc.returncode == 2 and "A B C D E meltr" in proc.stderr
    proc = _script("paper/ablation_table11.sh", {"ROW": "all", "METHOD": "fixed", "TINY": "1"})
    assert proc.returncode == 2 and "METHOD must be sum or meltr" in proc.stderr
    proc = _script("paper/ablation_table9.sh", {"ROW": "0.5", "TINY": "1"})
    assert proc.returncode == 2 and "0 0.001 0.01 0.1 1 10 100" in proc.stderr
