"""Plot a run's logged task weights and MELTR outputs, as in Figures 3 and 4 of the MELTR paper.

Reads the ``kind == "train"`` records of ``RUN_DIR/metrics.jsonl`` (written by :class:`meltr.log.RunLogger`,
as :class:`meltr.Trainer` uses it) and writes:

* ``fig3_output_vs_losses.png``: top row, the combiner's output (``combined``) against each input loss
  (paper Fig. 3a); bottom row, each task weight ``a_t = d output / d loss_t`` (``task_weights``)
  against that loss (Fig. 3b). Points are coloured by training step.
* ``fig4_task_weights.png``: each task weight averaged per epoch, one line per task (Fig. 4).

:func:`build_weights_over_steps` draws the task weights of several runs (e.g. seeds) against the step,
one panel per combiner, to compare how different combiners weight the same tasks.

matplotlib is an optional extra (``pip install meltr[plot]``), imported only when a figure is built.
Command line: ``meltr plot RUN_DIR [--out DIR]``. The paper's Figure 5 (three ablation runs side by
side) is reproduction-specific and lives in ``scripts/plot_meltr.py`` of the repository.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meltr.log import METRICS_FILE, drop_replayed
from meltr.summary import RunDirError, read_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FIG3", "FIG4", "train_records", "figure_data", "build_figures", "plot_run", "weights_over_steps",
           "build_weights_over_steps"]

FIG3 = "fig3_output_vs_losses"
"""Name (file stem) of the output/task-weight vs. loss figure."""

FIG4 = "fig4_task_weights"
"""Name (file stem) of the task-weights-per-epoch figure."""


def train_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``train`` records that carry a non-empty ``task_weights`` dict, in log order.

    Records of other kinds (``meta``, ``eval``, ``epoch``, ``summary``) are dropped, and so are records a
    resume superseded (:func:`meltr.log.drop_replayed`).
    """
    # A resumed run replays steps after its checkpoint: plot each step once (the resumed run's records).
    kept = drop_replayed(list(records))
    return [r for r in kept if r.get("kind") == "train" and isinstance(r.get("task_weights"), dict) and r["task_weights"]]


