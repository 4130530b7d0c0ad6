"""One-command GPU check of MELTR's train-step cost, memory and hypergradient agreement at base size.

    python -m benchmarks.gpu_check [--device cuda|cpu] [--size base|tiny] [--budget SECONDS]

Base-size UniVL, VIOLET and All-in-one (the ``base`` presets of :mod:`benchmarks.univl`, :mod:`benchmarks.violet`
and :mod:`benchmarks.allinone`) on random inputs of the right shapes: no datasets, no pretrained weights, no
network. Needs only torch, numpy, pyyaml and einops (run from the repository root). Three sections, one
markdown table each, after the device name:

1. **Train step**: ms per step (meta step every official K: UniVL 3, VIOLET 3, All-in-one 5) of every method of
   :data:`benchmarks.common.META_METHODS` (``sum``, official-style ``lite_official``, the fast modes), in float32
   and under bf16 autocast, with fused (``sdpa``) and explicit attention where the configs have an ``attention``
   field; per-step peak CUDA memory above what is resident (weights, optimiser states) and autograd's
   saved-tensor peak (:mod:`benchmarks.memory`).
2. **Goals**: the issue-13 goal ratios of section 1, met / NOT met.
3. **Hypergradient agreement**: each fast mode's hypergradient against the exact AID-FP-Lite one (``autograd``)
   on the same batch and weights (dropout off, same seed): the worst tensor's max abs error relative to that
   tensor's largest entry, and the cosine of the whole hypergradient; float32 and bf16.

Time guard: ``--budget`` (default 450 s on CUDA, under the 8 minutes asked for; 45 s on CPU): section 3 runs
first with 20% of it, section 1 gets the rest but 8%; each configuration gets an equal share of what is left,
and its number of timed windows is chosen from its measured first (untimed) window. A configuration that would
start after its section's deadline is reported as skipped; progress goes to stderr.
bf16 rows autocast on the device (CPU included). ``--size tiny``
is a smoke run (one window per method, no warm-up window): its numbers check the plumbing, not the goals.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.common import (META_METHODS, RESULT_COLUMNS, TrainSetup, bench_methods, goal_lines,
                               memory_label, meta_config, method_role, result_cells, sync)

BACKBONES = {"UniVL": "benchmarks.univl", "VIOLET": "benchmarks.violet", "All-in-one": "benchmarks.allinone"}
PRECISIONS = {"fp32": "off", "bf16": "bf16"}  # TrainerConfig.amp
SHARES = {"agree": 0.2, "slack": 0.08}  # of the budget: section 3, and start-up/printing; section 1 gets the rest
MAX_WINDOWS = {"base": 5, "tiny": 1}


class Deadline:
    """Seconds left before a fixed point in time."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _setup(backbone: str, size: str, attention: str | None, device: torch.device) -> TrainSetup:
    """The backbone benchmark's train setup, its models built directly on ``device`` (fast at base size)."""
    setup = importlib.import_module(BACKBONES[backbone]).train_setup(size, attention)
    build = setup.make_model

    def make_model() -> nn.Module:
        with torch.device(device):
            return build()

    return dataclasses.replace(setup, make_model=make_model)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _error(exc: BaseException) -> str:
    """One table cell naming an exception (out of memory, an op without a double-backward/JVP rule, ...)."""
    first = (str(exc).strip().splitlines() or [""])[0].replace("|", "/")[:100]
    return f"error: {type(exc).__name__}: {first}"


# ---------------------------------------------------------------------------------------- 1-2. train step


