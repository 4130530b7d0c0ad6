"""Summarise one training run from its ``metrics.jsonl``: length, time, memory, metrics, learned task weights.

Works on any run directory written by :class:`meltr.log.RunLogger` (as :class:`meltr.Trainer` uses it),
so a ``pip install meltr`` user gets the same overview as a clone::

    from meltr.summary import summarize_run, to_markdown
    print(to_markdown([summarize_run("runs/my_run")]))

or ``meltr summary runs/my_run`` on the command line. The records it reads (see :mod:`meltr.trainer`):

* ``train``: ``step``, ``epoch``, ``losses``, ``combined``, ``task_weights``, ``lr``, ``time``;
* ``eval``: ``step``, ``epoch``, ``metrics``;
* ``epoch``: ``epoch_time_s`` (training only: evaluation and checkpointing excluded), ``complete``, and
  ``peak_rss_mib`` (CPU) or ``peak_cuda_allocated_mib`` (CUDA);
* ``summary``: written when ``fit()`` returns, with ``best`` (``metric``, ``value``, ``step``);
* ``resume``: a resumed run's marker; the records it supersedes (steps the earlier attempt logged after
  its checkpoint, replayed by the resumed run) are left out (:func:`meltr.log.drop_replayed`);
* ``meta`` and any other kind are counted but not summarised.

The paper's tables (paper numbers beside ours) stay in ``scripts/summarize.py`` of the repository.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from meltr.log import METRICS_FILE, drop_replayed, read_jsonl

__all__ = ["RunDirError", "DEFAULT_WINDOW", "read_run", "summarize_records", "summarize_run", "to_markdown"]

DEFAULT_WINDOW = 5
"""How many of the last weighted ``train`` records the final task weights and losses average over."""


class RunDirError(ValueError):
    """A run directory cannot be read: it or its ``metrics.jsonl`` is missing, or a line is malformed.

    The message always names the path (and the line number for a malformed line).
    """


def read_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """Reads every record of ``run_dir/metrics.jsonl``, in file order.

    Args:
        run_dir: Directory of one run.

    Returns:
        The records (an empty list for an empty file: a run that has not logged yet).

    Raises:
        RunDirError: The directory or its metrics file does not exist, or a line is not a JSON object
            (message ``<path>:<line>: ...``).
    """
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        why = "" if run_dir.is_dir() else f" (run directory {run_dir} does not exist)"
        raise RunDirError(f"metrics file not found: {metrics}{why}")
    try:
        return read_jsonl(metrics)
    except ValueError as err:  # read_jsonl names the file and the line
        raise RunDirError(str(err)) from err


def _mean_by_name(dicts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per key, the mean of its numeric values over ``dicts`` (a key absent from some dicts averages the rest)."""
    sums: dict[str, list[float]] = {}
    for d in dicts:
        for name, value in d.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += float(value)
                acc[1] += 1
    return {name: total / count for name, (total, count) in sums.items()}


