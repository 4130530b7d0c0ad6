"""Shared by the benchmarks: interleaved medians, the method table, the train-step cost table and its goal lines.

Every ratio a benchmark prints comes from timings taken in one process with the methods interleaved per
repetition, so slow drifts of the machine (thermal, other load) hit all of them alike.

**Methods** are data: :data:`META_METHODS` maps a name to overrides of the configs, so one line adds one::

    "lite_fd": {"hypergrad": {"mode": "fd"}},                  # HypergradConfig fields
    "sum":     {"combiner": "sum"},                            # CombinerConfig.name (default "meltr")
    "x":       {"hypergrad": {...}, "meta": {"share_batch": True}},   # MetaConfig fields too

A method's role in the goal lines follows from its configs (:func:`method_role`): ``baseline`` (the ``sum``
combiner), ``official`` (AID-FP-Lite with ``mode="autograd"``), ``fast`` (AID-FP-Lite in any other mode),
``other`` (the comparison schemes); an explicit ``"role"`` key wins.

**Goals** (issue 13), printed met / not met by :func:`goal_lines`:
(a) each fast mode's overhead over ``sum`` is at most 1/3 of the official-style overhead;
(b) the whole MELTR step time over ``sum``'s is at most 1.35 at K=3;
(c) the saved-tensor peak and the process peak of MELTR over ``sum``'s are at most 1.05.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from benchmarks.memory import MiB, ProcessPeak, SavedTensorMeter

if TYPE_CHECKING:
    from backbones.common.attention import AttentionImpl

__all__ = ["META_METHODS", "GOALS", "TrainSetup", "MethodResult", "sync", "median_ms", "method_role", "trainer_config",
           "meta_config", "bench_methods", "result_cells", "results_table", "goal_lines", "train_table", "backbone_main"]

# name -> overrides: "combiner" (CombinerConfig.name), "hypergrad" / "meta" (HypergradConfig / MetaConfig fields).
META_METHODS: dict[str, dict[str, Any]] = {
    "sum": {"combiner": "sum"},
    "lite_official": {"hypergrad": {"name": "aid_fp_lite", "mode": "autograd"}},
    "lite_jvp": {"hypergrad": {"name": "aid_fp_lite", "mode": "jvp"}},
    "lite_fd": {"hypergrad": {"name": "aid_fp_lite", "mode": "fd"}},
    "lite_vjp": {"hypergrad": {"name": "aid_fp_lite", "mode": "vjp"}},
    "current_vjp": {"hypergrad": {"name": "aid_fp_lite", "mode": "vjp"}, "meta": {"source": "current"}},
    "current_jvp": {"hypergrad": {"name": "aid_fp_lite", "mode": "jvp"}, "meta": {"source": "current"}},
    "current_fd": {"hypergrad": {"name": "aid_fp_lite", "mode": "fd"}, "meta": {"source": "current"}},
}
GOALS = {"overhead_vs_official": 1 / 3, "step_vs_sum": 1.35, "step_vs_sum_at_k": 3, "memory_vs_sum": 1.05}
_SPEC_KEYS = {"combiner", "hypergrad", "meta", "role"}
K = TypeVar("K", bound=Hashable)  # median_ms keys: method names, worker counts, ...


def sync(device: torch.device) -> None:
    """Waits for queued CUDA work, so wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fns: Mapping[K, Callable[[], object]], reps: int, warmup: int, device: torch.device) -> dict[K, float]:
    """Median wall time (ms) of each callable, the callables alternating within every repetition."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[K, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------------------------------- methods


def _check_spec(name: str, spec: Mapping[str, Any]) -> None:
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"method {name!r}: unknown keys {sorted(unknown)}; allowed {sorted(_SPEC_KEYS)}")


def meta_config(spec: Mapping[str, Any], every: int, gamma: float) -> Any:
    from meltr import HypergradConfig, MetaConfig

    hypergrad = HypergradConfig(**spec.get("hypergrad", {}))  # an unknown field raises TypeError naming it
    return MetaConfig(**{"every": every, "gamma": gamma, **spec.get("meta", {}), "hypergrad": hypergrad})


def method_role(name: str, spec: Mapping[str, Any]) -> str:
    """``baseline``, ``official``, ``fast`` or ``other`` (see the module docstring)."""
    _check_spec(name, spec)
    if "role" in spec:
        return str(spec["role"])
    if spec.get("combiner", "meltr") == "sum":
        return "baseline"
    hg = meta_config(spec, 1, 0.0).hypergrad
    if hg.name != "aid_fp_lite":
        return "other"
    return "official" if hg.mode == "autograd" else "fast"


def trainer_config(spec: Mapping[str, Any], *, preset: str, optim: Any, every: int, gamma: float, amp: str = "off") -> Any:
    """The :class:`meltr.TrainerConfig` of one method (``max_steps`` large: benchmarks stop on their own)."""
    from meltr import CombinerConfig, TrainerConfig

    return TrainerConfig(combiner=CombinerConfig(name=spec.get("combiner", "meltr"), preset=preset), optim=optim,
                         meta=meta_config(spec, every, gamma), max_steps=10 ** 6, amp=amp,  # type: ignore[arg-type]
                         tensorboard=False, log_every=10 ** 9)


# ---------------------------------------------------------------------------------------- the train-step bench


@dataclass
class TrainSetup:
    """What a train-step benchmark needs from a backbone benchmark (``<backbone>.train_setup(size)``)."""

    name: str  # e.g. "UniVL"
    describe: str  # sizes for the table title
    make_model: Callable[[], nn.Module]  # a fresh model (called under a fixed seed, so all methods start equal)
    make_batch: Callable[[torch.Generator], Mapping[str, Any]]  # one random batch
    preset: str  # loss-transformer preset
    optim: Any  # meltr.OptimConfig of the backbone (paper / fork settings)
    every: int  # K: the official meta-step interval
    gamma: float = 0.1  # regulariser strength
    config: object = None  # the model config (its `attention` fields tell whether attention is switchable)


@dataclass
class MethodResult:
    """One method's figures: median ms per training step (meta step every K included), the saved-tensor peak
    and the process peak (bytes; ``None`` where unmeasurable), and the timed windows behind the median."""

    ms: float
    saved_bytes: float
    peak_bytes: float | None
    windows: int


def bench_methods(setup: TrainSetup, batches: Sequence[Mapping[str, Any]], device: torch.device, *, windows: int,
                  methods: Mapping[str, Mapping[str, Any]] = META_METHODS, amp: str = "off",
                  budget_s: float | None = None, quick: bool = False) -> dict[str, MethodResult]:
    """Every method trained by its own :class:`meltr.Trainer` on the same batches, windows interleaved.

    A window is K steps (exactly one meta step, at its first step). Window 0 is untimed (optimiser states,
    kernel autotuning); then up to ``windows`` timed windows (``budget_s``: fewer, so that the estimated time,
    from window 0, fits), each timed and its process peak taken; then one window under a
    :class:`~benchmarks.memory.SavedTensorMeter` (its hooks cost Python time, so it is not timed). ``batches``
    are cycled. ``quick`` (smoke runs, numbers not comparable): no window 0, and the meter rides on the timed
    windows.
    """
    from meltr import Trainer

    _quiet_trainer_logs()
    start_all = time.perf_counter()
    trainers = {}
    for name, spec in methods.items():
        torch.manual_seed(0)
        cfg = trainer_config(spec, preset=setup.preset, optim=setup.optim, every=setup.every, gamma=setup.gamma, amp=amp)
        trainers[name] = Trainer(setup.make_model(), cfg, list(batches), device=device)
    k, step = setup.every, {name: 0 for name in trainers}

    def window(name: str) -> float:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(k):
            trainers[name].train_step([batches[step[name] % len(batches)]])
            step[name] += 1
        sync(device)
        return time.perf_counter() - t0

    meters = {name: SavedTensorMeter(exclude=list(t.model.parameters()) + list(t.combiner.parameters()))
              for name, t in trainers.items()}
    if not quick:
        round_s = sum(window(name) for name in trainers)  # window 0
        if budget_s is not None:
            left = budget_s - (time.perf_counter() - start_all) - round_s  # the memory window costs about a round too
            windows = max(1, min(windows, int(left // max(round_s, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in trainers}
    peaks: dict[str, list[float | None]] = {name: [] for name in trainers}
    for _ in range(windows):
        for name in trainers:
            with ProcessPeak(device) as peak, (meters[name] if quick else contextlib.nullcontext()):
                times[name].append(1000 * window(name) / k)
            peaks[name].append(peak.peak_bytes)
    out = {}
    for name in trainers:
        if not quick:
            with meters[name]:
                window(name)
        measured = [p for p in peaks[name] if p is not None]
        out[name] = MethodResult(statistics.median(times[name]), float(meters[name].peak_bytes),
                                 max(measured) if measured else None, windows)
    return out


def _quiet_trainer_logs() -> None:
    """Keeps the trainers' progress lines out of the tables: with no logging configured, a NullHandler on
    ``meltr`` stops Trainer from installing its INFO handler (warnings still reach stderr)."""
    import logging

    meltr_log = logging.getLogger("meltr")
    if not logging.getLogger().handlers and not meltr_log.handlers:
        meltr_log.addHandler(logging.NullHandler())


def _roles(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    return {name: method_role(name, spec) for name, spec in methods.items()}


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.3f}"


RESULT_COLUMNS = ("method", "ms / step", "time vs sum", "overhead / official-style overhead", "saved-tensor peak MiB",
                  "vs sum", "{memory}", "vs sum")


def result_cells(results: Mapping[str, MethodResult],
                 methods: Mapping[str, Mapping[str, Any]] = META_METHODS) -> list[list[str]]:
    """One row of cells (:data:`RESULT_COLUMNS`) per method: ms/step, vs sum, overhead as a fraction of the
    official-style overhead, saved-tensor peak and process peak (MiB) with their ratios to ``sum``."""
    roles = _roles({n: methods[n] for n in results})
    base = next((results[n] for n, r in roles.items() if r == "baseline"), None)
    official = next((results[n] for n, r in roles.items() if r == "official"), None)
    rows = []
    for name, r in results.items():
        over = ""
        if base is not None and official is not None and roles[name] != "baseline" and official.ms != base.ms:
            over = f"{(r.ms - base.ms) / (official.ms - base.ms):.2f}"
        peak = "n/a" if r.peak_bytes is None else f"{r.peak_bytes / MiB:.1f}"
        rows.append([name, f"{r.ms:.1f}", _ratio(r.ms, base.ms if base else None), over, f"{r.saved_bytes / MiB:.1f}",
                     _ratio(r.saved_bytes, base.saved_bytes if base else None), peak,
                     _ratio(r.peak_bytes, base.peak_bytes if base else None)])
    return rows


def results_table(results: Mapping[str, MethodResult], title: str, *, memory_label: str,
                  methods: Mapping[str, Mapping[str, Any]] = META_METHODS) -> list[str]:
    """Markdown table of :func:`result_cells` under ``title``."""
    header = [c.format(memory=memory_label) for c in RESULT_COLUMNS]
    return [title + "\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cells) + " |" for cells in result_cells(results, methods)]


def _verdict(value: float | None, goal: float, applies: bool = True) -> str:
    if value is None:
        return "not measured"
    if not applies:
        return "goal stated at K=3: informational"
    return "met" if value <= goal else "NOT met"


def goal_lines(results: Mapping[str, MethodResult], *, every: int,
               methods: Mapping[str, Mapping[str, Any]] = META_METHODS) -> list[str]:
    """The issue's goal lines for every ``fast`` method, each ending in met / NOT met (or why not measured)."""
    roles = _roles({n: methods[n] for n in results})
    base_name = next((n for n, r in roles.items() if r == "baseline"), None)
    off_name = next((n for n, r in roles.items() if r == "official"), None)
    fast = [n for n, r in roles.items() if r == "fast"]
    if base_name is None or not fast:
        return ["goals: need a `sum` baseline and at least one fast mode in the run"]
    base = results[base_name]
    lines = ["Goals (issue 13):"]
    g_over, g_step, g_mem = GOALS["overhead_vs_official"], GOALS["step_vs_sum"], GOALS["memory_vs_sum"]
    for name in fast:
        r = results[name]
        over = r.ms - base.ms
        if off_name is None:
            lines.append(f"- (a) {name}: overhead / official-style overhead: not measured (no official-style method in the run)")
        else:
            off = results[off_name].ms - base.ms
            if off <= 0:
                lines.append(f"- (a) {name}: overhead {over:.1f} ms; official-style overhead {off:.1f} ms is not positive: "
                             f"not measurable in this run (noise)")
            else:
                frac = over / off
                lines.append(f"- (a) {name}: overhead over sum / official-style overhead = {over:.1f} / {off:.1f} ms = "
                             f"{frac:.2f} (goal <= {g_over:.2f}): {_verdict(frac, g_over)}")
        step = r.ms / base.ms
        lines.append(f"- (b) {name}: step time / sum step time at K={every} = {step:.3f} (goal <= {g_step} at "
                     f"K={GOALS['step_vs_sum_at_k']}): {_verdict(step, g_step, every == GOALS['step_vs_sum_at_k'])}")
        saved = r.saved_bytes / base.saved_bytes if base.saved_bytes else None
        peak = r.peak_bytes / base.peak_bytes if r.peak_bytes is not None and base.peak_bytes else None
        lines.append(f"- (c) {name}: saved-tensor peak / sum = {_ratio(r.saved_bytes, base.saved_bytes)} (goal <= {g_mem}): "
                     f"{_verdict(saved, g_mem)}; process peak / sum = {_ratio(r.peak_bytes, base.peak_bytes)} "
                     f"(goal <= {g_mem}): {_verdict(peak, g_mem)}")
    return lines


