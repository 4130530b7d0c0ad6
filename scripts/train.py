"""Fine-tune a backbone with MELTR or a baseline: the composition root of every paper-table row.

    python -m scripts.train --config configs/univl/youcook_caption.yaml [--overlay configs/tiny/univl.yaml ...]
        [--set key=value ...] [--resume CKPT | --resume auto] [--overwrite] [--row-info JSON]
    torchrun --nproc_per_node N -m scripts.train --config ...

The config is parsed once (:func:`scripts.run_config.load_run`): the run YAML, each ``--overlay`` merged over
it, then the ``--set`` overrides; its ``backbone`` key picks the recipe. Writes ``<output_dir>/config.yaml``
(the resolved config), ``metrics.jsonl``, TensorBoard events, ``last.pt`` and ``best.pt``; prints the final
and best metrics as JSON on rank 0. The model's fresh heads, the combiner and dropout start from
``trainer.seed`` (:func:`seed_everything`), so two runs of one config give the same numbers.

``<output_dir>/row.json`` records how the run ended, for ``python -m scripts.summarize``: ``started`` (while it
runs, or if it was killed), ``finished``, ``cannot_train`` or ``failed`` (with its ``exit_code`` and the error as
``message``), with the fields of ``--row-info`` (the paper or ablation row: table, row, method, arguments; the
launcher ``scripts/launch.py`` passes them). A combiner that cannot train the backbone (the trainer raises
:class:`meltr.CombinerTrainingError`, e.g. the TE-only MELTR of paper Appendix D) is a result, not a crash:
status ``cannot_train``, a ``RESULT ...`` line on stdout, exit status 0.

An output directory that already holds a run (``metrics.jsonl``, ``last.pt`` or ``best.pt``) is refused,
so a re-launched row never overwrites a run by accident. Continue it with ``--resume auto`` (resumes from
``<output_dir>/last.pt``, or starts fresh in a directory without a run: what a requeued job wants) or
``--resume PATH``; replace it with ``--overwrite`` (which names every file it removes).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meltr import CombinerTrainingError, Trainer
from meltr import distributed as D
from meltr.checkpoint import atomic_write, load_checkpoint
from meltr.config import add_override_args, dump, to_dict
from meltr.log import METRICS_FILE, TB_SUBDIR, setup_logging
from scripts.recipes import Recipe
from scripts.run_config import load_run
from scripts.summarize import ROW_FILE

log = logging.getLogger("meltr.scripts.train")

# What marks a directory as holding a run, and what --overwrite replaces.
RUN_FILES = (METRICS_FILE, "last.pt", "best.pt")


class RunDirError(RuntimeError):
    """The output directory holds a run that this launch would overwrite (the message names it)."""


def _previous_run(out: Path) -> list[Path]:
    """The files and folders of an earlier run in ``out``: metrics, checkpoints (with rank files), TensorBoard."""
    found = [out / n for n in RUN_FILES if (out / n).exists()]
    found += sorted(out.glob("last.pt.rank*")) + sorted(out.glob("best.pt.rank*"))
    if (out / TB_SUBDIR).is_dir():
        found.append(out / TB_SUBDIR)
    return found


def resolve_resume(out: Path, resume: str | None, overwrite: bool) -> str | None:
    """What this launch does with ``out``: the checkpoint to resume from, or None to start fresh.

    Args:
        out: The run's output directory.
        resume: ``--resume``: None, ``"auto"`` (``out/last.pt`` when present, as Hugging Face's
            ``get_last_checkpoint``), or a checkpoint path.
        overwrite: ``--overwrite``: remove an earlier run in ``out`` (logging each file) and start fresh.

    Raises:
        RunDirError: ``out`` holds a run and neither resuming nor overwriting was asked; the resume
            checkpoint does not exist; or both ``--resume PATH`` and ``--overwrite`` were given.
    """
    if resume not in (None, "auto"):
        if overwrite:
            raise RunDirError(f"--resume {resume} and --overwrite contradict each other (output directory {out})")
        if not Path(resume).is_file():
            raise RunDirError(f"--resume {resume}: no such checkpoint file (output directory {out})")
        return resume
    if resume == "auto" and (out / "last.pt").is_file() and not overwrite:
        return str(out / "last.pt")
    previous = _previous_run(out)
    if not previous:
        return None
    names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in previous)
    if not overwrite:
        hint = "it has no last.pt to resume from; " if resume == "auto" else "continue it with --resume auto (or --resume PATH), or "
        raise RunDirError(f"output directory {out} already holds a run ({names}): {hint}pass --overwrite to replace it")
    for p in previous:
        log.warning("--overwrite: removing %s of the previous run in %s", p.name + ("/" if p.is_dir() else ""), out)
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    return None


def write_row_file(out: Path, info: dict[str, Any], status: str, **outcome: Any) -> None:
    """Writes ``out/row.json``: ``info`` (the row: table, row, method, ...), ``status``, the time and ``outcome``
    (``exit_code``, ``message``), atomically; the format :func:`scripts.summarize.read_run` reads."""
    record = {**info, "status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **outcome}
    atomic_write(out / ROW_FILE, lambda f: f.write(json.dumps(record, indent=1).encode("utf-8")))


def _row_label(info: dict[str, Any], out: Path) -> str:
    """How the RESULT line names the run: ``table 10 row te`` for an ablation row, else its output directory."""
    return f"table {info['table']} row {info['row']}" if "table" in info else str(out)


def _row_info(parser: argparse.ArgumentParser, text: str | None) -> dict[str, Any]:
    """The ``--row-info`` object (empty without one); anything but a JSON object is a usage error."""
    try:
        info = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        parser.error(f"--row-info is not valid JSON ({err})")
    if not isinstance(info, dict):
        parser.error(f"--row-info must be a JSON object, got {text!r}")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--overlay", action="append", default=[], metavar="YAML",
                        help="a partial run YAML merged over --config, before the --set overrides (repeatable)")
    parser.add_argument("--resume", help="continue exactly from this last.pt, or 'auto': from OUTPUT_DIR/last.pt when present")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in the output directory (names what it removes)")
    parser.add_argument("--row-info", help="JSON object recorded in OUTPUT_DIR/row.json: the paper or ablation row this run is")
    add_override_args(parser)
    args = parser.parse_args(argv)
    info = _row_info(parser, args.row_info)
    setup_logging()
    D.init_from_env()
    mod, cfg = load_run(args.config, args.overlay, args.overrides)
    out = Path(cfg.output_dir)
    # Rank 0 decides (and removes, under --overwrite); the broadcast also keeps the other ranks from
    # looking at the directory while it changes.
    decision: tuple[str, str | None] = ("ok", None)
    if D.rank() == 0:
        try:
            decision = ("ok", resolve_resume(out, args.resume, args.overwrite))
        except RunDirError as exc:
            decision = ("error", str(exc))
    decision = D.broadcast_object(decision)  # type: ignore[assignment]
    if decision[0] == "error":
        if D.rank() == 0:
            print(f"error: {decision[1]}", file=sys.stderr)
        return 2
    resume = decision[1]
    if D.rank() == 0:
        dump(cfg, out / "config.yaml")
        write_row_file(out, info, "started")
    try:
        summary = _train(mod, cfg, out, resume)
    except CombinerTrainingError as exc:
        # the paper reports such rows (Table 10, TE only) as "cannot be trained": a result, not a crash
        message = f"{type(exc).__name__}: {exc}"
        if D.rank() == 0:
            write_row_file(out, info, "cannot_train", message=message)
            print(f"RESULT {_row_label(info, out)}: cannot train{', as the paper reports' if 'table' in info else ''}. {message}")
        return 0
    except Exception as exc:
        if D.rank() == 0:
            write_row_file(out, info, "failed", exit_code=1, message=f"{type(exc).__name__}: {exc}")
        raise
    if D.rank() == 0:
        print(json.dumps({"step": summary["step"], "metrics": summary["metrics"], "best": summary["best"]}, indent=1))
        best = out / "best.pt"
        if best.exists():
            # the table of the checkpoint selected by trainer.best_metric (e.g. MOSI: valid MAE -> test numbers)
            print(mod.report(cfg, load_checkpoint(best)["metrics"]))
        write_row_file(out, info, "finished", exit_code=0)
        if "table" in info:
            print(f"RESULT {_row_label(info, out)}: finished in {out} (python -m scripts.summarize {out})")
    return 0


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's global generators (every device), as Hugging Face's ``set_seed``.

    Called before the model is built, so that the heads the official checkpoints do not fill, the combiner and
    dropout start the same in every run of a config (the data order, masks and meta draws have their own
    generators, seeded from the same ``trainer.seed``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train(mod: Recipe, cfg: Any, out: Path, resume: str | None) -> dict[str, Any]:
    """Builds the run's parts from ``trainer.seed``, trains (from ``resume`` when given), returns the summary."""
    seed_everything(cfg.trainer.seed)
    parts = mod.build(cfg, D.rank(), D.world_size())
    try:
        trainer = Trainer(parts.model, cfg.trainer, parts.train_loader, eval_fn=parts.eval_fn, run_dir=out,
                          run_config=to_dict(cfg))
        if resume:
            trainer.resume(resume)
        return trainer.fit()
    finally:
        parts.close()


if __name__ == "__main__":
    raise SystemExit(main())
