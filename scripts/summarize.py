"""Turn ablation runs into the paper's tables, with the paper's numbers beside ours and the difference.

    python -m scripts.summarize RUN_DIR [RUN_DIR ...] [--out DIR] [--select best|last]

Each RUN_DIR is a run started by ``scripts/paper/ablation_table*.sh``. Its ``row.json`` (written by
``scripts/train.py`` with the row that ``scripts/launch.py`` passes) says which table and row it is and how the
run ended::

    {"table": "8", "row": "lite", "method": "meltr", "univl_row": "msrvtt7k_retrieval", "tiny": false,
     "args": ["--set", ...], "status": "started" | "finished" | "cannot_train" | "failed",
     "exit_code": 1, "message": "..."}

The numbers come from what the trainer wrote, nothing else: the ``eval`` records of ``metrics.jsonl``
(the one selected as ``best.pt`` was, by ``trainer.best_metric`` of ``config.yaml``, or the last one),
its ``epoch`` records (training wall time of each epoch and peak memory; Table 8 averages the complete
epochs and takes the largest peak) and its final ``summary`` record. A run counts as finished when
``row.json`` says so and the trainer wrote its summary record. A run that is missing, unfinished,
failed or could not train is listed with that status and no numbers; a paper row without any run is
listed as "not run".

Output: one markdown section per table present among the runs (printed, and with ``--out`` written
to ``DIR/summary.md``) and one CSV per table (``DIR/table<N>.csv``, ``DIR/fig5.csv``; full precision). Our values are
converted to the paper's unit (x100 for R@K, BLEU, METEOR, ROUGE-L; CIDEr as the table prints it);
``Δ`` is ours minus the paper's. Table 8's time overhead is relative to the ``sum`` row among the
given runs, Table 11's average gain to the ``base`` row of the same training method.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from meltr.log import METRICS_FILE, drop_replayed, read_jsonl
from scripts.paper_results import NOTES, PAPER, ROW_LABELS

__all__ = ["ROW_FILE", "Column", "TableSpec", "TABLES", "RunResult", "read_run", "build_tables", "to_markdown",
           "write_outputs", "main"]

ROW_FILE = "row.json"
"""Name of the file in which ``scripts/train.py`` records a run's table, row and outcome."""

Select = Literal["best", "last"]


@dataclass(frozen=True)
class Column:
    """One metric column: ours, the paper's and the difference."""

    key: str  # metric name in our eval/epoch records (or a derived one) and in PAPER
    label: str  # header as the paper prints it
    scale: float = 100.0  # our logged value times this is in the paper's unit
    digits: int = 2  # decimals shown in markdown
    paper_digits: int | None = None  # decimals of the paper's number where it prints fewer (None: digits)
    diff: bool = True  # show ours - paper (off where the numbers are not comparable, e.g. seconds on other hardware)


@dataclass(frozen=True)
class TableSpec:
    """Layout of one paper table."""

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[str, ...]  # row ids in the paper's order
    labels: dict[str, str] = field(default_factory=dict)  # row id -> row name
    note: str = ""  # printed under the title


_CAPTION = (Column("BLEU-3", "B3"), Column("BLEU-4", "B4"), Column("METEOR", "M"), Column("ROUGE-L", "R"))
_R1 = Column("t2v_R@1", "R@1", digits=1)
_MEM = Column("peak_memory_mib", "peak mem (MiB)", scale=1.0, digits=0, diff=False)