def train_section(size: str, device: torch.device, budget: Deadline, methods: Mapping[str, Mapping[str, Any]],
                  attentions: Sequence[str] = ("sdpa", "explicit")) -> tuple[list[str], list[str]]:
    """Section 1's table and section 2's goal table."""
    configs = [(b, p, a) for b in BACKBONES for p in PRECISIONS for a in attentions]
    header = ["backbone", "precision", "attention"] + [c.format(memory=memory_label(device)) for c in RESULT_COLUMNS]
    blank = " |" * (len(RESULT_COLUMNS) - 2)  # cells after "method" and the message
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    goals = ["| backbone | precision | attention | goal line |", "|---|---|---|---|"]
    for i, (backbone, precision, attention) in enumerate(configs):
        att = attention
        head = f"| {backbone} | {precision} | {att} |"
        share = budget.left() / (len(configs) - i)
        if budget.left() <= 0:
            rows.append(f"{head} all | skipped: time budget |{blank}")
            continue
        print(f"gpu_check: train step {backbone} {precision} {att} ({budget.left():.0f} s left)", file=sys.stderr, flush=True)
        setup = _setup(backbone, size, attention, device)
        g = torch.Generator().manual_seed(0)
        batches = [setup.make_batch(g) for _ in range(2 * setup.every)]
        try:
            res = bench_methods(setup, batches, device, windows=MAX_WINDOWS[size], methods=methods,
                                amp=PRECISIONS[precision], budget_s=share, quick=size == "tiny")
        except Exception as exc:  # noqa: BLE001 - out of memory or an unsupported op: report it, go on
            rows.append(f"{head} all | {_error(exc)} |{blank}")
            res = None
        if res is None:
            _free(device)  # after the except block: its traceback held the trainers
            continue
        rows += [f"{head} " + " | ".join(cells) + " |" for cells in result_cells(res, methods)]
        goals += [f"{head} {line[2:]} |" for line in goal_lines(res, every=setup.every, methods=methods)[1:]]
        del res
        _free(device)
    return rows, goals


# ---------------------------------------------------------------------------------------- 3. agreement


def _no_dropout(module: nn.Module) -> None:
    """Every dropout and drop-path probability to 0 (train mode stays: the training losses are compared)."""
    from backbones.common.vit import DropPath  # the one drop-path module of all three backbones

    for m in module.modules():
        if isinstance(m, (nn.modules.dropout._DropoutNd, DropPath)):
            m.p = 0.0


class _Recorded:
    """Wraps a hypergradient scheme and keeps what it returned (before clipping and the meta update)."""

    def __init__(self, scheme: Callable[..., tuple[Tensor, ...]]) -> None:
        self.scheme = scheme
        self.grads: tuple[Tensor, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        grads = self.scheme(*args, **kwargs)
        self.grads = tuple(g.detach().clone() for g in grads)  # the meta step clips p.grad, which may alias these
        return grads


def hypergradient(model: nn.Module, batch: Mapping[str, Any], setup: TrainSetup, spec: Mapping[str, Any],
                  amp_dtype: torch.dtype | None, device: torch.device) -> tuple[tuple[Tensor, ...], float]:
    """The hypergradient of one meta step of ``spec`` on ``batch`` (both meta batches are ``batch``: the buffer
    is empty; ``meta.source: current`` takes it from ``batch``'s own forward), and its wall time (ms, without
    that forward). The combiner starts from seed 0 and the RNG from seed 1 every time."""
    from meltr import CombinerConfig, MetaLearner

    torch.manual_seed(0)
    learner = MetaLearner.for_model(model, CombinerConfig(name=spec.get("combiner", "meltr"), preset=setup.preset),
                                    meta_config(spec, setup.every, setup.gamma), amp_dtype=amp_dtype)
    _no_dropout(learner.combiner)
    recorded = _Recorded(learner.hypergrad)
    learner.hypergrad = recorded
    torch.manual_seed(1)
    if learner.cfg.source == "current":
        # The step's own forward is the training step's (not timed); the meta work happens in combine().
        from meltr.hypergrad import differentiable_attention

        exact = learner.cfg.hypergrad.mode == "autograd"  # differentiates the step's own graph twice
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None), \
                (differentiable_attention() if exact else contextlib.nullcontext()):
            out = model(batch)
        sync(device)
        t0 = time.perf_counter()
        learner.combine(out, model, batch=batch)
        sync(device)
        assert learner._pending is not None
        return tuple(g.detach().float() for g in learner._pending[1]), 1000 * (time.perf_counter() - t0)
    sync(device)
    t0 = time.perf_counter()
    learner.step(model, batch)
    sync(device)
    return tuple(g.detach().float() for g in recorded.grads), 1000 * (time.perf_counter() - t0)


def agreement(approx: tuple[Tensor, ...], exact: tuple[Tensor, ...]) -> tuple[float, float]:
    """(worst tensor's max |approx - exact| / max |exact|, cosine of the concatenated hypergradients)."""
    rel = 0.0
    for a, e in zip(approx, exact):
        scale = float(e.abs().max()) if e.numel() else 0.0
        err = float((a - e).abs().max()) if e.numel() else 0.0
        rel = max(rel, err / scale if scale > 0 else (0.0 if err == 0 else math.inf))
    fa, fe = torch.cat([a.flatten() for a in approx]).double(), torch.cat([e.flatten() for e in exact]).double()
    denom = float(fa.norm() * fe.norm())
    return rel, (float(fa @ fe) / denom if denom > 0 else math.nan)