def figure_data(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Extracts exactly the arrays that :func:`build_figures` plots.

    Args:
        records: Logged records; only those :func:`train_records` keeps are used.

    Returns:
        ``{"fig3": {task: {"step", "loss", "combined", "weight"}}, "fig4": {"epochs", "weights": {task: [...]}}}``.
        Fig. 3 lists hold one entry per record that logged the task's loss, weight and the combined
        output, in log order. Fig. 4 holds the sorted epochs and, per task, the mean weight in each
        epoch (NaN for an epoch where the task was never logged). Tasks keep their first-seen order.

    Raises:
        ValueError: No usable train record, or a train record without ``epoch``.
    """
    train = train_records(records)
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


def _matplotlib() -> tuple[Any, Any, Any]:
    """``(Figure, FigureCanvasAgg, MaxNLocator)``, imported on first use so ``import meltr.plot`` needs no matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as err:
        raise ImportError(
            f"meltr.plot needs matplotlib, which is not installed ({err}); install it with: pip install 'meltr[plot]'",
            name="matplotlib",
        ) from err
    return Figure, FigureCanvasAgg, MaxNLocator


def build_figures(records: Sequence[dict[str, Any]]) -> dict[str, Figure]:
    """Builds (without saving) the Fig. 3 and Fig. 4 figures from logged records.

    The figures are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas, never
    registered with pyplot, so nothing leaks between calls and no display is needed.

    Fig. 3's axes come first in ``fig.axes``, row-major: the T output-vs-loss axes, then the T
    weight-vs-loss axes (a colour bar axis follows). Each holds one scatter collection.
    Fig. 4 has one axis with one line per task, in task order.

    Returns:
        ``{FIG3: Figure, FIG4: Figure}``.

    Raises:
        ValueError: As :func:`figure_data`.
        ImportError: matplotlib is not installed (the message says how to install it).
    """
    data = figure_data(records)
    figure_cls, canvas_cls, int_locator = _matplotlib()
    fig3_data, fig4_data = data["fig3"], data["fig4"]
    names = list(fig3_data)
    t = len(names)

    fig3 = figure_cls(figsize=(3.2 * t + 1.0, 6.0), layout="constrained")
    canvas_cls(fig3)
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

    fig4 = figure_cls(figsize=(6.0, 4.0), layout="constrained")
    canvas_cls(fig4)
    ax = fig4.subplots()
    for name in names:
        ax.plot(fig4_data["epochs"], fig4_data["weights"][name], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean task weight $a_t$")
    ax.xaxis.set_major_locator(int_locator(integer=True))
    ax.legend(title="task")
    ax.set_title("Task weights per epoch")
    return {FIG3: fig3, FIG4: fig4}


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Reads ``run_dir/metrics.jsonl`` and writes the figures as PNGs.

    Args:
        run_dir: Run directory holding ``metrics.jsonl``.
        out_dir: Where to write the PNGs (created if missing, and only once the figures are built);
            default ``run_dir/plots``.

    Returns:
        Figure name (``FIG3``, ``FIG4``) to the written PNG path.

    Raises:
        RunDirError: ``metrics.jsonl`` is missing, malformed or has no usable train records (the
            message names the file).
        ImportError: matplotlib is not installed.
    """
    run_dir = Path(run_dir)
    records = read_run(run_dir)
    try:
        figures = build_figures(records)
    except ValueError as err:
        raise RunDirError(f"{run_dir / METRICS_FILE}: {err} ({len(records)} records read)") from err
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, fig in figures.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        written[name] = path
    return written


def weights_over_steps(runs: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Each task's weight against the step, over several runs of one combiner (e.g. seeds).

    Args:
        runs: The logged records of each run; only :func:`train_records` are used.

    Returns:
        ``{"steps": [...], "mean": {task: [...]}, "min": {task: [...]}, "max": {task: [...]}}``: the sorted
        steps logged by any run and, per task (first-seen order), the mean, minimum and maximum of the
        weights the runs logged at that step (NaN where none did).

    Raises:
        ValueError: No run has a usable train record.
    """
    by_step: dict[int, dict[str, list[float]]] = {}
    names: list[str] = []
    for records in runs:
        for r in train_records(records):
            names.extend(n for n in r["task_weights"] if n not in names)
            for n, w in r["task_weights"].items():
                by_step.setdefault(int(r["step"]), {}).setdefault(n, []).append(float(w))
    if not by_step:
        raise ValueError("no train records with task_weights")
    steps = sorted(by_step)

    def reduce(fn: Any) -> dict[str, list[float]]:
        return {n: [fn(by_step[s][n]) if by_step[s].get(n) else math.nan for s in steps] for n in names}

    return {"steps": steps, "mean": reduce(lambda v: sum(v) / len(v)), "min": reduce(min), "max": reduce(max)}


def build_weights_over_steps(panels: Mapping[str, Sequence[Sequence[dict[str, Any]]]], title: str | None = None) -> Figure:
    """One panel per entry of ``panels`` (title -> the records of each run): per task, the mean weight over
    the runs against the step (a line) and their range (a band), with the zero line dashed.

    Raises:
        ValueError: As :func:`weights_over_steps`, for any panel.
        ImportError: matplotlib is not installed (the message says how to install it).
    """
    data = {name: weights_over_steps(runs) for name, runs in panels.items()}
    figure_cls, canvas_cls, _ = _matplotlib()
    fig: Figure = figure_cls(figsize=(3.6 * len(data) + 0.6, 3.4), layout="constrained")
    canvas_cls(fig)
    axes = fig.subplots(1, len(data), squeeze=False, sharey=True)[0]
    for ax, (name, d) in zip(axes, data.items()):
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        for task, mean in d["mean"].items():
            (line,) = ax.plot(d["steps"], mean, label=task)
            ax.fill_between(d["steps"], d["min"][task], d["max"][task], color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0].set_ylabel("task weight $a_t$")
    axes[-1].legend(title="task", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
