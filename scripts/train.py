"""Fine-tune a backbone with MELTR or a baseline: the composition root of every paper-table row.

    python -m scripts.train --config configs/univl/youcook_caption.yaml [--set key=value ...] [--resume CKPT]
    torchrun --nproc_per_node N -m scripts.train --config ...

Writes ``<output_dir>/config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard events,
``last.pt`` and ``best.pt``; prints the final and best metrics as JSON on rank 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from meltr import Trainer
from meltr import distributed as D
from meltr.checkpoint import load_checkpoint
from meltr.config import ConfigError, add_override_args, apply_overrides, dump, load, to_dict
from meltr.log import setup_logging
from scripts.recipes import recipe


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
    parser.add_argument("--resume", help="continue exactly from a last.pt / best.pt of this run")
    add_override_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    D.init_from_env()
    mod = recipe(backbone_of(args.config, args.overrides))
    cfg = load(args.config, mod.RunConfig, args.overrides)
    out = Path(cfg.output_dir)
    if D.rank() == 0:
        dump(cfg, out / "config.yaml")
    parts = mod.build(cfg, D.rank(), D.world_size())
    trainer = Trainer(parts["model"], cfg.trainer, parts["train_loader"], eval_fn=parts["eval_fn"], run_dir=out, run_config=to_dict(cfg))
    if args.resume:
        trainer.resume(args.resume)
    try:
        summary = trainer.fit()
    finally:
        parts["close"]()
    if D.rank() == 0:
        print(json.dumps({"step": summary["step"], "metrics": summary["metrics"], "best": summary["best"]}, indent=1))
        best = out / "best.pt"
        if hasattr(mod, "report") and best.exists():
            # the table of the checkpoint selected by trainer.best_metric (e.g. MOSI: valid MAE -> test numbers)
            print(mod.report(cfg, load_checkpoint(best)["metrics"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