TABLES: dict[str, TableSpec] = {
    "7": TableSpec("7", "Table 7: YouCook2 captioning (video + transcript), fixed coefficients vs MELTR",
                   _CAPTION + (Column("CIDEr", "CIDEr", scale=1.0),), tuple(PAPER["7"]), ROW_LABELS["7"], NOTES["7"]),
    "8": TableSpec("8", "Table 8: MSRVTT-7k retrieval, multi-task sum vs MELTR per hypergradient scheme",
                   (_R1, Column("epoch_time_s", "epoch time (s)", scale=1.0, digits=1, paper_digits=0, diff=False),
                    Column("time_vs_sum_pct", "time vs sum (%)", scale=1.0, digits=1), _MEM),
                   tuple(PAPER["8"]), ROW_LABELS["8"], NOTES["8"]),
    "9": TableSpec("9", "Table 9 (Appendix C): regulariser strength gamma, MSRVTT-7k retrieval",
                   (_R1,), tuple(PAPER["9"]), ROW_LABELS["9"], NOTES["9"]),
    "10": TableSpec("10", "Table 10 (Appendix D): loss-transformer architecture, MSRVTT-7k retrieval",
                    (_R1,), tuple(PAPER["10"]), ROW_LABELS["10"], NOTES["10"]),
    "11": TableSpec("11", "Table 11 (Appendix G): UniVL's advanced losses, YouCook2 captioning",
                    _CAPTION + (Column("avg_gain", "avg. gain", scale=1.0),), tuple(PAPER["11"]), ROW_LABELS["11"],
                    NOTES["11"]),
    "fig5": TableSpec("fig5", "Figure 5 runs (Appendix E): MELTR input type on YouCook2 captioning "
                      "(the paper shows only the figure)",
                      _CAPTION + (Column("CIDEr", "CIDEr", scale=1.0),), tuple(PAPER["10"]), ROW_LABELS["10"],
                      "The Table 10 rows trained for captioning (TASK=caption); plot them with "
                      "python -m scripts.plot_meltr --fig5 SE_RUN TE_RUN SE_TE_RUN."),
}


@dataclass
class RunResult:
    """What one run directory holds, in our units (as logged)."""

    run_dir: Path
    table: str | None = None
    row: str | None = None
    method: str | None = None
    status: str = "ok"  # ok, cannot train, unfinished, unreadable, failed (exit N), missing, not placed
    message: str = ""
    tiny: bool = False
    metrics: dict[str, float] = field(default_factory=dict)  # selected eval metrics + epoch_time_s, peak_memory_mib
    memory_kind: str = ""  # "CUDA max allocated" or "CPU peak RSS"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _read_row_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if isinstance(data, dict) and "status" in data and "table" not in data:
        raise ValueError(f"{path}: not an ablation row (no table): start ablation rows with scripts/paper/ablation_table*.sh")
    missing = [k for k in ("table", "row", "status") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing} (written by scripts/train.py)")
    return data


def _selected_eval(evals: list[dict[str, Any]], config: dict[str, Any], select: Select) -> dict[str, float]:
    """The eval record that ``best.pt`` holds (first best by ``trainer.best_metric``), or the last one."""
    trainer = config.get("trainer") or {}
    name, mode = trainer.get("best_metric"), trainer.get("best_mode", "max")
    if select == "last" or name is None:
        return evals[-1]["metrics"]
    best: dict[str, float] | None = None
    for r in evals:
        value = r["metrics"].get(name)
        if value is None:
            continue
        # strict comparison: the trainer keeps the first of equal values
        if best is None or (value > best[name] if mode == "max" else value < best[name]):
            best = r["metrics"]
    return best if best is not None else evals[-1]["metrics"]


def read_run(run_dir: str | Path, select: Select = "best") -> RunResult:
    """Reads one run directory; never raises for a broken run, the status and message say what is wrong."""
    run_dir = Path(run_dir)
    res = RunResult(run_dir)
    if not run_dir.is_dir():
        what = "not a directory" if run_dir.exists() else "run directory not found"
        res.status, res.message = "missing", f"{what}: {run_dir}"
        return res
    row_path = run_dir / ROW_FILE
    if not row_path.is_file():
        res.status, res.message = "not placed", f"{row_path} not found: start ablation rows with scripts/paper/ablation_table*.sh"
        return res
    try:
        info = _read_row_file(row_path)
    except ValueError as err:
        res.status, res.message = "not placed", str(err)
        return res
    res.table, res.row, res.method = str(info["table"]), str(info["row"]), info.get("method")
    res.tiny = bool(info.get("tiny", False))
    if res.table not in TABLES:
        res.status, res.message = "not placed", f"{row_path}: unknown table {res.table!r}; known: {', '.join(TABLES)}"
        return res
    if info["status"] == "cannot_train":
        res.status, res.message = "cannot train", str(info.get("message", ""))
        return res
    if info["status"] == "failed":
        res.status = f"failed (exit {info.get('exit_code', '?')})"
        res.message = str(info.get("message", ""))
        return res
    metrics_path = run_dir / METRICS_FILE
    try:
        # a resumed run's replayed steps count once (the resumed attempt's records win)
        records = drop_replayed(read_jsonl(metrics_path)) if metrics_path.is_file() else []
    except ValueError as err:  # names the file and the line
        res.status, res.message = "unreadable", str(err)
        return res
    evals = [r for r in records if r.get("kind") == "eval" and isinstance(r.get("metrics"), dict)]
    if info["status"] != "finished":
        res.status = "unfinished"
        res.message = f"{row_path} says {info['status']!r} (running, or stopped); {len(evals)} evaluation(s) in {metrics_path}"
        return res
    if not evals or not any(r.get("kind") == "summary" for r in records):
        res.status, res.message = "unfinished", f"{metrics_path} has no eval or no final summary record"
        return res
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    res.metrics = {k: float(v) for k, v in _selected_eval(evals, config or {}, select).items()}
    epochs = [r for r in records if r.get("kind") == "epoch"]
    complete = [r["epoch_time_s"] for r in epochs if r.get("complete")]
    if complete:
        res.metrics["epoch_time_s"] = sum(complete) / len(complete)
    for key, kind in (("peak_cuda_allocated_mib", "CUDA max allocated"), ("peak_rss_mib", "CPU peak RSS")):
        peaks = [r[key] for r in epochs if key in r]
        if peaks:
            res.metrics["peak_memory_mib"], res.memory_kind = max(peaks), kind
    return res


