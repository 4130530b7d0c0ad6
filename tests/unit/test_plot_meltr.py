"""Tests for meltr/plot.py (Figures 3, 4) and scripts/plot_meltr.py (Figure 5, its CLI): the plotted data equals the
logged data, files are PNGs, errors name the file."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from statistics import fmean

import numpy as np
import pytest

from meltr.plot import FIG3, FIG4, build_figures, figure_data, plot_run
from meltr.summary import RunDirError
from scripts.plot_meltr import FIG5, build_fig5, fig5_panels, input_type, main, plot_fig5

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ("cls", "rot")
EPOCHS = 3
STEPS_PER_EPOCH = 5


def _records() -> list[dict]:
    """Synthetic log: 2 tasks over 3 epochs, with meta and eval records mixed in (which must be ignored)."""
    rng = random.Random(0)
    out: list[dict] = []
    step = 0
    for epoch in range(EPOCHS):
        for _ in range(STEPS_PER_EPOCH):
            losses = {t: rng.uniform(0.1, 2.0) for t in TASKS}
            out.append({
                "kind": "train", "step": step, "epoch": epoch, "losses": losses,
                "combined": rng.uniform(0.5, 3.0), "task_weights": {t: rng.uniform(0.0, 1.0) for t in TASKS},
                "lr": 1e-3, "meta_lr": 1e-4, "time": 0.1 * step,
            })
            out.append({"kind": "meta", "step": step, "epoch": epoch, "primary": 1.0, "hypergrad_norm": 9.0})
            step += 1
        out.append({"kind": "eval", "step": step, "epoch": epoch, "metrics": {"accuracy": 0.5}})
    return out


def _write_run(run_dir: Path, records: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def _expected(records: list[dict]) -> tuple[dict, list[int], dict]:
    """Independent reference: per-task points and per-epoch mean weights, straight from the records."""
    train = [r for r in records if r["kind"] == "train"]
    points = {t: np.array([[r["losses"][t], r["combined"], r["task_weights"][t]] for r in train]) for t in TASKS}
    by_epoch: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in train:
        for t in TASKS:
            by_epoch[r["epoch"]][t].append(r["task_weights"][t])
    epochs = sorted(by_epoch)
    means = {t: [fmean(by_epoch[e][t]) for e in epochs] for t in TASKS}
    return points, epochs, means


def test_plot_run_writes_pngs(tmp_path):
    run_dir = _write_run(tmp_path / "run", _records())
    written = plot_run(run_dir, tmp_path / "out")
    assert set(written) == {FIG3, FIG4}
    for name, path in written.items():
        assert path == tmp_path / "out" / f"{name}.png"
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_default_out_dir(tmp_path):
    run_dir = _write_run(tmp_path / "run", _records())
    written = plot_run(run_dir)
    assert {p.parent for p in written.values()} == {run_dir / "plots"}
    assert all(p.is_file() for p in written.values())


def test_figure_data_equals_logged_values():
    records = _records()
    points, epochs, means = _expected(records)
    data = figure_data(records)
    assert list(data["fig3"]) == list(TASKS)
    for t in TASKS:
        d = data["fig3"][t]
        np.testing.assert_array_equal(np.column_stack([d["loss"], d["combined"], d["weight"]]), points[t])
        assert d["step"] == list(range(EPOCHS * STEPS_PER_EPOCH))
    assert data["fig4"]["epochs"] == epochs == [0, 1, 2]
    for t in TASKS:
        np.testing.assert_allclose(data["fig4"]["weights"][t], means[t], rtol=1e-12, atol=0)


def test_figure_artists_hold_logged_values():
    records = _records()
    points, epochs, means = _expected(records)
    figs = build_figures(records)

    axes = figs[FIG3].axes
    top, bottom = axes[: len(TASKS)], axes[len(TASKS) : 2 * len(TASKS)]
    for j, t in enumerate(TASKS):
        assert top[j].get_title() == t
        # Fig. 3a: (loss, MELTR output); Fig. 3b: (loss, task weight).
        np.testing.assert_array_equal(top[j].collections[0].get_offsets(), points[t][:, [0, 1]])
        np.testing.assert_array_equal(bottom[j].collections[0].get_offsets(), points[t][:, [0, 2]])

    (ax,) = figs[FIG4].axes
    assert [line.get_label() for line in ax.lines] == list(TASKS)
    for line, t in zip(ax.lines, TASKS):
        np.testing.assert_array_equal(line.get_xdata(), epochs)
        np.testing.assert_allclose(line.get_ydata(), means[t], rtol=1e-12, atol=0)


def test_epoch_missing_task_is_nan():
    records = [r for r in _records() if r["kind"] == "train"]
    for r in records:
        if r["epoch"] == 1:
            del r["task_weights"]["rot"]
    weights = figure_data(records)["fig4"]["weights"]
    assert np.isnan(weights["rot"][1]) and not np.isnan(weights["rot"][0])
    assert not np.isnan(weights["cls"]).any()


def test_missing_metrics_file_names_it(tmp_path):
    with pytest.raises(RunDirError, match="metrics file not found") as info:
        plot_run(tmp_path / "nope")
    assert str(tmp_path / "nope" / "metrics.jsonl") in str(info.value)


def test_no_weighted_train_records_names_file(tmp_path):
    run_dir = _write_run(tmp_path / "run", [r for r in _records() if r["kind"] != "train"])
    with pytest.raises(RunDirError, match="no train records with task_weights") as info:
        plot_run(run_dir)
    assert str(run_dir / "metrics.jsonl") in str(info.value)


def test_malformed_metrics_names_file_and_line(tmp_path):
    run_dir = _write_run(tmp_path / "run", _records()[:3])
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(RunDirError) as info:
        plot_run(run_dir)
    assert f"{run_dir / 'metrics.jsonl'}:4:" in str(info.value)


def test_cli(tmp_path):
    run_dir = _write_run(tmp_path / "run", _records())
    ok = subprocess.run(
        [sys.executable, "-m", "scripts.plot_meltr", str(run_dir)], cwd=REPO, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    for name in (FIG3, FIG4):
        path = run_dir / "plots" / f"{name}.png"
        assert path.read_bytes().startswith(PNG_MAGIC)
        assert str(path) in ok.stdout


def test_cli_missing_file_exits_naming_it(tmp_path):
    # In-process (a second subprocess would cost ~3 s of imports): SystemExit(str) is what makes
    # `python -m` print the message to stderr and exit with status 1.
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "absent"), "--out", str(tmp_path / "o")])
    assert str(tmp_path / "absent" / "metrics.jsonl") in str(info.value.code)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ Figure 5


def _fig5_run(root: Path, name: str, combiner: str, records: list[dict] | None, message: str | None = None) -> Path:
    run_dir = _write_run(root / name, records or [])
    (run_dir / "config.yaml").write_text(f"trainer:\n  combiner:\n{combiner}")
    if message is not None:
        row = {"table": "fig5", "row": name, "status": "cannot_train", "message": message}
        (run_dir / "row.json").write_text(json.dumps(row))
    return run_dir


def _fig5_runs(root: Path) -> list[Path]:
    se = _fig5_run(root, "se", "    name: meltr\n    preset: null\n    meltr: {embedding: se}\n", _records())
    te = _fig5_run(root, "te", "    name: meltr\n    preset: null\n    meltr: {embedding: te}\n", None,
                   message="CombinerTrainingError: output ignores the losses")
    both_records = _records()[::2]  # a different log, so a panel mix-up would show
    both = _fig5_run(root, "se_te", "    name: meltr\n    preset: univl\n", both_records)
    return [se, te, both]


def test_fig5_panels_hold_logged_points_and_the_te_only_reason(tmp_path):
    se, te, both = _fig5_runs(tmp_path)
    fig = build_fig5(fig5_panels([se, te, both]))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["(a) SE only", "(b) TE only", "(c) SE + TE"]
    for ax, records in ((axes[0], _records()), (axes[2], _records()[::2])):
        train = [r for r in records if r["kind"] == "train"]
        assert len(ax.collections) == len(TASKS)
        for coll, t in zip(ax.collections, TASKS):
            assert coll.get_label() == t
            expected = np.array([[r["losses"][t], r["task_weights"][t]] for r in train])
            np.testing.assert_array_equal(coll.get_offsets(), expected)
    shown = " ".join(" ".join(t.get_text().split()) for t in axes[1].texts)  # the reason is wrapped over lines
    assert len(axes[1].collections) == 0 and "CombinerTrainingError: output ignores the losses" in shown


def test_fig5_writes_png_and_cli(tmp_path):
    runs = _fig5_runs(tmp_path)
    path = plot_fig5(runs, tmp_path / "out")
    assert path == tmp_path / "out" / f"{FIG5}.png" and path.read_bytes().startswith(PNG_MAGIC)
    assert main(["--fig5", *map(str, runs)]) == 0
    assert (runs[0] / "plots" / f"{FIG5}.png").read_bytes().startswith(PNG_MAGIC)


def test_fig5_title_of_other_combiners_and_errors(tmp_path):
    lin = _fig5_run(tmp_path, "lin", "    name: linear\n", _records())
    assert input_type(lin) == "linear" and input_type(tmp_path / "no_config") == "no_config"
    with pytest.raises(SystemExit, match="run directory not found") as info:
        fig5_panels([lin, tmp_path / "gone"])
    assert str(tmp_path / "gone") in str(info.value)
    with pytest.raises(SystemExit):  # several runs need --fig5
        main([str(lin), str(lin)])