def agree_section(size: str, device: torch.device, budget: Deadline, methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Section 3's table."""
    roles = {n: method_role(n, s) for n, s in methods.items()}
    official = next(n for n, r in roles.items() if r == "official")
    fast = [n for n, r in roles.items() if r == "fast"]
    rows = ["| backbone | precision | method vs `autograd` (same meta source) | max abs err / max entry (worst tensor) | cosine | "
            "‖exact‖ | ms exact | ms method |", "|---|---|---|---|---|---|---|---|"]
    for backbone in BACKBONES:
        for precision in PRECISIONS:
            head = f"| {backbone} | {precision} |"
            if budget.left() <= 0:
                rows.append(f"{head} all | skipped: time budget |  |  |  |  |")
                continue
            print(f"gpu_check: agreement {backbone} {precision} ({budget.left():.0f} s left)", file=sys.stderr, flush=True)
            setup = _setup(backbone, size, None, device)
            torch.manual_seed(0)
            model = batch = None
            try:
                model = setup.make_model()
                _no_dropout(model)
                model.train()
                from meltr.meta_learner import to_device

                batch = to_device(setup.make_batch(torch.Generator().manual_seed(0)), device)
                amp = torch.bfloat16 if precision == "bf16" else None
                exacts: dict[Any, tuple[tuple[Tensor, ...], float]] = {}
                for name in fast:
                    # The reference is the exact step of the same meta source: with source current both come from
                    # one forward (a model drawing masks in its forward, as VIOLET does, draws them once).
                    source = methods[name].get("meta", {}).get("source")
                    if source not in exacts:
                        ref = dict(methods[official])
                        if source is not None:
                            ref["meta"] = {**ref.get("meta", {}), "source": source}
                        exacts[source] = hypergradient(model, batch, setup, ref, amp, device)
                    exact, ms_exact = exacts[source]
                    approx, ms = hypergradient(model, batch, setup, methods[name], amp, device)
                    rel, cos = agreement(approx, exact)
                    norm = float(torch.cat([e.flatten() for e in exact]).norm())
                    rows.append(f"{head} {name} | {rel:.2e} | {cos:.6f} | {norm:.3e} | {ms_exact:.1f} | {ms:.1f} |")
            except Exception as exc:  # noqa: BLE001 - out of memory or an unsupported op: report it, go on
                rows.append(f"{head} all | {_error(exc)} |  |  |  |  |")
            model = batch = None
            _free(device)
    return rows


# ---------------------------------------------------------------------------------------- command line


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None, methods: Mapping[str, Mapping[str, Any]] = META_METHODS) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--size", choices=("base", "tiny"), default="base")
    parser.add_argument("--attention", choices=("both", "sdpa", "explicit"), default="both",
                        help="attention of the train-step table: fused sdpa, explicit, or both side by side")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole check (default 450 on CUDA, 45 on CPU)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available (use --device cpu --size tiny for a smoke run)")
    device = torch.device(args.device)
    total = args.budget if args.budget is not None else (450.0 if device.type == "cuda" else 45.0)
    start = time.perf_counter()
    print(f"# MELTR GPU check: {args.size} size on {device_name(device)}\n\ntorch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, budget {total:.0f} s\n", flush=True)
    # Section 3 first: it is cheap and the most important, so a slow section 1 cannot starve it; section 1
    # then gets what is left of the budget (it may overrun its deadline by at most one round of windows).
    agree_rows = agree_section(args.size, device, Deadline(SHARES["agree"] * total), methods)
    spent = time.perf_counter() - start
    train_rows, goal_rows = train_section(args.size, device, Deadline((1 - SHARES["slack"]) * total - spent), methods,
                                         ("sdpa", "explicit") if args.attention == "both" else (args.attention,))
    print("## 1. Train step (median ms per step, meta step every K; memory per step above resident)\n")
    print("\n".join(train_rows) + "\n", flush=True)
    print("## 2. Goals (issue 13: (a) overhead <= 1/3 of official-style, (b) step <= 1.35 x sum at K=3, "
          "(c) memory <= 1.05 x sum)\n")
    print("\n".join(goal_rows) + "\n", flush=True)
    print("## 3. Hypergradient agreement with the exact AID-FP-Lite (`autograd`), same batch and weights\n")
    print("\n".join(agree_rows) + "\n")
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
