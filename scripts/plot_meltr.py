"""Plot a MELTR run's logged task weights and outputs, as in Figures 3, 4 and 5 of the MELTR paper.

Usage::

    python -m scripts.plot_meltr RUN_DIR [--out DIR]      # Figures 3 and 4; default DIR: RUN_DIR/plots
    python -m scripts.plot_meltr --fig5 SE_RUN TE_RUN SE_TE_RUN [--out DIR]   # default DIR: SE_RUN/plots

Figures 3 and 4 of one run are :mod:`meltr.plot` (shipped in the wheel; ``meltr plot RUN_DIR`` does the
same); this script re-exports them and adds the paper's Figure 5:

* ``fig5_input_types.png`` (``--fig5``): one panel per run, side by side, each task weight against its
  input loss, one colour per task (Fig. 5: SE only / TE only / SE + TE, the runs of
  ``TASK=caption ROW=se|te|se_te bash scripts/paper/ablation_table10.sh``). The panel title is the run's
  MELTR input type read from its ``config.yaml``. A run without weighted train records (TE only: the
  trainer refuses to train it) gets a panel that says why, with the reason ``row.json`` recorded.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from meltr.log import METRICS_FILE, read_jsonl
from meltr.loss_transformer import PRESETS
from meltr.plot import FIG3, FIG4, build_figures, figure_data, plot_run, train_records
from meltr.summary import RunDirError

__all__ = ["FIG3", "FIG4", "FIG5", "figure_data", "build_figures", "plot_run",
           "input_type", "fig5_panels", "build_fig5", "plot_fig5", "main"]

FIG5 = "fig5_input_types"
_EMBEDDING_LABELS = {"se+te": "SE + TE", "se": "SE only", "te": "TE only"}


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
        train = train_records(records)
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
    try:
        written = plot_run(args.run_dirs[0], args.out)
    except RunDirError as err:
        raise SystemExit(f"plot_meltr: {err}") from err  # `python -m` prints the message, status 1
    for path in written.values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
