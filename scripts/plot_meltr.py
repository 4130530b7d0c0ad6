"""Plot a MELTR run's logged task weights and outputs, as in Figures 3 and 4 of the MELTR paper.

Usage::

    python -m scripts.plot_meltr RUN_DIR [--out DIR]      # default DIR: RUN_DIR/plots

Reads the ``kind == "train"`` records of ``RUN_DIR/metrics.jsonl`` (written by
:class:`meltr.log.RunLogger`) and writes:

* ``fig3_output_vs_losses.png``: top row, the MELTR output (``combined``) against each input loss
  (paper Fig. 3a); bottom row, each task weight ``a_t = d output / d loss_t`` (``task_weights``)
  against that loss (Fig. 3b). Points are coloured by training step.
* ``fig4_task_weights.png``: each task weight averaged per epoch, one line per task (Fig. 4).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from meltr.log import METRICS_FILE, read_jsonl

__all__ = ["FIG3", "FIG4", "load_train_records", "figure_data", "build_figures", "plot_run", "main"]

FIG3 = "fig3_output_vs_losses"
FIG4 = "fig4_task_weights"


def _is_weighted_train(record: dict[str, Any]) -> bool:
    weights = record.get("task_weights")
    return record.get("kind") == "train" and isinstance(weights, dict) and bool(weights)


def load_train_records(metrics_path: str | Path) -> list[dict[str, Any]]:
    """Reads the train records that carry ``task_weights`` from a metrics file.

    Raises:
        SystemExit: The file is missing, malformed, or holds no such records (message names the file).
    """
    path = Path(metrics_path)
    if not path.is_file():
        raise SystemExit(f"plot_meltr: metrics file not found: {path}")
    try:
        records = read_jsonl(path)
    except ValueError as err:
        raise SystemExit(f"plot_meltr: {err}") from err
    train = [r for r in records if _is_weighted_train(r)]
    if not train:
        raise SystemExit(f"plot_meltr: {path} has no train records with task_weights ({len(records)} records read)")
    return train


def figure_data(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Extracts exactly the arrays that :func:`build_figures` plots.

    Args:
        records: Logged records; only ``kind == "train"`` records with ``task_weights`` are used.

    Returns:
        ``{"fig3": {task: {"step", "loss", "combined", "weight"}}, "fig4": {"epochs", "weights": {task: [...]}}}``.
        Fig. 3 lists hold one entry per record that logged the task's loss, weight and the combined
        output, in log order. Fig. 4 holds the sorted epochs and, per task, the mean weight in each
        epoch (NaN for an epoch where the task was never logged). Tasks keep their first-seen order.

    Raises:
        ValueError: No usable train record, or a train record without ``epoch``.
    """
    train = [r for r in records if _is_weighted_train(r)]
    if not train:
        raise ValueError("no train records with task_weights")
    names: list[str] = []
    for r in train:
        names.extend(n for n in r["task_weights"] if n not in names)

    fig3: dict[str, dict[str, list[float]]] = {n: {"step": [], "loss": [], "combined": [], "weight": []} for n in names}
    # epoch -> task -> (sum, count); sums in float64 Python arithmetic so the mean is exact enough to compare.
    sums: dict[int, dict[str, list[float]]] = {}
    for r in train:
        if "epoch" not in r:
            raise ValueError(f"train record at step {r.get('step')} has no 'epoch'")
        weights, losses = r["task_weights"], r.get("losses", {})
        for n, w in weights.items():
            acc = sums.setdefault(int(r["epoch"]), {}).setdefault(n, [0.0, 0])
            acc[0] += float(w)
            acc[1] += 1
            if n in losses and "combined" in r:
                d = fig3[n]
                d["step"].append(float(r.get("step", len(d["step"]))))
                d["loss"].append(float(losses[n]))
                d["combined"].append(float(r["combined"]))
                d["weight"].append(float(w))
    epochs = sorted(sums)
    per_epoch = {
        n: [sums[e][n][0] / sums[e][n][1] if n in sums[e] else math.nan for e in epochs] for n in names
    }
    return {"fig3": fig3, "fig4": {"epochs": epochs, "weights": per_epoch}}


def build_figures(records: Sequence[dict[str, Any]]) -> dict[str, Figure]:
    """Builds (without saving) the Fig. 3 and Fig. 4 figures from logged records.

    The figures are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas, never
    registered with pyplot, so nothing leaks between calls and no display is needed.

    Fig. 3's axes come first in ``fig.axes``, row-major: the T output-vs-loss axes, then the T
    weight-vs-loss axes (a colour bar axis follows). Each holds one scatter collection.
    Fig. 4 has one axis with one line per task, in task order.

    Returns:
        ``{FIG3: Figure, FIG4: Figure}``.
    """
    data = figure_data(records)
    fig3_data, fig4_data = data["fig3"], data["fig4"]
    names = list(fig3_data)
    t = len(names)

    fig3 = Figure(figsize=(3.2 * t + 1.0, 6.0), layout="constrained")
    FigureCanvasAgg(fig3)
    axes = fig3.subplots(2, t, squeeze=False)
    all_steps = [s for d in fig3_data.values() for s in d["step"]]
    # One colour scale for every panel so that the same step has the same colour everywhere.
    vmin, vmax = (min(all_steps), max(all_steps)) if all_steps else (0.0, 1.0)
    scatter = None
    for j, name in enumerate(names):
        d = fig3_data[name]
        top, bottom = axes[0, j], axes[1, j]
        scatter = top.scatter(d["loss"], d["combined"], c=d["step"], cmap="viridis", vmin=vmin, vmax=vmax, s=10)
        bottom.scatter(d["loss"], d["weight"], c=d["step"], cmap="viridis", vmin=vmin, vmax=vmax, s=10)
        top.set_title(name)
        top.set_xlabel(f"{name} loss")
        bottom.set_xlabel(f"{name} loss")
    axes[0, 0].set_ylabel("MELTR output")
    axes[1, 0].set_ylabel("task weight $a_t$")
    if scatter is not None:
        fig3.colorbar(scatter, ax=axes, label="step")
    fig3.suptitle("(a) MELTR output vs. input losses   (b) task weight vs. input loss")

    fig4 = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig4)
    ax = fig4.subplots()
    for name in names:
        ax.plot(fig4_data["epochs"], fig4_data["weights"][name], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean task weight $a_t$")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title="task")
    ax.set_title("Task weights per epoch")
    return {FIG3: fig3, FIG4: fig4}


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Reads ``run_dir/metrics.jsonl`` and writes the figures as PNGs.

    Args:
        run_dir: Run directory holding ``metrics.jsonl``.
        out_dir: Where to write the PNGs (created if missing); default ``run_dir/plots``.

    Returns:
        Figure name (``FIG3``, ``FIG4``) to the written PNG path.

    Raises:
        SystemExit: ``metrics.jsonl`` is missing, malformed or has no usable train records.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_FILE
    records = load_train_records(metrics)
    try:
        figures = build_figures(records)
    except ValueError as err:
        raise SystemExit(f"plot_meltr: {metrics}: {err}") from err
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, fig in figures.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        written[name] = path
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.plot_meltr", description="Plot MELTR Fig. 3/4 from a run's metrics.jsonl."
    )
    parser.add_argument("run_dir", type=Path, help="run directory containing metrics.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: RUN_DIR/plots)")
    args = parser.parse_args(argv)
    for path in plot_run(args.run_dir, args.out).values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
