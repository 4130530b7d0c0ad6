"""CPU demo: MELTR against the baselines on scikit-learn's digits, over several seeds.

Run ``python -m scripts.demo [--config configs/demo/cpu_tiny.yaml] [--set key=value ...]``
(``torchrun --nproc_per_node N -m scripts.demo`` works too). Prints one table (test accuracy
mean +- std, wall time, time ratio against ``sum``) and writes it to ``<out_dir>/results.md``;
each run's metrics.jsonl goes to ``<out_dir>/<method>/seed<k>/`` for ``python -m scripts.plot_meltr``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from meltr import EpochSampler, Trainer, TrainerConfig
from meltr import distributed as D
from meltr.config import add_override_args, dump, load, to_dict
from meltr.log import setup_logging
from scripts.digits import DigitsCNN, PairedDigits, accuracy, collate, load_digits_split

log = logging.getLogger("meltr.demo")


@dataclass
class DemoConfig:
    """The demo run: data split, methods, seeds and the shared trainer settings."""

    methods: list[str] = field(default_factory=lambda: ["single", "sum", "fixed", "linear", "meltr"])  # combiners
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one run per method and seed
    labelled_per_class: int = 10  # labelled training images per digit class
    test_fraction: float = 0.3  # held-out test share of every class
    batch_size: int = 32  # images per batch (labelled and unlabelled each)
    width: int = 32  # CNN channels
    fixed: dict[str, float] = field(default_factory=lambda: {"cls": 1.0, "rotation": 0.5, "mixup": 0.5})  # "fixed" weights
    out_dir: str = "runs/demo"  # where results.md and per-run logs go
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # everything else (optimisers, meta step)


def run_one(cfg: DemoConfig, method: str, seed: int, out: Path) -> tuple[float, float]:
    """Trains one method with one seed; returns (test accuracy, wall seconds)."""
    split = load_digits_split(cfg.labelled_per_class, cfg.test_fraction, seed=0)  # same split for all runs
    tcfg = copy.deepcopy(cfg.trainer)
    tcfg.combiner.name = method
    tcfg.combiner.coefficients = dict(cfg.fixed)
    tcfg.seed = seed
    torch.manual_seed(seed)
    model = DigitsCNN(cfg.width)
    data = PairedDigits(split)
    sampler = EpochSampler(len(data), seed=seed, rank=D.rank(), world_size=D.world_size())
    loader = DataLoader(data, batch_size=cfg.batch_size // D.world_size(), sampler=sampler, collate_fn=collate, drop_last=True, generator=torch.Generator())
    run_dir = out / method / f"seed{seed}"
    trainer = Trainer(
        model, tcfg, loader, run_dir=run_dir, device="cpu", run_config={"demo": to_dict(cfg), "method": method, "seed": seed},
        eval_fn=lambda m: {"test_acc": accuracy(m, split.test_x, split.test_y)},
    )
    start = time.perf_counter()
    trainer.fit()
    return trainer.last_metrics["test_acc"], time.perf_counter() - start


def results_table(results: dict[str, list[tuple[float, float]]]) -> str:
    """Markdown table: accuracy mean +- std over seeds, mean wall time, time ratio against ``sum``."""
    base = statistics.fmean(t for _, t in results["sum"]) if "sum" in results else None
    lines = ["| method | test accuracy (%) | wall time (s) | time vs sum |", "|---|---|---|---|"]
    for method, runs in results.items():
        accs = [100 * a for a, _ in runs]
        times = [t for _, t in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        ratio = f"{statistics.fmean(times) / base:.2f}x" if base else "n/a"
        lines.append(f"| {method} | {statistics.fmean(accs):.2f} +- {std:.2f} | {statistics.fmean(times):.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/cpu_tiny.yaml")
    add_override_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    D.init_from_env()
    cfg = load(args.config, DemoConfig, args.overrides)
    out = Path(cfg.out_dir)
    if D.rank() == 0:
        dump(cfg, out / "config.yaml")
    results: dict[str, list[tuple[float, float]]] = {}
    for method in cfg.methods:
        for seed in cfg.seeds:
            acc, secs = run_one(cfg, method, seed, out)
            results.setdefault(method, []).append((acc, secs))
            log.info("%-7s seed %d: test accuracy %.2f%% in %.1fs", method, seed, 100 * acc, secs)
    table = results_table(results)
    if D.rank() == 0:
        n = len(load_digits_split(cfg.labelled_per_class, cfg.test_fraction).test_y)
        header = (
            f"# MELTR demo: digits, {cfg.labelled_per_class} labelled images per class, {n} test images, "
            f"seeds {cfg.seeds}, {D.world_size()} process(es)\n\n"
        )
        (out / "results.md").write_text(header + table + "\n")
        print(header + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