def _best(records: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's own best record (the last ``summary`` that has one), with the eval metrics at its step."""
    for r in reversed(records):
        best = r.get("best") if r.get("kind") == "summary" else None
        if isinstance(best, dict) and best.get("value") is not None:
            at_step = [e for e in evals if e.get("step") == best.get("step")]
            return {
                "metric": best.get("metric"),
                "value": best["value"],
                "step": best.get("step"),
                "metrics": dict(at_step[-1].get("metrics") or {}) if at_step else {},
            }
    return None


def summarize_records(records: Sequence[dict[str, Any]], window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """Summarises the records of one run (see the module docstring for the kinds it reads).

    Args:
        records: The run's records in log order, e.g. from :func:`read_run`.
        window: How many of the last ``train`` records with task weights to average for the final
            ``task_weights`` and ``losses`` (the weights fluctuate step to step).

    Returns:
        A JSON-serialisable dict:

        * ``records``: number of records; ``resumes``: how many times the run was resumed; ``replayed``: records
          left out as superseded by a resume (see the module docstring); ``finished``: whether a ``summary`` record exists (``fit()`` returned);
        * ``steps``: largest ``step`` logged (None without any); ``epochs``: distinct epochs that have an
          ``epoch`` record (an epoch resumed mid-way counts once);
        * ``train_time_s``: training wall time, the sum of every ``epoch_time_s`` (evaluation and
          checkpointing excluded; None without epoch records); ``mean_epoch_time_s``: mean over the
          ``complete`` epochs only (None if there are none);
        * ``peak_memory_mib``: per logged key (``peak_rss_mib``, ``peak_cuda_allocated_mib``), the largest value;
        * ``last_eval``: ``{"step", "epoch", "metrics"}`` of the last ``eval`` record, or None;
        * ``best``: ``{"metric", "value", "step", "metrics"}`` from the run's last ``summary`` record that
          has a best value (``metrics``: the eval record at that step), or None (no ``best_metric``);
        * ``task_weights``, ``losses``: per loss, the mean over the last ``window`` weighted train records;
          ``window``: how many records that actually was.

    Raises:
        ValueError: ``window`` < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    raw = len(records)
    records = drop_replayed(list(records))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_kind.setdefault(str(r.get("kind")), []).append(r)
    evals, epochs = by_kind.get("eval", []), by_kind.get("epoch", [])
    train = [r for r in by_kind.get("train", []) if isinstance(r.get("task_weights"), dict) and r["task_weights"]]
    last = train[-window:]
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    complete = [float(e["epoch_time_s"]) for e in epochs if e.get("complete") and "epoch_time_s" in e]
    peaks: dict[str, float] = {}
    for e in epochs:
        for key, value in e.items():
            if key.startswith("peak_") and isinstance(value, (int, float)):
                peaks[key] = max(peaks.get(key, -math.inf), float(value))
    return {
        "records": raw,
        "resumes": len(by_kind.get("resume", [])),
        "replayed": raw - len(records),
        "finished": "summary" in by_kind,
        "steps": max(steps) if steps else None,
        "epochs": len({e.get("epoch") for e in epochs}),
        "train_time_s": sum(float(e.get("epoch_time_s", 0.0)) for e in epochs) if epochs else None,
        "mean_epoch_time_s": sum(complete) / len(complete) if complete else None,
        "peak_memory_mib": peaks,
        "last_eval": (
            {"step": evals[-1].get("step"), "epoch": evals[-1].get("epoch"), "metrics": dict(evals[-1].get("metrics") or {})}
            if evals else None
        ),
        "best": _best(records, evals),
        "task_weights": _mean_by_name([r["task_weights"] for r in last]),
        "losses": _mean_by_name([r.get("losses") or {} for r in last]),
        "window": len(last),
    }


def summarize_run(run_dir: str | Path, window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """Reads ``run_dir/metrics.jsonl`` and summarises it.

    Args:
        run_dir: Directory of one run.
        window: See :func:`summarize_records`.

    Returns:
        :func:`summarize_records`'s dict with ``run_dir`` (as given, a string) first.

    Raises:
        RunDirError: The run cannot be read (message names the path).
    """
    return {"run_dir": str(run_dir), **summarize_records(read_run(run_dir), window)}


# The two keys measure different things (meltr.log.peak_memory), so they stay separate rows.
_PEAK_LABELS = {"peak_rss_mib": "peak RSS (MiB)", "peak_cuda_allocated_mib": "peak CUDA allocated (MiB)"}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _union(summaries: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], Mapping[str, Any]]) -> list[str]:
    """Keys of ``get(summary)`` over all summaries, in first-seen order."""
    names: list[str] = []
    for s in summaries:
        names.extend(k for k in get(s) if k not in names)
    return names


def to_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    """Renders summaries as one markdown table: a row per quantity, a column per run.

    Readable as plain text too. Values show 4 significant digits; ``n/a`` marks what a run did not log.

    Args:
        summaries: Dicts from :func:`summarize_run` (each needs ``run_dir``).

    Returns:
        The table, ending with a newline.
    """
    rows: list[tuple[str, list[Any]]] = [
        ("steps", [s["steps"] for s in summaries]),
        ("epochs", [s["epochs"] for s in summaries]),
        ("finished", [s["finished"] for s in summaries]),
        ("training time (s)", [s["train_time_s"] for s in summaries]),
        ("mean epoch time (s)", [s["mean_epoch_time_s"] for s in summaries]),
    ]
    for key in _union(summaries, lambda s: s["peak_memory_mib"]):
        rows.append((_PEAK_LABELS.get(key, key), [s["peak_memory_mib"].get(key) for s in summaries]))
    rows.append(("last eval step", [(s["last_eval"] or {}).get("step") for s in summaries]))
    for key in _union(summaries, lambda s: (s["last_eval"] or {}).get("metrics", {})):
        rows.append((f"last {key}", [(s["last_eval"] or {}).get("metrics", {}).get(key) for s in summaries]))
    rows.append(("best", [
        f"{s['best']['metric']} = {_fmt(s['best']['value'])} (step {s['best']['step']})" if s["best"] else None
        for s in summaries
    ]))
    for key in _union(summaries, lambda s: s["task_weights"]):
        rows.append((f"task weight {key}", [s["task_weights"].get(key) for s in summaries]))
    windows = sorted({s["window"] for s in summaries})
    lines = [
        "| | " + " | ".join(s["run_dir"] for s in summaries) + " |",
        "|---" * (len(summaries) + 1) + "|",
        *("| " + label + " | " + " | ".join(_fmt(v) for v in values) + " |" for label, values in rows),
    ]
    if any(s["task_weights"] for s in summaries):
        lines.append("")
        lines.append(f"Task weights: mean of the last {'/'.join(map(str, windows))} train records that logged them.")
    return "\n".join(lines) + "\n"
