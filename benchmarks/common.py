"""Timing helpers shared by the backbone benchmarks: interleaved medians and the meta-step cost table.

Every ratio a benchmark prints comes from timings taken in one process with the methods interleaved per
repetition, so slow drifts of the machine (thermal, other load) hit all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["META_METHODS", "sync", "median_ms", "bench_meta_step", "meta_table"]

# Training methods of the meta-step table: the combiner, and the AID-FP-Lite mode of MELTR's hypergradient.
META_METHODS: dict[str, dict[str, str | None]] = {
    "sum": {"combiner": "sum", "mode": None},
    "MELTR + AID-FP-Lite, official-style (`autograd`)": {"combiner": "meltr", "mode": "autograd"},
    "MELTR + AID-FP-Lite, ours (`jvp`)": {"combiner": "meltr", "mode": "jvp"},
    "MELTR + AID-FP-Lite, ours (`fd`)": {"combiner": "meltr", "mode": "fd"},
}
OFFICIAL = "MELTR + AID-FP-Lite, official-style (`autograd`)"


def sync(device: torch.device) -> None:
    """Waits for queued CUDA work, so wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fns: Mapping[str, Callable[[], object]], reps: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median wall time (ms) of each callable, the callables alternating within every repetition."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_meta_step(make_model: Callable[[], nn.Module], batches: Sequence[Mapping[str, Any]], *, preset: str,
                    optim: Any, every: int, gamma: float, device: torch.device, windows: int,
                    methods: Mapping[str, Mapping[str, str | None]] = META_METHODS) -> dict[str, float]:
    """Training wall time per step (ms) of every method, the meta step every ``every`` steps.

    One :class:`meltr.Trainer` per method, each on a model from ``make_model()`` (call it under a fixed seed so
    they start equal) and the same batches. Time is taken per window of ``every`` steps (exactly one meta step
    each, the first window untimed because it builds the optimiser states), windows of the methods alternate,
    and the median window is divided by ``every``. ``batches`` must hold ``(windows + 1) * every`` batches.
    """
    from meltr import CombinerConfig, HypergradConfig, MetaConfig, Trainer, TrainerConfig

    if len(batches) < (windows + 1) * every:
        raise ValueError(f"need {(windows + 1) * every} batches for {windows} timed windows, got {len(batches)}")
    trainers = {}
    for name, spec in methods.items():
        torch.manual_seed(0)
        tcfg = TrainerConfig(
            combiner=CombinerConfig(name=spec["combiner"], preset=preset),  # type: ignore[arg-type]
            optim=optim,
            meta=MetaConfig(every=every, gamma=gamma, hypergrad=HypergradConfig(name="aid_fp_lite", mode=spec["mode"] or "jvp")),  # type: ignore[arg-type]
            max_steps=len(batches), tensorboard=False, log_every=10**9)
        trainers[name] = Trainer(make_model(), tcfg, list(batches), device=device)

    def window(trainer: Any, w: int) -> float:
        sync(device)
        start = time.perf_counter()
        for b in batches[w * every:(w + 1) * every]:
            trainer.train_step([b])
        sync(device)
        return 1000 * (time.perf_counter() - start) / every

    times: dict[str, list[float]] = {name: [] for name in trainers}
    for w in range(1 + windows):
        for name, trainer in trainers.items():
            t = window(trainer, w)
            if w >= 1:
                times[name].append(t)
    return {name: statistics.median(t) for name, t in times.items()}


def meta_table(ms: Mapping[str, float], title: str) -> list[str]:
    """Markdown rows of :func:`bench_meta_step`'s result: ms/step, time vs sum, and each MELTR variant's
    overhead over sum as a fraction of the official-style overhead."""
    base, official = ms["sum"], ms.get(OFFICIAL)
    lines = [title + "\n", "| method | ms / step | time vs sum | overhead vs official-style overhead |", "|---|---|---|---|"]
    for name, value in ms.items():
        over = "" if name == "sum" or official is None else f"{(value - base) / (official - base):.2f}"
        lines.append(f"| {name} | {value:.1f} | {value / base:.2f}x | {over} |")
    return lines


def backbone_main(argv: list[str] | None, *, doc: str, name: str, sizes: Sequence[str],
                  input_tables: Callable[[], object], input_title: str,
                  train_table: Callable[[str, torch.device, int], list[str]], windows: int) -> int:
    """Command line of a backbone benchmark: the input-pipeline tables (``input_tables()``, skipped with
    ``--skip-inputs``), then the train-step table ``train_table(size, device, windows)``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(sizes), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--windows", type=int, default=windows, help="timed windows of K steps")
    parser.add_argument("--skip-inputs", action="store_true", help="only the train-step table")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    print(f"{name} benchmark, {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    if not args.skip_inputs:
        print(f"## 1. {input_title}\n", flush=True)
        input_tables()
    print("\n".join(train_table(args.size, torch.device(args.device), args.windows)) + "\n", flush=True)
    return 0
