"""Plot a MELTR run's logged task weights and outputs, as in Figures 3, 4 and 5 of the MELTR paper.

Usage::

    python -m scripts.plot_meltr RUN_DIR [--out DIR]      # Figures 3 and 4; default DIR: RUN_DIR/plots
    python -m scripts.plot_meltr --fig5 SE_RUN TE_RUN SE_TE_RUN [--out DIR]   # default DIR: SE_RUN/plots

Reads the ``kind == "train"`` records of ``RUN_DIR/metrics.jsonl`` (written by
:class:`meltr.log.RunLogger`) and writes:

* ``fig3_output_vs_losses.png``: top row, the MELTR output (``combined``) against each input loss
  (paper Fig. 3a); bottom row, each task weight ``a_t = d output / d loss_t`` (``task_weights``)
  against that loss (Fig. 3b). Points are coloured by training step.
* ``fig4_task_weights.png``: each task weight averaged per epoch, one line per task (Fig. 4).
* ``fig5_input_types.png`` (``--fig5``): one panel per run, side by side, each task weight against its
  input loss, one colour per task (Fig. 5: SE only / TE only / SE + TE, the runs of
  ``TASK=caption ROW=se|te|se_te bash scripts/ablation_table10.sh``). The panel title is the run's
  MELTR input type read from its ``config.yaml``. A run without weighted train records (TE only: the
  trainer refuses to train it) gets a panel that says why, with the reason ``row.json`` recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

import yaml

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from meltr.log import METRICS_FILE, read_jsonl
from meltr.loss_transformer import PRESETS

__all__ = ["FIG3", "FIG4", "FIG5", "load_train_records", "figure_data", "build_figures", "plot_run",
           "input_type", "fig5_panels", "build_fig5", "plot_fig5", "main"]

FIG3 = "fig3_output_vs_losses"
FIG4 = "fig4_task_weights"
FIG5 = "fig5_input_types"
_EMBEDDING_LABELS = {"se+te": "SE + TE", "se": "SE only", "te": "TE only"}


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


def input_type(run_dir: str | Path) -> str:
    """The combiner of a run as Fig. 5 names it: "SE only", "TE only", "SE + TE" for MELTR, else its name.

    Read from ``run_dir/config.yaml`` (``trainer.combiner``: a preset's embedding, or ``meltr.embedding``);
    the directory name when there is no config.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return Path(run_dir).name
    combiner = ((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("trainer") or {}).get("combiner") or {}
    name = combiner.get("name", "meltr")
    if name != "meltr":
        return str(name)
    preset = combiner.get("preset")
    embedding = PRESETS[preset].embedding if preset in PRESETS else (combiner.get("meltr") or {}).get("embedding", "se+te")
    return _EMBEDDING_LABELS.get(embedding, str(embedding))


def _no_data_reason(run_dir: Path) -> str:
    row = run_dir / "row.json"
    if row.is_file():
        try:
            message = json.loads(row.read_text(encoding="utf-8")).get("message")
        except (json.JSONDecodeError, AttributeError):
            message = None
        if message:
            return str(message)
    return f"no train records with task_weights in {run_dir / METRICS_FILE}"


def fig5_panels(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Exactly what :func:`build_fig5` plots, one panel per run in the given order.

    Returns:
        ``[{"run", "title", "tasks": {task: {"loss": [...], "weight": [...]}}, "message"}]``; ``tasks`` holds
        the logged (loss, weight) pairs in log order (Fig. 3 data without the combined output); a run
        without weighted train records has empty ``tasks`` and the reason in ``message``.

    Raises:
        SystemExit: A run directory does not exist, or its metrics file is malformed.
    """
    panels = []
    for run in map(Path, run_dirs):
        if not run.is_dir():
            raise SystemExit(f"plot_meltr: run directory not found: {run}")
        metrics = run / METRICS_FILE
        try:
            records = read_jsonl(metrics) if metrics.is_file() else []
        except ValueError as err:
            raise SystemExit(f"plot_meltr: {err}") from err
        train = [r for r in records if _is_weighted_train(r)]
        tasks: dict[str, dict[str, list[float]]] = {}
        if train:
            for name, d in figure_data(train)["fig3"].items():
                tasks[name] = {"loss": d["loss"], "weight": d["weight"]}
        panels.append({"run": run, "title": input_type(run), "tasks": tasks, "message": "" if train else _no_data_reason(run)})
    return panels


def build_fig5(panels: Sequence[dict[str, Any]]) -> Figure:
    """Fig. 5: one axis per panel (in order), one scatter collection per task (in task order) holding the
    points (loss, task weight); a panel without data holds a text that says why and no collection."""
    fig = Figure(figsize=(4.5 * len(panels), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel, letter in zip(axes, panels, "abcdefghijklmnopqrstuvwxyz"):
        ax.set_title(f"({letter}) {panel['title']}")
        ax.set_xlabel("input loss $l_t$")
        ax.set_ylabel("task weight $a_t$")
        for name, d in panel["tasks"].items():
            ax.scatter(d["loss"], d["weight"], s=10, label=name)
        if panel["tasks"]:
            ax.legend(title="task", fontsize="x-small", title_fontsize="small")
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            note = ax.text(0.5, 0.5, textwrap.fill(f"no data: {panel['message']}", 40), ha="center", va="center",
                           transform=ax.transAxes, fontsize="small")
            note.set_in_layout(False)  # a long reason must not squeeze the other panels
    fig.suptitle("Task weight vs. input loss per MELTR input type")
    return fig


def plot_fig5(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None) -> Path:
    """Writes ``fig5_input_types.png`` comparing the runs; returns its path.

    Args:
        run_dirs: Run directories, one panel each, in this order (the paper: SE only, TE only, SE + TE).
        out_dir: Where to write the PNG (created if missing); default: the first run's ``plots``.
    """
    if not run_dirs:
        raise SystemExit("plot_meltr: --fig5 needs at least one run directory")
    fig = build_fig5(fig5_panels(run_dirs))
    out = Path(out_dir) if out_dir is not None else Path(run_dirs[0]) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{FIG5}.png"
    fig.savefig(path, dpi=120)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.plot_meltr", description="Plot MELTR Fig. 3/4 (one run) or Fig. 5 (--fig5, several runs)."
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run directory containing metrics.jsonl")
    parser.add_argument("--fig5", action="store_true", help="Figure 5: one panel per RUN_DIR (SE only, TE only, SE + TE)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: RUN_DIR/plots, the first one's for --fig5)")
    args = parser.parse_args(argv)
    if args.fig5:
        print(plot_fig5(args.run_dirs, args.out))
        return 0
    if len(args.run_dirs) != 1:
        parser.error("Figures 3 and 4 take one RUN_DIR; use --fig5 to compare several runs")
    for path in plot_run(args.run_dirs[0], args.out).values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
