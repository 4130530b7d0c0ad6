"""meltr/summary.py on hand-written run logs shaped as meltr.Trainer writes them.

Every expected value is computed here from the records written into the fake run (independently of
the summariser), never a number of our own typed in.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from statistics import fmean

import pytest

from meltr.summary import DEFAULT_WINDOW, RunDirError, read_run, summarize_records, summarize_run, to_markdown

TASKS = ("main", "helpful", "harmful")


def _run_records(seed: int = 0, epochs: int = 3, steps_per_epoch: int = 4, resumed: bool = True) -> list[dict]:
    """A run as the trainer logs it: train/meta per step, an epoch record and an eval per epoch, a summary.

    With ``resumed`` the first ``fit()`` stops half-way through epoch 1 (``max_steps``: an incomplete
    epoch record and a first summary record) and a resumed ``fit()`` finishes the run (a second
    incomplete record for epoch 1, the final summary).
    """
    rng = random.Random(seed)
    out: list[dict] = []
    step, best, last_metrics = 0, None, {}
    for epoch in range(epochs):
        pieces = [steps_per_epoch // 2, steps_per_epoch - steps_per_epoch // 2] if resumed and epoch == 1 else [steps_per_epoch]
        for k, n in enumerate(pieces):
            for _ in range(n):
                out.append({"kind": "train", "step": step, "epoch": epoch,
                            "losses": {t: rng.uniform(0.1, 3.0) for t in TASKS}, "combined": rng.uniform(-0.5, 1.0),
                            "task_weights": {t: rng.uniform(-0.2, 0.8) for t in TASKS}, "lr": 1e-2, "time": 0.01 * step})
                out.append({"kind": "meta", "step": step, "epoch": epoch, "hypergrad_norm": rng.uniform(1, 9), "meta_lr": 1e-2})
                step += 1
            out.append({"kind": "epoch", "step": step, "epoch": epoch, "epoch_time_s": rng.uniform(0.5, 2.0),
                        "batches": n, "complete": len(pieces) == 1, "peak_rss_mib": rng.uniform(300, 400)})
            if k < len(pieces) - 1:  # the first fit() returns here, mid-epoch
                out.append({"kind": "summary", "step": step, "epoch": epoch, "metrics": dict(last_metrics),
                            "best": dict(best or {}), "epochs": []})
        metrics = {"neg_mse": -rng.uniform(1, 10), "r2": rng.uniform(0, 1)}
        out.append({"kind": "eval", "step": step, "epoch": epoch + 1, "metrics": metrics})
        last_metrics = metrics
        if best is None or metrics["neg_mse"] > best["value"]:
            best = {"metric": "neg_mse", "value": metrics["neg_mse"], "step": step}
    out.append({"kind": "summary", "step": step, "epoch": epochs, "metrics": last_metrics, "best": best, "epochs": []})
    return out


def _write(run_dir: Path, records: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def _of(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["kind"] == kind]


def test_summary_equals_what_the_records_say(tmp_path: Path) -> None:
    records = _run_records(seed=1)
    s = summarize_run(_write(tmp_path / "run", records))
    train, evals, epochs = _of(records, "train"), _of(records, "eval"), _of(records, "epoch")
    # The log must tell "best" from "last" and the final summary from the earlier one, or the test proves little.
    first_summary, last_summary = _of(records, "summary")
    assert first_summary["best"]["value"] != last_summary["best"]["value"] != evals[-1]["metrics"]["neg_mse"]

    assert s["run_dir"] == str(tmp_path / "run") and s["records"] == len(records) and s["finished"]
    assert s["steps"] == max(r["step"] for r in records)
    assert s["epochs"] == len({e["epoch"] for e in epochs}) < len(epochs)  # the resumed epoch counts once
    assert s["train_time_s"] == pytest.approx(sum(e["epoch_time_s"] for e in epochs), rel=1e-12)
    assert s["mean_epoch_time_s"] == pytest.approx(fmean(e["epoch_time_s"] for e in epochs if e["complete"]), rel=1e-12)
    assert s["peak_memory_mib"] == {"peak_rss_mib": max(e["peak_rss_mib"] for e in epochs)}
    assert s["last_eval"] == {k: evals[-1][k] for k in ("step", "epoch", "metrics")}

    # best: the run's best record; it is the largest neg_mse among the evals, with that eval's metrics
    best_eval = max(evals, key=lambda e: e["metrics"]["neg_mse"])
    assert s["best"] == {"metric": "neg_mse", "value": best_eval["metrics"]["neg_mse"], "step": best_eval["step"],
                         "metrics": best_eval["metrics"]}

    last = train[-DEFAULT_WINDOW:]
    assert s["window"] == DEFAULT_WINDOW
    assert s["task_weights"] == pytest.approx({t: fmean(r["task_weights"][t] for r in last) for t in TASKS}, rel=1e-12)
    assert s["losses"] == pytest.approx({t: fmean(r["losses"][t] for r in last) for t in TASKS}, rel=1e-12)
    assert list(s["task_weights"]) == list(TASKS)
    assert json.loads(json.dumps(s)) == s  # what `meltr summary --json` prints


def test_window_larger_than_the_log_and_a_task_missing_from_some_records() -> None:
    records = _run_records(resumed=False)
    train = _of(records, "train")
    for r in train[-2:]:
        del r["task_weights"]["harmful"]
    s = summarize_records(records, window=10_000)
    assert s["window"] == len(train)
    assert s["task_weights"]["harmful"] == pytest.approx(fmean(r["task_weights"]["harmful"] for r in train[:-2]), rel=1e-12)
    assert s["task_weights"]["main"] == pytest.approx(fmean(r["task_weights"]["main"] for r in train), rel=1e-12)
    with pytest.raises(ValueError, match="window"):
        summarize_records(records, window=0)


def test_unfinished_run_without_best_metric_or_evals() -> None:
    records = [r for r in _run_records(resumed=False) if r["kind"] in ("train", "meta")]
    s = summarize_records(records)
    assert not s["finished"] and s["best"] is None and s["last_eval"] is None
    # A finished run trained without best_metric: its summary's best has no value.
    no_best = {"kind": "summary", "step": 0, "epoch": 1, "metrics": {}, "best": {"metric": None, "value": None, "step": None}}
    finished = summarize_records([*records, no_best])
    assert finished["finished"] and finished["best"] is None
    assert s["epochs"] == 0 and s["train_time_s"] is None and s["mean_epoch_time_s"] is None and s["peak_memory_mib"] == {}
    assert s["steps"] == max(r["step"] for r in records)
    empty = summarize_records([])
    assert empty["steps"] is None and empty["task_weights"] == {} and empty["window"] == 0


def test_read_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(RunDirError) as info:
        read_run(tmp_path / "absent")
    assert str(tmp_path / "absent" / "metrics.jsonl") in str(info.value) and "does not exist" in str(info.value)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(RunDirError, match="metrics file not found") as info:
        summarize_run(tmp_path / "empty_dir")
    assert str(tmp_path / "empty_dir" / "metrics.jsonl") in str(info.value)
    run = _write(tmp_path / "bad", _run_records()[:2])
    with open(run / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n")
    with pytest.raises(RunDirError) as info:
        summarize_run(run)
    assert f"{run / 'metrics.jsonl'}:3:" in str(info.value)


def test_markdown_has_a_column_per_run_and_the_values(tmp_path: Path) -> None:
    a = summarize_run(_write(tmp_path / "a", _run_records(seed=1)))
    b = summarize_run(_write(tmp_path / "b", [r for r in _run_records(seed=2) if r["kind"] != "eval"]))
    table = to_markdown([a, b])
    lines = table.splitlines()
    assert lines[0] == f"| | {a['run_dir']} | {b['run_dir']} |"
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:] for line in lines[2:] if line.startswith("|")}
    assert all(len(cells) == 2 for cells in rows.values())
    assert rows["steps"] == [str(a["steps"]), str(b["steps"])]
    for t in TASKS:
        assert rows[f"task weight {t}"] == [f"{a['task_weights'][t]:.4g}", f"{b['task_weights'][t]:.4g}"]
    assert rows["best"][0] == f"neg_mse = {a['best']['value']:.4g} (step {a['best']['step']})"
    assert rows["last r2"] == [f"{a['last_eval']['metrics']['r2']:.4g}", "n/a"]  # b logged no evals
    assert f"last {DEFAULT_WINDOW} train records" in table