# ------------------------------------------------------------------ derived columns

def _time_vs_sum(row: str, values: dict[str, dict[str, float]]) -> float | None:
    """Table 8: epoch-time overhead over the multi-task sum run, in %."""
    ref, own = values.get("sum", {}).get("epoch_time_s"), values.get(row, {}).get("epoch_time_s")
    return None if ref is None or own is None else 100.0 * (own / ref - 1.0)


def _avg_gain(row: str, values: dict[str, dict[str, float]]) -> float | None:
    """Table 11: mean gain of B3/B4/M/R over the "Ori." (base) row of the same training method."""
    method = row.rsplit("-", 1)[-1]
    ref, own = values.get(f"base-{method}", {}), values.get(row, {})
    keys = [c.key for c in _CAPTION]
    if not all(k in ref and k in own for k in keys):
        return None
    return sum(own[k] - ref[k] for k in keys) / len(keys)


DERIVED: dict[str, Callable[[str, dict[str, dict[str, float]]], float | None]] = {
    "time_vs_sum_pct": _time_vs_sum,
    "avg_gain": _avg_gain,
}


# ------------------------------------------------------------------ tables

@dataclass
class Line:
    """One line of a summary table: a run (or a paper row without one)."""

    row: str
    label: str
    status: str
    run: str
    notes: str
    ours: dict[str, float | None]  # column key -> our value in the paper's unit
    paper: dict[str, float | None]
    diff: dict[str, float | None]


def _minus(a: float | None, b: float | None) -> float | None:
    """``a - b``, or None where either is missing."""
    return a - b if a is not None and b is not None else None


def _paper_value(table: str, row: str, key: str) -> float | None:
    return PAPER.get(table, {}).get(row, {}).get(key)


def _notes(spec: TableSpec, r: RunResult) -> str:
    parts = []
    if r.tiny:
        parts.append("TINY synthetic run")
    if r.memory_kind and _MEM in spec.columns:
        parts.append(f"memory: {r.memory_kind}")
    if r.message:
        parts.append(r.message)
    return "; ".join(parts)


def _scaled(spec: TableSpec, r: RunResult) -> dict[str, float]:
    return {c.key: r.metrics[c.key] * c.scale for c in spec.columns if c.key in r.metrics}


def build_tables(results: Sequence[RunResult]) -> dict[str, list[Line]]:
    """Lines of every table that has at least one run among ``results``, in the paper's row order."""
    out: dict[str, list[Line]] = {}
    for tid, spec in TABLES.items():
        runs = [r for r in results if r.table == tid]
        if not runs:
            continue
        # our values in the paper's unit per row; the first finished run of a row is the reference of derived columns
        scaled: dict[str, dict[str, float]] = {}
        for r in runs:
            if r.ok and r.row not in scaled:
                scaled[str(r.row)] = _scaled(spec, r)
        # a run with a table has its row (read together from run.json)
        order = list(spec.rows) + sorted({r.row for r in runs if r.row is not None and r.row not in spec.rows})
        lines: list[Line] = []
        for row in order:
            label = spec.labels.get(row, row)
            paper = {c.key: _paper_value(tid, row, c.key) for c in spec.columns}
            row_runs = [r for r in runs if r.row == row]
            if not row_runs:
                lines.append(Line(row, label, "not run", "", "", {c.key: None for c in spec.columns}, paper,
                                  {c.key: None for c in spec.columns}))
                continue
            for r in row_runs:
                ours: dict[str, float | None] = {}
                for c in spec.columns:
                    if not r.ok:
                        ours[c.key] = None
                    elif c.key in DERIVED:
                        ours[c.key] = DERIVED[c.key](row, {**scaled, row: _scaled(spec, r)})
                    else:
                        ours[c.key] = r.metrics[c.key] * c.scale if c.key in r.metrics else None
                diff = {c.key: _minus(ours[c.key], paper[c.key]) if c.diff else None for c in spec.columns}
                lines.append(Line(row, label, r.status, str(r.run_dir), _notes(spec, r), ours, paper, diff))
        out[tid] = lines
    return out


