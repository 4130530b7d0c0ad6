"""Fine-tune a backbone with MELTR or a baseline: the composition root of every paper-table row.

    python -m scripts.train --config configs/univl/youcook_caption.yaml [--set key=value ...]
        [--resume CKPT | --resume auto] [--overwrite]
    torchrun --nproc_per_node N -m scripts.train --config ...

Writes ``<output_dir>/config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard events,
``last.pt`` and ``best.pt``; prints the final and best metrics as JSON on rank 0.

An output directory that already holds a run (``metrics.jsonl``, ``last.pt`` or ``best.pt``) is refused,
so a re-launched row never overwrites a run by accident. Continue it with ``--resume auto`` (resumes from
``<output_dir>/last.pt``, or starts fresh in a directory without a run: what a requeued job wants) or
``--resume PATH``; replace it with ``--overwrite`` (which names every file it removes).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import yaml

from meltr import Trainer
from meltr import distributed as D
from meltr.checkpoint import load_checkpoint
from meltr.config import ConfigError, add_override_args, apply_overrides, dump, load, to_dict
from meltr.log import METRICS_FILE, TB_SUBDIR, setup_logging
from scripts.recipes import recipe

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


def backbone_of(path: str, overrides: list[str]) -> str:
    """The ``backbone`` key of a run YAML (after overrides), which selects the recipe."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    data = apply_overrides(data, overrides, path)
    if "backbone" not in data:
        raise ConfigError(f"{path}: backbone: missing (the recipe selector, e.g. 'univl')")
    return str(data["backbone"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", help="continue exactly from this last.pt, or 'auto': from OUTPUT_DIR/last.pt when present")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in the output directory (names what it removes)")
    add_override_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    D.init_from_env()
    mod = recipe(backbone_of(args.config, args.overrides))
    cfg = load(args.config, mod.RunConfig, args.overrides)
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
    parts = mod.build(cfg, D.rank(), D.world_size())
    trainer = Trainer(parts.model, cfg.trainer, parts.train_loader, eval_fn=parts.eval_fn, run_dir=out, run_config=to_dict(cfg))
    if resume:
        trainer.resume(resume)
    try:
        summary = trainer.fit()
    finally:
        parts.close()
    if D.rank() == 0:
        print(json.dumps({"step": summary["step"], "metrics": summary["metrics"], "best": summary["best"]}, indent=1))
        best = out / "best.pt"
        if best.exists():
            # the table of the checkpoint selected by trainer.best_metric (e.g. MOSI: valid MAE -> test numbers)
            print(mod.report(cfg, load_checkpoint(best)["metrics"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