def memory_label(device: torch.device) -> str:
    return "peak CUDA MiB" if device.type == "cuda" else "peak RSS growth MiB"


def train_table(setup: TrainSetup, device: torch.device, windows: int, *, title: str, amp: str = "off",
                methods: Mapping[str, Mapping[str, Any]] = META_METHODS, batches: int | None = None,
                budget_s: float | None = None) -> list[str]:
    """Markdown table plus goal lines of :func:`bench_methods` for one backbone setup (``batches``: how many
    distinct random batches, default one per step)."""
    g = torch.Generator().manual_seed(0)
    data = [setup.make_batch(g) for _ in range(batches or (2 + windows) * setup.every)]
    results = bench_methods(setup, data, device, windows=windows, methods=methods, amp=amp, budget_s=budget_s)
    n = min(r.windows for r in results.values())
    lines = results_table(results, f"{title}, K={setup.every}, median of {n} windows of K steps", methods=methods,
                          memory_label=memory_label(device))
    return lines + [""] + goal_lines(results, every=setup.every, methods=methods)


def backbone_main(argv: list[str] | None, *, doc: str, name: str, sizes: Sequence[str],
                  input_tables: Callable[[], object], input_title: str,
                  train_setup: Callable[[str, AttentionImpl | None], TrainSetup], windows: int) -> int:
    """Command line of a backbone benchmark: the input-pipeline tables (``input_tables()``, skipped with
    ``--skip-inputs``), then the train-step table of ``train_setup(size, attention)``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(sizes), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--windows", type=int, default=windows, help="timed windows of K steps")
    parser.add_argument("--attention", choices=("sdpa", "explicit"), default=None,
                        help="attention implementation (configs with an `attention` field); default: the config's")
    parser.add_argument("--skip-inputs", action="store_true", help="only the train-step table")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    print(f"{name} benchmark, {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    if not args.skip_inputs:
        print(f"## 1. {input_title}\n", flush=True)
        input_tables()
    setup = train_setup(args.size, args.attention)
    title = f"### 2. Train-step cost: {setup.name} {args.size} ({setup.describe})"
    print("\n".join(train_table(setup, torch.device(args.device), args.windows, title=title)) + "\n", flush=True)
    return 0