def _fmt(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def to_markdown(tables: dict[str, list[Line]], unplaced: Sequence[RunResult] = ()) -> str:
    """Markdown: per table a title, the paper's note and one line per run; then the runs not placed."""
    parts: list[str] = []
    for tid, lines in tables.items():
        spec = TABLES[tid]
        header = ["row"]
        for c in spec.columns:
            header += [f"{c.label} ours", f"{c.label} paper"] + (["Δ"] if c.diff else [])
        header += ["status", "run", "notes"]
        body = []
        for ln in lines:
            cells = [ln.label]
            for c in spec.columns:
                paper = ln.paper[c.key]
                cells += [_fmt(ln.ours[c.key], c.digits),
                          ("-" if paper is None and tid in PAPER and ln.row in PAPER[tid]
                           else _fmt(paper, c.digits if c.paper_digits is None else c.paper_digits))]
                if c.diff:
                    cells.append(_fmt(ln.diff[c.key], c.digits, signed=True))
            cells += [ln.status, ln.run, ln.notes.replace("|", "/")]
            body.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join([f"## {spec.title}", "", spec.note, "",
                                "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *body]))
    if unplaced:
        parts.append("\n".join(["## Runs not placed in a table", "",
                                *(f"- {r.run_dir}: {r.status}: {r.message}" for r in unplaced)]))
    return "\n\n".join(parts) + "\n"


def _csv_rows(tid: str, lines: list[Line]) -> tuple[list[str], list[list[Any]]]:
    spec = TABLES[tid]
    header = ["table", "row", "label"]
    for c in spec.columns:
        header += [f"{c.key}_ours", f"{c.key}_paper", f"{c.key}_diff"]
    header += ["status", "run", "notes"]
    rows = []
    for ln in lines:
        cells: list[Any] = [tid, ln.row, ln.label]
        for c in spec.columns:
            cells += ["" if v is None else repr(float(v)) for v in (ln.ours[c.key], ln.paper[c.key], ln.diff[c.key])]
        rows.append(cells + [ln.status, ln.run, ln.notes])
    return header, rows


def _file_stem(tid: str) -> str:
    """``table7`` for paper tables, the id itself otherwise (``fig5``), as scripts/launch.py names run folders."""
    return f"table{tid}" if tid.isdigit() else tid


def write_outputs(tables: dict[str, list[Line]], markdown: str, out_dir: str | Path) -> list[Path]:
    """Writes ``summary.md`` and one CSV per table (``table7.csv``, ..., ``fig5.csv``) into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.md"]
    written[0].write_text(markdown, encoding="utf-8")
    for tid, lines in tables.items():
        header, rows = _csv_rows(tid, lines)
        path = out / f"{_file_stem(tid)}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (1 when no run could be placed in a table)."""
    parser = argparse.ArgumentParser(prog="python -m scripts.summarize", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories written by scripts/paper/ablation_table*.sh")
    parser.add_argument("--out", type=Path, default=None, help="also write summary.md and one CSV per table here")
    parser.add_argument("--select", choices=["best", "last"], default="best",
                        help="which evaluation of a run: the one best.pt holds (default) or the last")
    args = parser.parse_args(argv)
    results = [read_run(d, args.select) for d in args.run_dirs]
    placed = [r for r in results if r.table in TABLES and r.status != "not placed"]
    unplaced = [r for r in results if r.table not in TABLES or r.status == "not placed"]
    tables = build_tables(placed)
    markdown = to_markdown(tables, unplaced)
    print(markdown, end="")
    if args.out is not None:
        for path in write_outputs(tables, markdown, args.out):
            print(f"wrote {path}")
    return 0 if tables else 1


if __name__ == "__main__":
    raise SystemExit(main())
