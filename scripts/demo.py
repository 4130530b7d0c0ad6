"""CPU demo: does one MELTR run do as well as a grid search over fixed loss weights, and does it protect
the target task from an auxiliary loss that hurts? scikit-learn's digits, several seeds, CPU.

Run ``python -m scripts.demo [--config configs/demo/cpu_tiny.yaml] [--set key=value ...]``
(``torchrun --nproc_per_node N -m scripts.demo`` works too).

The protocol (fixed before any run was made):

* data: the digits split once (seed 0), stratified per class: 30% test; from the rest (the training
  images) ``val_per_class`` validation and ``labelled_per_class`` labelled images, the others unlabelled;
* settings: ``appendix_h`` (classification + rotation + mixup, the paper's image-only setting) and
  ``harmful`` (the same plus ``random_labels``, which trains the classifier towards random classes on the
  unlabelled images);
* every run trains ``trainer.epochs`` epochs, measures validation accuracy after each (or every
  ``trainer.eval_every`` steps) and keeps ``best.pt`` at the first best; the test set is evaluated once, on
  ``best.pt``;
* ``fixed`` is a grid: every auxiliary coefficient takes each value of ``fixed_grid`` (target loss 1), one run
  per point; per seed the point with the best validation accuracy is reported (ties: the first in grid
  order), and its cost is the whole grid;
* test accuracy is the mean +- std over seeds; compute = runs x mean wall seconds per run.

Writes ``<out_dir>/results.md`` (both tables, linking the figures), ``<out_dir>/<setting>/task_weights.png``
(the learned combiners' task weights against the step: mean over seeds, band = range) and every run's
logs under ``<out_dir>/<setting>/<method>[/<grid point>]/seed<k>/`` (``python -m scripts.plot_meltr``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from meltr import CombinerConfig, EpochSampler, Trainer, TrainerConfig
from meltr import distributed as D
from meltr.checkpoint import load_checkpoint
from meltr.config import add_override_args, dump, load, to_dict
from meltr.log import setup_logging
from meltr.summary import read_run
from scripts.digits import DigitsCNN, DigitsSplit, PairedDigits, accuracy, collate, load_digits_split

log = logging.getLogger("meltr.demo")

SETTINGS = {  # setting -> (title, whether the harmful auxiliary is on)
    "appendix_h": ("(a) Appendix H: cls + rotation + mixup", False),
    "harmful": ("(b) the same + random_labels, an auxiliary that hurts", True),
}
METHODS = {  # method -> what it is (the table's legend)
    "single": "the target loss alone",
    "sum": "the multi-task sum",
    "fixed": "fixed weights: the grid point with the best validation accuracy",
    "linear": "learned linear weights (paper Appendix D), meta-trained as MELTR is",
    "meltr_paper": "MELTR in the paper's form and init (`residual: none`)",
    "meltr": "MELTR with the residual-sum start (`residual: sum`, the plug-in default)",
}


@dataclass
class DemoConfig:
    """The demo: data split, settings, methods, seeds and the shared trainer settings."""

    settings: list[str] = field(default_factory=lambda: list(SETTINGS))  # appendix_h, harmful
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # single sum fixed linear meltr_paper meltr
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one run (fixed: one grid) per method and seed
    labelled_per_class: int = 10  # labelled training images per digit class
    val_per_class: int = 10  # validation images per class, carved from the training images
    test_fraction: float = 0.3  # held-out test share of every class
    batch_size: int = 32  # images per batch (labelled and unlabelled each)
    width: int = 32  # CNN channels
    fixed_grid: list[float] = field(default_factory=lambda: [0.0, 1.0])  # values of each auxiliary coefficient
    # torch threads per process. The models are tiny: on a busy 2-core machine (load 7) a run took 45 s with 2
    # threads and 4.5 s with 1, as each step's threads wait for a core.
    threads: int = 1
    out_dir: str = "runs/demo"  # where results.md, the figures and per-run logs go
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # everything else (optimisers, meta step)

    def validate(self) -> None:
        for kind, given, known in (("setting", self.settings, SETTINGS), ("method", self.methods, METHODS)):
            unknown = [g for g in given if g not in known]
            if unknown or not given:
                raise ValueError(f"unknown or no {kind}s {unknown}; valid: {', '.join(known)}")
        if not self.seeds or not self.fixed_grid or self.threads < 1:
            raise ValueError("seeds and fixed_grid must not be empty, and threads must be >= 1")


@dataclass
class Run:
    """One training run, selected on validation."""

    point: str  # the fixed grid point ("rotation=1 mixup=0"), else ""
    val: float  # best validation accuracy
    step: int  # the step that reached it (an epoch end unless trainer.eval_every is set)
    test: float  # test accuracy of best.pt
    seconds: float  # wall time of training, validation and the test evaluation


@lru_cache(maxsize=4)
def _split(labelled_per_class: int, val_per_class: int, test_fraction: float) -> DigitsSplit:
    return load_digits_split(labelled_per_class, val_per_class, test_fraction, seed=0)  # one split for every run


def split_of(cfg: DemoConfig) -> DigitsSplit:
    return _split(cfg.labelled_per_class, cfg.val_per_class, cfg.test_fraction)


def combiners(cfg: DemoConfig, method: str, loss_names: tuple[str, ...]) -> list[tuple[str, CombinerConfig]]:
    """The runs of ``method`` for one seed: ``(grid point, combiner config)``; one run unless ``fixed``."""
    base = cfg.trainer.combiner
    if method != "fixed":
        comb = copy.deepcopy(base)
        comb.name = "meltr" if method == "meltr_paper" else method
        if method == "meltr_paper":
            comb.meltr.residual = "none"
        return [("", comb)]
    target, aux = loss_names[0], loss_names[1:]
    runs = []
    for values in itertools.product(cfg.fixed_grid, repeat=len(aux)):
        comb = copy.deepcopy(base)
        comb.name = "fixed"
        comb.coefficients = {target: 1.0, **dict(zip(aux, values))}
        runs.append((" ".join(f"{n}={v:g}" for n, v in zip(aux, values)), comb))
    return runs


def run_dir_of(out: Path, setting: str, method: str, point: str, seed: int) -> Path:
    """Where a run logs: ``<out>/<setting>/<method>[/<grid point, e.g. rotation1_mixup0>]/seed<k>``."""
    return out / setting / method / point.replace("=", "").replace(" ", "_") / f"seed{seed}"


def _loader(cfg: DemoConfig, seed: int) -> DataLoader:
    data = PairedDigits(split_of(cfg))
    sampler = EpochSampler(len(data), seed=seed, rank=D.rank(), world_size=D.world_size())
    return DataLoader(data, batch_size=cfg.batch_size // D.world_size(), sampler=sampler, collate_fn=collate, drop_last=True,
                      generator=torch.Generator())


def warm_up(cfg: DemoConfig) -> None:
    """Two untimed MELTR steps: the first run in a process pays for lazy imports (the optimisers' compile
    hooks, torch.func) that would otherwise be timed against whichever method runs first."""
    tcfg = copy.deepcopy(cfg.trainer)
    tcfg.max_steps, tcfg.combiner.name = 2, "meltr"
    Trainer(DigitsCNN(cfg.width), tcfg, _loader(cfg, 0), device="cpu").fit()


def run_one(cfg: DemoConfig, setting: str, comb: CombinerConfig, seed: int, run_dir: Path, point: str = "") -> Run:
    """Trains one run, keeps best.pt by validation accuracy and evaluates the test set once on it."""
    split = split_of(cfg)
    tcfg = copy.deepcopy(cfg.trainer)
    tcfg.combiner, tcfg.seed = comb, seed
    tcfg.best_metric, tcfg.best_mode = "val_acc", "max"  # select on validation (after every epoch by default)
    if D.rank() == 0:
        shutil.rmtree(run_dir, ignore_errors=True)  # the trainer appends to metrics.jsonl: start the run's log afresh
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = DigitsCNN(cfg.width, harmful=SETTINGS[setting][1])
    loader = _loader(cfg, seed)

    def evaluate(m: nn.Module) -> dict[str, float]:
        assert isinstance(m, DigitsCNN)  # the Trainer evaluates the model it was given
        return {"val_acc": accuracy(m, split.val_x, split.val_y)}

    trainer = Trainer(
        model, tcfg, loader, run_dir=run_dir, device="cpu",
        run_config={"demo": to_dict(cfg), "setting": setting, "seed": seed, "trainer": to_dict(tcfg)},
        eval_fn=evaluate,
    )
    trainer.fit()
    best = load_checkpoint(run_dir / "best.pt")
    model.load_state_dict(best["model"])
    test = accuracy(model.eval(), split.test_x, split.test_y)
    return Run(point, best["best"]["value"], int(best["best"]["step"]), test, time.perf_counter() - start)


def selected(runs: list[Run]) -> Run:
    """The run with the best validation accuracy (the first on ties)."""
    return max(runs, key=lambda r: r.val)  # max keeps the first of equal keys


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} +- {std:.2f}"


def results_table(results: dict[str, list[list[Run]]], seeds: list[int]) -> str:
    """Markdown table; ``results[method][k]`` holds the runs of ``seeds[k]`` (the fixed grid: one per point).

    Accuracies are those of each seed's selected run, mean +- std over seeds; compute = runs per seed x
    mean wall seconds of every run of the method; the last column is that compute over ``sum``'s.
    """
    cost = {m: len(per_seed[0]) * statistics.fmean(r.seconds for runs in per_seed for r in runs) for m, per_seed in results.items()}
    lines = ["| method | runs | val accuracy (%) | test accuracy (%) | s per run | compute (s) | compute vs sum |",
             "|---|---|---|---|---|---|---|"]
    for method, per_seed in results.items():
        chosen = [selected(runs) for runs in per_seed]
        ratio = f"{cost[method] / cost['sum']:.1f}x" if "sum" in cost else "n/a"
        lines.append(
            f"| {method} | {len(per_seed[0])} | {_mean_std([100 * r.val for r in chosen])} | {_mean_std([100 * r.test for r in chosen])} "
            f"| {cost[method] / len(per_seed[0]):.1f} | {cost[method]:.1f} | {ratio} |"
        )
    if "fixed" in results:
        picks = "; ".join(f"seed {seed}: {selected(runs).point}" for seed, runs in zip(seeds, results["fixed"]))
        lines.append(f"\n`fixed`, the grid points selected on validation: {picks}")
    return "\n".join(lines)


def weights_figure(title: str, run_dirs: dict[str, list[Path]], path: Path) -> str:
    """Writes the task weights of the learned combiners against the step; returns a markdown line."""
    try:
        from meltr.plot import build_weights_over_steps

        fig = build_weights_over_steps({m: [read_run(d) for d in dirs] for m, dirs in run_dirs.items()}, title)
    except ImportError as err:
        return f"(no task-weights figure: {err})"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return f"![task weights, {title}]({path.parent.name}/{path.name})"


def run_setting(cfg: DemoConfig, setting: str, out: Path) -> str:
    """Every method and seed of one setting; returns its markdown section (table, selections, figure)."""
    title, harmful = SETTINGS[setting]
    names = DigitsCNN(cfg.width, harmful=harmful).loss_names
    results: dict[str, list[list[Run]]] = {}
    learned: dict[str, list[Path]] = {}
    for method in cfg.methods:
        for seed in cfg.seeds:
            seed_runs = []
            for point, comb in combiners(cfg, method, names):
                run_dir = run_dir_of(out, setting, method, point, seed)
                run = run_one(cfg, setting, comb, seed, run_dir, point)
                seed_runs.append(run)
                if comb.name in ("linear", "meltr"):
                    learned.setdefault(method, []).append(run_dir)
                log.info("%s %-11s %-26s seed %d: val %.1f%% (step %d), test %.2f%%, %.1fs", setting, method, point, seed,
                         100 * run.val, run.step, 100 * run.test, run.seconds)
            results.setdefault(method, []).append(seed_runs)
    figure = weights_figure(title, learned, out / setting / "task_weights.png") if learned and D.rank() == 0 else ""
    return f"## {title}\n\n{results_table(results, cfg.seeds)}\n\n{figure}".rstrip()


def run_demo(cfg: DemoConfig) -> str:
    """The whole demo; writes and returns results.md (on rank 0; other ranks return "")."""
    out = Path(cfg.out_dir)
    if D.rank() == 0:
        dump(cfg, out / "config.yaml")
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    warm_up(cfg)
    sections = [run_setting(cfg, setting, out) for setting in cfg.settings]
    if D.rank() != 0:
        return ""
    legend = "\n".join(f"- `{m}`: {METHODS[m]}" for m in cfg.methods)
    header = (
        f"# MELTR demo: digits, {cfg.labelled_per_class} labelled + {cfg.val_per_class} validation images per class, "
        f"{len(split_of(cfg).test_y)} test images, seeds {cfg.seeds}, {cfg.trainer.epochs} epochs, {D.world_size()} process(es)\n\n"
        f"Accuracy of the epoch selected on validation (test evaluated once, there), mean +- std over seeds; "
        f"compute = runs x mean wall seconds per run. `fixed` searches every auxiliary coefficient in {cfg.fixed_grid}.\n\n"
        f"{legend}\n"
    )
    footer = (f"\nWhole demo: {time.perf_counter() - began:.0f} s on {os.cpu_count()} CPUs ({cfg.threads} thread(s) per "
              f"process), 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after.\n")
    text = header + "\n" + "\n\n".join(sections) + "\n" + footer
    (out / "results.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/cpu_tiny.yaml")
    add_override_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    logging.getLogger("meltr.trainer").setLevel(logging.WARNING)  # one line per run instead of the progress lines
    D.init_from_env()
    cfg = load(args.config, DemoConfig, args.overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        text = run_demo(cfg)
    finally:
        torch.set_num_threads(threads)  # main() may run inside a longer process (the tests)
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
