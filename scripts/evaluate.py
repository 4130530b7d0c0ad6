"""Evaluate a saved checkpoint with the run configuration stored inside it.

    python -m scripts.evaluate --checkpoint runs/x/best.pt [--set data.root=/new/path ...] [--check]

Rebuilds the model and the test data from the checkpoint's config (overrides allowed, e.g. a moved
data folder), loads the weights, evaluates, and prints the metrics beside those recorded at save
time. ``--check`` exits with status 1 if they differ.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence

from meltr.checkpoint import load_checkpoint
from meltr.config import add_override_args, apply_overrides, from_dict
from meltr.log import setup_logging
from scripts.recipes import recipe


def evaluate_checkpoint(path: str, overrides: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics now, metrics recorded in the checkpoint)."""
    state = load_checkpoint(path)
    config = apply_overrides(dict(state["config"]), list(overrides), f"{path}:config")
    mod = recipe(str(config.get("backbone")))
    cfg = from_dict(config, mod.RunConfig, source=f"{path}:config")
    parts = mod.build(cfg, 0, 1, load_init=False)
    model = parts.model
    model.load_state_dict(state["model"])
    model.eval()
    try:
        import torch

        with torch.no_grad():
            metrics = {k: float(v) for k, v in parts.eval_fn(model).items()}
    finally:
        parts.close()
    return metrics, dict(state.get("metrics", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--check", action="store_true", help="exit 1 if the metrics differ from the recorded ones")
    add_override_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    now, saved = evaluate_checkpoint(args.checkpoint, args.overrides)
    print(json.dumps({"metrics": now, "recorded": saved}, indent=1))
    same = set(now) == set(saved) and all(math.isclose(now[k], saved[k], rel_tol=1e-6, abs_tol=1e-9) for k in now)
    print("matches the metrics recorded at save time" if same else "DIFFERS from the metrics recorded at save time")
    return 1 if args.check and not same else 0


if __name__ == "__main__":
    raise SystemExit(main())
