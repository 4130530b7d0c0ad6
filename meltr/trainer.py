"""Fine-tune any multi-loss model with MELTR (or a baseline combiner) and bi-level meta steps.

One training step (Algorithm 1 as the official code runs it)::

    l = model(batch)                         # dict of T named 0-dim losses
    L = combiner(l)                          # MELTR, sum, fixed, single or linear
    backward(L); clip; optimizer.step()      # backbone update (the combiner is not in this optimiser)
    every K steps, if the combiner is learnable:
        b_v, b_t = meta batches              # official: two draws from the last 10 training batches
        L_P = l_primary(w; b_v) + gamma * |sum_t l_t(w; b_t) - combiner(l(w; b_t))|
        phi.grad = hypergradient(L_P, combiner(l(w; b_t)))   # AID-FP-Lite by default
        clip; meta_optimizer.step()
    append batch to the buffer

Under DDP the loss vector is averaged over ranks before the combiner (value of the global mean,
gradient of the local losses), so a nonlinear combiner sees the losses of the global batch, and the
meta step averages its primary gradient and directional derivatives explicitly (see
:mod:`meltr.distributed`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from meltr import distributed as D
from meltr.baselines import CombinerConfig, build_combiner
from meltr.checkpoint import FORMAT_VERSION, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from meltr.config import to_dict
from meltr.hypergrad import ITD, CombinedObjective, HypergradConfig, SumObjective, build_hypergrad
from meltr.interface import check_losses, stack_losses
from meltr.log import RunLogger, peak_memory, reset_peak_memory
from meltr.optim import OptimConfig, build_optimizer, build_scheduler

__all__ = ["MetaConfig", "TrainerConfig", "Trainer", "CombinerTrainingError"]

log = logging.getLogger(__name__)


@dataclass
class MetaConfig:
    """The bi-level meta step that trains a learnable combiner."""

    every: int = 3  # K: update the combiner every K backbone steps (official: 3 UniVL/VIOLET, 5 All-in-one)
    gamma: float = 0.1  # regulariser strength (paper eq. 6; official 0.1, UniVL off unless --reg 1)
    reg: Literal["abs", "squared"] = "abs"  # official |sum l - MELTR(l)|, or its square
    reg_direct: bool = False  # also differentiate the regulariser w.r.t. phi directly (official: no)
    source: Literal["buffer", "loader"] = "buffer"  # primary batch: last-N training batches, or meta_loader
    buffer_size: int = 10  # how many recent training batches the buffer keeps (official: 10)
    buffer_evict: Literal["fifo", "weighted"] = "fifo"  # UniVL drops the oldest; VIOLET/All-in-one weighted
    share_batch: bool = False  # one draw for both meta batches (the official draws twice, independently)
    hypergrad: HypergradConfig = field(default_factory=HypergradConfig)  # scheme and its options
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(name="adam", lr=1e-4, weight_decay=3e-5, schedule="constant", clip_grad_norm=10.0)
    )  # meta optimiser (official: Adam, lr 1e-4, L2 3e-5, clip 50/12/1 per backbone)

    def validate(self) -> None:
        if self.every < 1 or self.buffer_size < 1:
            raise ValueError("every and buffer_size must be >= 1")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")


@dataclass
class TrainerConfig:
    """Everything the trainer needs besides the model and the data."""

    combiner: CombinerConfig = field(default_factory=CombinerConfig)  # meltr, single, sum, fixed, linear
    primary: str | None = None  # primary (target) loss name; None = model.target_loss
    epochs: int = 1  # training epochs
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs when reached)
    grad_accum: int = 1  # micro-batches per optimiser step
    amp: Literal["off", "bf16", "fp16"] = "off"  # autocast on CUDA (ignored on CPU)
    optim: OptimConfig = field(default_factory=OptimConfig)  # backbone optimiser
    meta: MetaConfig = field(default_factory=MetaConfig)  # meta step
    log_every: int = 10  # steps between train records (losses, combined loss, task weights)
    eval_every: int | None = None  # steps between evaluations; None = once per epoch
    best_metric: str | None = None  # metric that selects best.pt
    best_mode: Literal["max", "min"] = "max"  # whether larger or smaller is better
    checkpoint_every: int | None = None  # steps between last.pt saves (always at epoch end)
    seed: int = 0  # seed of the meta-batch draws (identical on all ranks)
    tensorboard: bool = True  # write TensorBoard scalars beside metrics.jsonl

    def validate(self) -> None:
        if self.epochs < 1 or self.grad_accum < 1 or self.log_every < 1:
            raise ValueError("epochs, grad_accum and log_every must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 or null")


class CombinerTrainingError(RuntimeError):
    """The combiner cannot train the backbone (e.g. its output ignores the losses)."""


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


class Trainer:
    """Bi-level fine-tuning of a :class:`meltr.interface.MultiLossModel`.

    Args:
        model: Any ``nn.Module`` with ``loss_names``, ``target_loss`` and ``forward(batch) -> dict``.
        cfg: Trainer configuration.
        train_loader: Iterable of batches (a DataLoader; use :class:`meltr.sampler.EpochSampler` and a
            ``generator`` for exact mid-epoch resume).
        meta_loader: Held-out batches for the primary side of the meta step (``meta.source="loader"``).
        eval_fn: ``eval_fn(model) -> {metric: value}``, called on every rank; rank 0's values are used.
        run_dir: Where ``metrics.jsonl``, TensorBoard events and checkpoints go (None: nothing written).
        device: Defaults to CUDA when available.
        run_config: The resolved run configuration (plain dict) stored in checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainerConfig,
        train_loader: Iterable,
        *,
        meta_loader: Iterable | None = None,
        eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        run_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        cfg.validate()
        cfg.meta.validate()
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.loss_names: tuple[str, ...] = tuple(model.loss_names)  # type: ignore[arg-type]
        self.primary = cfg.primary or model.target_loss  # type: ignore[assignment]
        if self.primary not in self.loss_names:
            raise ValueError(f"primary loss {self.primary!r} is not one of {type(model).__name__}.loss_names {self.loss_names}")
        self.primary_index = self.loss_names.index(self.primary)
        self.combiner = build_combiner(cfg.combiner, self.loss_names, self.primary).to(self.device)
        self.net = D.wrap_ddp(self.model, self.device)
        self.comm = D.DistComm()
        self.rank = D.rank()
        self.train_loader, self.meta_loader, self.eval_fn = train_loader, meta_loader, eval_fn
        if cfg.meta.source == "loader" and meta_loader is None and self.combiner.learnable:
            raise ValueError("meta.source='loader' needs a meta_loader")
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.meta_params = [p for p in self.combiner.parameters() if p.requires_grad]

        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.named_params, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.hypergrad = build_hypergrad(cfg.meta.hypergrad)
        if self.combiner.learnable:
            self.meta_optimizer = build_optimizer(self.combiner.named_parameters(), cfg.meta.optim)
            self.meta_scheduler = build_scheduler(self.meta_optimizer, cfg.meta.optim, max(1, self.total_steps // cfg.meta.every))
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp] if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

        self.meta_gen = torch.Generator().manual_seed(cfg.seed)
        self.buffer: list[Any] = []
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.meta_pos = 0  # batches consumed from meta_loader
        self.best: dict[str, Any] = {"metric": cfg.best_metric, "value": None, "step": None}
        self.last_metrics: dict[str, float] = {}
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_config = dict(run_config) if run_config is not None else {"trainer": to_dict(cfg)}
        self.logger = RunLogger(self.run_dir, rank=self.rank, tensorboard=cfg.tensorboard, progress_total=self.total_steps)
        self._meta_iter: Iterator | None = None
        self._t0 = time.perf_counter()
        self._warned_generator = False
        self.epoch_stats: list[dict[str, Any]] = []  # per-epoch time and peak memory of this process's fit()

    # ------------------------------------------------------------------ helpers

    def _steps_per_epoch(self) -> int:
        try:
            n = len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:
            if self.cfg.max_steps is None:
                raise ValueError("train_loader has no len(); set max_steps") from None
            return self.cfg.max_steps
        steps = n // self.cfg.grad_accum
        if steps < 1:
            raise ValueError(f"train_loader has {n} batches, fewer than grad_accum={self.cfg.grad_accum}")
        return steps

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _losses(self, out: Any) -> Tensor:
        check_losses(self.model, out, self.loss_names)
        return stack_losses(out, self.loss_names)

    def _functional_losses(self, batch: Any) -> Callable[[Any], Tensor]:
        """``params -> [T]`` local losses of ``batch`` at the given backbone parameter values."""
        names = [n for n, _ in self.named_params]
        batch = _to_device(batch, self.device)

        def losses(params: Any) -> Tensor:
            with self._autocast():
                out = functional_call(self.model, dict(zip(names, params)), (batch,))
            return self._losses(out)

        return losses

    def _combine_frozen(self, losses: Tensor) -> Tensor:
        """The combiner with its parameters detached (the backbone step does not train the combiner)."""
        frozen = {n: p.detach() for n, p in self.combiner.named_parameters()}
        return functional_call(self.combiner, frozen, (losses,))

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ one step

    def train_step(self, micro_batches: list[Any]) -> dict[str, Any]:
        """One optimiser step over ``micro_batches`` (gradient accumulation), then the meta step."""
        self.net.train()
        self.combiner.train()
        n = len(micro_batches)
        loss_sum = torch.zeros(len(self.loss_names), device=self.device)
        combined_sum = torch.zeros((), device=self.device)
        for i, raw in enumerate(micro_batches):
            batch = _to_device(raw, self.device)
            sync = contextlib.nullcontext() if i == n - 1 or self.net is self.model else self.net.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    out = self.net(batch)
                losses = self.comm.globalise(self._losses(out))
                combined = self._combine_frozen(losses)
                if not combined.requires_grad:
                    raise CombinerTrainingError(
                        f"{type(self.combiner).__name__} output does not depend on the losses, so it cannot train "
                        f"the backbone (a TE-only MELTR is such a case: paper Appendix D, 'cannot be trained')"
                    )
                scaled = combined / n
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += losses.detach()
            combined_sum += combined.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.optim.clip_grad_norm:
            nn.utils.clip_grad_norm_([p for _, p in self.named_params], self.cfg.optim.clip_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        meta: dict[str, float] = {}
        if self.combiner.learnable and self.step % self.cfg.meta.every == 0:
            meta = self.meta_step(micro_batches[-1])
        for raw in micro_batches:
            self._push(raw)
        record = {"losses": loss_sum / n, "combined": combined_sum / n}
        if self.step % self.cfg.log_every == 0:
            self._log_train(record["losses"], float(record["combined"]))
        if meta:
            self.logger.log({"kind": "meta", "step": self.step, "epoch": self.epoch, **meta})
        self.step += 1
        return {**record, **meta}

    # ------------------------------------------------------------------ meta step

    def _push(self, raw: Any) -> None:
        self.buffer.append(raw)
        if len(self.buffer) <= self.cfg.meta.buffer_size:
            return
        if self.cfg.meta.buffer_evict == "fifo":
            self.buffer.pop(0)
        else:
            # VIOLET / All-in-one: evict one of the first N entries with weights 1..N (older entries are
            # the least likely to go; the newest entry is never evicted at that moment).
            k = self.cfg.meta.buffer_size
            weights = torch.arange(1, k + 1, dtype=torch.float)
            self.buffer.pop(int(torch.multinomial(weights, 1, generator=self.meta_gen)))

    def _draw(self, current: Any) -> Any:
        if not self.buffer:
            return current
        return self.buffer[int(torch.randint(len(self.buffer), (1,), generator=self.meta_gen))]

    def _next_meta_batch(self) -> Any:
        assert self.meta_loader is not None
        if self._meta_iter is None:
            self._meta_iter = iter(self.meta_loader)
            for _ in range(self.meta_pos % max(1, self._len_or(self.meta_loader))):
                next(self._meta_iter)
        try:
            batch = next(self._meta_iter)
        except StopIteration:
            self._meta_iter = iter(self.meta_loader)
            batch = next(self._meta_iter)
        self.meta_pos += 1
        return batch

    @staticmethod
    def _len_or(loader: Iterable) -> int:
        try:
            return len(loader)  # type: ignore[arg-type]
        except TypeError:
            return 1 << 62

    def _regulariser(self, losses: Tensor) -> Tensor:
        losses = self.comm.globalise(losses)
        combined = self.combiner(losses) if self.cfg.meta.reg_direct else self._combine_frozen(losses)
        diff = losses.sum() - combined
        return self.cfg.meta.gamma * (diff.abs() if self.cfg.meta.reg == "abs" else diff.square())

    def meta_step(self, current: Any) -> dict[str, float]:
        """Updates the combiner with one hypergradient step; returns scalars to log."""
        mcfg = self.cfg.meta
        b_v = self._next_meta_batch() if mcfg.source == "loader" else self._draw(current)
        b_t = b_v if (mcfg.share_batch and mcfg.source == "buffer") else self._draw(current)
        params = [p for _, p in self.named_params]
        pi = self.primary_index
        lv = self._functional_losses(b_v)
        lt = lv if b_t is b_v else self._functional_losses(b_t)
        if mcfg.gamma == 0:
            primary: Callable = lambda ps: lv(ps)[pi]
        elif lt is lv:
            primary = lambda ps: (lambda l: l[pi] + self._regulariser(l))(lv(ps))
        else:
            primary = SumObjective(lambda ps: lv(ps)[pi], lambda ps: self._regulariser(lt(ps)))

        def make_aux(losses_fn: Callable) -> CombinedObjective:
            return CombinedObjective(losses_fn, self.combiner, lambda: make_aux(self._functional_losses(self._draw(current))), self.comm)

        if isinstance(self.hypergrad, ITD) and self.cfg.meta.hypergrad.inner_lr is None:
            self.hypergrad.inner_lr = self._lr()
        grads = self.hypergrad(primary, make_aux(lt), params, self.meta_params, comm=self.comm)
        self.meta_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.meta_params, grads):
            p.grad = g.to(p.dtype)
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
        if mcfg.optim.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.meta_params, mcfg.optim.clip_grad_norm)
        self.meta_optimizer.step()
        self.meta_scheduler.step()
        self.meta_optimizer.zero_grad(set_to_none=True)
        return {"hypergrad_norm": float(norm), "meta_lr": float(self.meta_optimizer.param_groups[0]["lr"])}

    # ------------------------------------------------------------------ logging / eval

    def _log_train(self, losses: Tensor, combined: float) -> None:
        weights = self.combiner.task_weights(losses)
        vals, ws = losses.tolist(), weights.tolist()
        self.logger.log(
            {
                "kind": "train",
                "step": self.step,
                "epoch": self.epoch,
                "losses": dict(zip(self.loss_names, vals)),
                "combined": combined,
                "task_weights": dict(zip(self.loss_names, ws)),
                "lr": self._lr(),
                "time": time.perf_counter() - self._t0,
            }
        )
        self.logger.progress(0, loss=combined, **{self.primary: vals[self.primary_index]})

    def evaluate(self) -> dict[str, float]:
        """Runs ``eval_fn`` (every rank), logs rank 0's metrics and keeps ``best.pt`` up to date."""
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = dict(self.eval_fn(self.model))
        self.model.train()
        metrics = D.broadcast_object(metrics)  # type: ignore[assignment]
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.logger.log({"kind": "eval", "step": self.step, "epoch": self.epoch, "metrics": self.last_metrics})
        name = self.cfg.best_metric
        if name is not None:
            if name not in self.last_metrics:
                raise KeyError(f"best_metric {name!r} not in eval metrics {sorted(self.last_metrics)}")
            value = self.last_metrics[name]
            old = self.best["value"]
            better = old is None or (value > old if self.cfg.best_mode == "max" else value < old)
            if better:
                self.best = {"metric": name, "value": value, "step": self.step}
                if self.run_dir is not None:
                    self.save(self.run_dir / "best.pt")
        return self.last_metrics

    # ------------------------------------------------------------------ loop

    def _epoch_batches(self) -> Iterator[Any]:
        loader = self.train_loader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # type: ignore[union-attr]
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.epoch)  # type: ignore[union-attr]  # per-epoch augmentation (e.g. MLM masks)
        gen = getattr(loader, "generator", None)
        if isinstance(gen, torch.Generator):
            # The iterator draws its base seed from this generator; seeding it per epoch keeps the
            # global RNG untouched and makes worker seeds a function of (seed, epoch).
            gen.manual_seed(self.cfg.seed * 100_003 + self.epoch)
        elif not self._warned_generator and hasattr(loader, "generator"):
            self._warned_generator = True
            log.warning("train_loader has no generator: creating its iterator consumes the global RNG, so resume is not bit-exact")
        skip = self.batch_in_epoch
        if skip and hasattr(sampler, "set_start") and getattr(loader, "batch_size", None):
            sampler.set_start(skip * loader.batch_size)  # type: ignore[union-attr]
            return iter(loader)
        return itertools.islice(iter(loader), skip, None)

    def _log_epoch(self, started: float, first_batch: int) -> None:
        """Logs an ``epoch`` record: training wall time of the epoch (evaluation and checkpointing
        excluded) and peak memory (see :func:`meltr.log.peak_memory`), as paper Table 8 reports them."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # kernels still queued belong to this epoch's time
        stats = {
            "step": self.step,
            "epoch": self.epoch,
            "epoch_time_s": time.perf_counter() - started,
            "batches": self.batch_in_epoch - first_batch,
            # False when this process did not run the whole epoch (resumed mid-epoch, or max_steps)
            "complete": first_batch == 0 and self.batch_in_epoch >= self.cfg.grad_accum * self.steps_per_epoch,
            **peak_memory(self.device),
        }
        self.epoch_stats.append(stats)
        self.logger.log({"kind": "epoch", **stats})

    def _summary(self) -> dict[str, Any]:
        complete = [e["epoch_time_s"] for e in self.epoch_stats if e["complete"]]
        peaks = {k: max(e[k] for e in self.epoch_stats if k in e) for k in ("peak_cuda_allocated_mib", "peak_rss_mib")
                 if any(k in e for e in self.epoch_stats)}
        return {
            "step": self.step,
            "epoch": self.epoch,
            "metrics": self.last_metrics,
            "best": self.best,
            "epochs": self.epoch_stats,
            "mean_epoch_time_s": sum(complete) / len(complete) if complete else None,
            **peaks,
        }

    def fit(self) -> dict[str, Any]:
        """Trains to ``epochs`` / ``max_steps`` (continuing from a resumed state); returns a summary.

        The summary (also logged as the last ``summary`` record of ``metrics.jsonl``) holds the step,
        epoch, last and best metrics, the ``epoch`` records of this call (time, peak memory), the mean
        time of the complete epochs and the peak memory over them.
        """
        accum = self.cfg.grad_accum
        while self.epoch < self.cfg.epochs and self.step < self.total_steps:
            started, first_batch = time.perf_counter(), self.batch_in_epoch
            reset_peak_memory(self.device)
            micro: list[Any] = []
            for raw in self._epoch_batches():
                micro.append(raw)
                if len(micro) < accum:
                    continue
                self.train_step(micro)
                self.batch_in_epoch += len(micro)
                micro = []
                self.logger.progress(1)
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                    self.evaluate()
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0 and self.run_dir is not None:
                    self.save(self.run_dir / "last.pt")
                if self.step >= self.total_steps:
                    break
            self._log_epoch(started, first_batch)
            if self.step >= self.total_steps and self.batch_in_epoch < accum * self.steps_per_epoch:
                break  # stopped by max_steps mid-epoch: keep the position for a later resume
            self.epoch += 1
            self.batch_in_epoch = 0
            if not self.cfg.eval_every:
                self.evaluate()
            if self.run_dir is not None:
                self.save(self.run_dir / "last.pt")
        summary = self._summary()
        self.logger.log({"kind": "summary", **summary})
        self.logger.close()
        return summary

    # ------------------------------------------------------------------ checkpoints

    def _rank_state(self) -> dict[str, Any]:
        return {"rng": rng_state(), "meta_rng": self.meta_gen.get_state(), "buffer": self.buffer}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimisers, schedules, counters, RNG, buffer."""
        state: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "config": self.run_config,
            "model": self.model.state_dict(),
            "combiner": self.combiner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "meta_pos": self.meta_pos,
            "best": self.best,
            "metrics": self.last_metrics,
            "loss_names": list(self.loss_names),
            "world_size": self.comm.world_size,
            **self._rank_state(),
        }
        if self.combiner.learnable:
            state["meta_optimizer"] = self.meta_optimizer.state_dict()
            state["meta_scheduler"] = self.meta_scheduler.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def save(self, path: str | Path) -> None:
        """Writes the training state atomically (rank 0), plus ``<path>.rank<r>`` per other rank."""
        path = Path(path)
        if self.rank == 0:
            save_checkpoint(self.state_dict(), path)
        else:
            save_checkpoint({"format_version": FORMAT_VERSION, **self._rank_state()}, Path(f"{path}.rank{self.rank}"))
        D.barrier()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a state written by :meth:`state_dict` (same model, combiner and world size)."""
        if list(state["loss_names"]) != list(self.loss_names):
            raise ValueError(f"checkpoint losses {state['loss_names']} differ from the model's {list(self.loss_names)}")
        if state["world_size"] != self.comm.world_size:
            raise ValueError(f"checkpoint was written with {state['world_size']} ranks, this run has {self.comm.world_size}")
        self.model.load_state_dict(state["model"])
        self.combiner.load_state_dict(state["combiner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.combiner.learnable:
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])
            self.meta_scheduler.load_state_dict(state["meta_scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch, self.meta_pos = int(state["batch_in_epoch"]), int(state["meta_pos"])
        self.best, self.last_metrics = dict(state["best"]), dict(state["metrics"])
        self.buffer = list(state["buffer"])
        self.meta_gen.set_state(state["meta_rng"])
        self._meta_iter = None
        set_rng_state(state["rng"])

    def resume(self, path: str | Path) -> None:
        """Loads ``path`` (and this rank's ``path.rank<r>`` file) to continue training exactly."""
        state = dict(load_checkpoint(path, map_location=self.device))
        if self.rank > 0:
            state.update(load_checkpoint(f"{path}.rank{self.rank}", map_location=self.device))
        self.load_state_dict(state)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)
