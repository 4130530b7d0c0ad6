"""Fine-tune any multi-loss model with MELTR (or a baseline combiner): a complete loop on
:class:`meltr.MetaLearner`.

One training step (Algorithm 1 as the official code runs it)::

    l = model(batch)                         # dict of T named 0-dim losses
    L = meta.combine(l)                      # MELTR, sum, fixed, single or linear; combiner frozen
    backward(L); clip; optimizer.step()      # backbone update (the combiner is not in this optimiser)
    meta.maybe_step(model, batch)            # every K steps: the bi-level meta step; buffers the batch

The loop adds what a fine-tuning run needs around it: epochs or ``max_steps`` (``max_steps`` wins),
gradient accumulation, AMP, clipping, evaluation with a best checkpoint, a final evaluation and
``last.pt`` whatever stopped the run, exact resume, plain progress log lines (and a tqdm bar on a
terminal), and data parallelism under ``torchrun`` (initialised here, the loader sharded).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from meltr import distributed as D
from meltr.buffer import BUFFER_STATE_KEYS, BufferMismatchError, BufferPosition
from meltr.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from meltr.checkpoint_set import merge_rank_file, save_set
from meltr.combiners import CombinerConfig
from meltr.config import to_dict
from meltr.deprecation import renamed_attribute, renamed_fields
from meltr.log import RunLogger, peak_memory, reset_peak_memory, setup_logging
from meltr.meta_learner import CombinerTrainingError, MetaConfig, MetaLearner, NonFiniteError, NonFinitePolicy
from meltr.model_call import to_device
from meltr.optim import OptimConfig, build_optimizer, build_scheduler
from meltr.sampler import EpochSampler

__all__ = ["MetaConfig", "TrainerConfig", "Trainer", "CombinerTrainingError", "NonFiniteError"]

log = logging.getLogger(__name__)


@renamed_fields
@dataclass
class TrainerConfig:
    """Everything the trainer needs besides the model and the data."""

    # Keys renamed since the last release: meltr.config reads the old one (YAML files, checkpoints' stored
    # run configs) with a warning; @renamed_fields keeps TrainerConfig(primary=...) and .primary working.
    RENAMED: ClassVar[dict[str, str]] = {"primary": "target_loss"}

    combiner: CombinerConfig = field(default_factory=CombinerConfig)  # meltr, single, sum, fixed, linear
    target_loss: str | None = None  # the loss the meta step optimises; None = model.target_loss
    epochs: int = 3  # training epochs (ignored when max_steps is set)
    max_steps: int | None = None  # optimiser steps to train; set, it wins over epochs
    grad_accum: int = 1  # micro-batches per optimiser step
    amp: Literal["off", "bf16", "fp16"] = "off"  # autocast on the model's device (CUDA or CPU); fp16 adds a GradScaler
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, weight_decay=0.01, warmup_ratio=0.1, clip_grad_norm=1.0)
    )  # backbone optimiser (plug-in default: AdamW 1e-3, 10% warm-up, linear decay, clip 1; paper rows: their YAML)
    meta: MetaConfig = field(default_factory=MetaConfig)  # meta step
    log_every: int = 10  # steps between train records and progress log lines
    eval_every: int | None = None  # steps between evaluations; None = once per epoch (and always at the end)
    best_metric: str | None = None  # metric that selects best.pt
    best_mode: Literal["max", "min"] = "max"  # whether larger or smaller is better
    checkpoint_every: int | None = None  # steps between last.pt saves (always at epoch end and at the end)
    seed: int = 0  # seed of the meta-batch draws (identical on all ranks)
    tensorboard: bool = True  # write TensorBoard scalars beside metrics.jsonl
    nonfinite: NonFinitePolicy = "raise"  # non-finite combined loss / grad norm / hypergradient: raise, or skip the update and count it
    dist_timeout_s: float | None = None  # collective timeout under torchrun (None: $MELTR_DIST_TIMEOUT, else torch's default)

    def validate(self) -> None:
        """Raises ValueError naming the field of the first invalid value (nested: ``optim.lr``, ``meta.gamma``)."""
        for name in ("epochs", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")
        if self.nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {self.nonfinite!r}")
        if self.dist_timeout_s is not None and not (math.isfinite(self.dist_timeout_s) and self.dist_timeout_s > 0):
            raise ValueError(f"dist_timeout_s must be a finite number > 0 or null, got {self.dist_timeout_s}")
        self.optim.validate("optim")
        self.meta.validate("meta")


def _due(step: int, every: int | None) -> bool:
    """Whether an every-``every``-steps action falls on ``step`` (``None`` or 0: never)."""
    return every is not None and every != 0 and step % every == 0


def _announce_epoch(loader: Iterable[Any], epoch: int) -> None:
    """``set_epoch`` on the loader's sampler and dataset (per-epoch shuffles and augmentation)."""
    for obj in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)  # type: ignore[union-attr]


def _reads_by_position(loader: Iterable[Any]) -> bool:
    """Whether ``loader`` can start an epoch at any batch: a sampler with ``set_start`` (such as
    :class:`EpochSampler`) under a fixed batch size. Then batch ``i`` of epoch ``e`` can be read again."""
    return hasattr(getattr(loader, "sampler", None), "set_start") and bool(getattr(loader, "batch_size", None))


def _shard_loader(loader: Iterable[Any], seed: int) -> Iterable[Any]:
    """A plain map-style ``DataLoader`` rebuilt with an :class:`EpochSampler` over this rank's shard.

    A loader whose sampler already shards (``DistributedSampler``, an ``EpochSampler`` with
    ``world_size > 1``), a custom batch sampler or an iterable dataset is returned unchanged, with a
    warning when it cannot be told apart from an unsharded one.
    """
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

    if not isinstance(loader, DataLoader):
        log.warning("train_loader is not a DataLoader: make sure each of the %d ranks gets its own shard", D.world_size())
        return loader
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler) or (isinstance(sampler, EpochSampler) and sampler.world_size > 1):
        return loader
    if loader.batch_size is None or not isinstance(sampler, (RandomSampler, SequentialSampler, EpochSampler)):
        raise ValueError(
            f"under torchrun ({D.world_size()} ranks) every rank would read the whole dataset: give train_loader "
            f"sampler=meltr.EpochSampler(len(dataset), rank=..., world_size=...) or a DistributedSampler"
        )
    shuffle = not isinstance(sampler, SequentialSampler) and getattr(sampler, "shuffle", True)
    sharded = EpochSampler(len(loader.dataset), shuffle=shuffle, seed=getattr(sampler, "seed", seed),  # type: ignore[arg-type]
                           rank=D.rank(), world_size=D.world_size())
    log.info("sharding train_loader across %d ranks (EpochSampler, shuffle=%s, %d batches per rank per epoch)",
             D.world_size(), shuffle, -(-len(sharded) // loader.batch_size) if not loader.drop_last else len(sharded) // loader.batch_size)
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sharded, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn, generator=loader.generator or torch.Generator(),
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


class Trainer:
    """Bi-level fine-tuning of a :class:`meltr.interface.MultiLossModel`.

    Args:
        model: Any ``nn.Module`` with ``loss_names``, ``target_loss`` and ``forward(batch)`` returning
            the named losses (or a dict with a ``losses`` entry beside other outputs).
        cfg: Trainer configuration.
        train_loader: Iterable of batches (a DataLoader; use :class:`meltr.sampler.EpochSampler` and a
            ``generator`` for exact mid-epoch resume). Under ``torchrun`` a plain DataLoader is sharded.
        meta_loader: Held-out batches for the target-loss side of the meta step (``meta.source="loader"``).
        eval_fn: ``eval_fn(model) -> {metric: value}``, called on every rank; rank 0's values are used.
        run_dir: Where ``metrics.jsonl``, TensorBoard events and checkpoints go (None: nothing written).
        device: Defaults to CUDA when available (this rank's GPU under ``torchrun``).
        run_config: The resolved run configuration (plain dict) stored in checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainerConfig,
        train_loader: Iterable[Any],
        *,
        meta_loader: Iterable[Any] | None = None,
        eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        run_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        if not logging.getLogger().handlers and not logging.getLogger("meltr").handlers:
            setup_logging()  # nobody configured logging: show the progress lines (rank 0, stderr)
        D.init_from_env(timeout=cfg.dist_timeout_s)  # under torchrun: join the process group before anything asks for the rank
        if device is None:
            device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.rank = D.rank()
        self.train_loader = _shard_loader(train_loader, cfg.seed) if D.is_distributed() else train_loader
        self.eval_fn = eval_fn
        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        self.meta = MetaLearner.for_model(model, cfg.combiner, cfg.meta, target_loss=cfg.target_loss, seed=cfg.seed, total_steps=self.total_steps,
                                          meta_loader=meta_loader, amp_dtype=self.amp_dtype, device=self.device,
                                          nonfinite=cfg.nonfinite)
        if meta_loader is not None and self.meta.learnable and cfg.meta.source == "loader" \
                and hasattr(meta_loader, "generator") and not isinstance(meta_loader.generator, torch.Generator):
            log.warning("meta_loader has no generator: creating its iterator consumes the global RNG, so resume is not bit-exact "
                        "(give it generator=torch.Generator())")
        self.loss_names, self.target_loss = self.meta.loss_names, self.meta.target_loss
        self.target_index = self.meta.target_index
        # Checkpoints store the meta buffer as positions when the loader can read a batch again by position.
        self._positions = cfg.meta.checkpoint_buffer == "positions" and _reads_by_position(self.train_loader)
        self.net = D.wrap_ddp(self.model, self.device)
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.named_params, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: dict[str, Any] = {"metric": cfg.best_metric, "value": None, "step": None}
        self.last_metrics: dict[str, float] = {}
        self._evaluated_at: int | None = None  # step of the last evaluation
        self._saved_at: int | None = None  # step of the last save of last.pt
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_config = dict(run_config) if run_config is not None else {"trainer": to_dict(cfg)}
        self.logger = RunLogger(self.run_dir, rank=self.rank, tensorboard=cfg.tensorboard, progress_total=self.total_steps)
        self._t0 = time.perf_counter()
        self._fit_start: tuple[float, int] | None = None  # (time, step) when fit() began, for the ETA
        self._warned_generator = False
        self.skipped_steps = 0  # backbone updates dropped for a non-finite loss or gradient (nonfinite="skip")
        self._pending_eval = False  # resumed from a last.pt written before its evaluation: evaluate first
        self.epoch_stats: list[dict[str, Any]] = []  # per-epoch time and peak memory of this process's fit()

    # Deprecated names of target_loss / target_index, read for one release.
    primary = renamed_attribute("target_loss")
    primary_index = renamed_attribute("target_index")

    @property
    def combiner(self) -> nn.Module:
        """The combiner being learned (owned by :attr:`meta`)."""
        return self.meta.combiner

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

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ one step

    def train_step(self, micro_batches: list[Any], positions: list[BufferPosition] | None = None) -> dict[str, Any]:
        """One optimiser step over ``micro_batches`` (gradient accumulation), then the meta step.

        Args:
            micro_batches: The step's batches, as the train loader gave them.
            positions: Each batch's ``(epoch, index in the epoch)`` in the train loader (:meth:`fit` passes
                them), so that checkpoints can store the buffered batches by position; None: by value.
        """
        self.net.train()
        self.meta.combiner.train()
        n = len(micro_batches)
        loss_sum = torch.zeros(len(self.loss_names), device=self.device)
        combined_sum = torch.zeros((), device=self.device)
        for i, raw in enumerate(micro_batches):
            batch = to_device(raw, self.device)
            sync = contextlib.nullcontext() if i == n - 1 or self.net is self.model else self.net.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    out = self.net(batch)
                combined = self.meta.combine(out, self.model, batch=batch)
                scaled = combined / n
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            assert self.meta.last_losses is not None
            loss_sum += self.meta.last_losses
            combined_sum += combined.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for _, p in self.named_params]
        if self.cfg.optim.clip_grad_norm:
            norm = nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_grad_norm)  # the norm before clipping
        elif self.scaler is None:
            norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        # Caught before optimizer.step(), so a poisoned update never reaches the weights or last.pt. The
        # combined loss is the global mean and the gradients are all-reduced, so every rank agrees. Under
        # fp16 the GradScaler owns inf/NaN gradients (it skips such steps and lowers its scale).
        bad = None
        if not bool(torch.isfinite(combined_sum)):
            bad = f"non-finite combined loss {float(combined_sum / n):.4g}"
        elif self.scaler is None and not bool(torch.isfinite(norm)):
            bad = f"non-finite gradient norm {float(norm):.4g} with a finite combined loss {float(combined_sum / n):.4g}"
        record = {"losses": loss_sum / n, "combined": combined_sum / n}
        if bad is not None:
            return self._nonfinite_step(bad, record)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        meta = self.meta.maybe_step(self.model, *micro_batches, lr=self._lr(), positions=positions)
        if self.step % self.cfg.log_every == 0:
            self._log_train(record["losses"], float(record["combined"]))
        if meta:
            self.logger.log({"kind": "meta", "step": self.step, "epoch": self.epoch, **meta})
        self.step += 1
        return {**record, **meta}

    def _nonfinite_step(self, what: str, record: dict[str, Any]) -> dict[str, Any]:
        """A step whose combined loss or gradient norm is not finite: raise naming the step, the losses
        and the combiner (``nonfinite="raise"``), or drop the update and count it (``"skip"``: gradients
        zeroed, no optimiser step, the schedule still advances, as ``GradScaler`` does on inf/NaN)."""
        losses = ", ".join(f"{k}={v:.4g}" for k, v in zip(self.loss_names, record["losses"].tolist()))
        where = f"step {self.step} (epoch {self.epoch}): {what}; losses {losses}; combiner {self.meta.combiner_cfg.name!r}"
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.update()  # unscale_ ran: the scaler must close this step
        if self.cfg.nonfinite == "raise":
            raise NonFiniteError(f"{where}. Nothing was applied (the weights are those before this step); "
                                 f"set trainer.nonfinite=skip to drop such steps instead")
        with warnings.catch_warnings():  # the skipped optimiser step is deliberate
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            self.scheduler.step()
        self.meta.skip_step()
        self.skipped_steps += 1
        log.warning("%s: update skipped (%d skipped so far)", where, self.skipped_steps)
        self.logger.log({"kind": "skip", "step": self.step, "epoch": self.epoch, "reason": what,
                         "skipped_steps": self.skipped_steps})
        self.step += 1
        return {**record, "skipped": True}

    # ------------------------------------------------------------------ logging / eval

    def _log_train(self, losses: Tensor, combined: float) -> None:
        weights = self.meta.task_weights(losses)
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
                "skipped_steps": self.skipped_steps,
            }
        )
        self.logger.progress(0, loss=combined, **{self.target_loss: vals[self.target_index]})
        # The log line shows the means since the previous line (the record above is this step's values).
        means = self.meta.pop_metrics()
        if self.rank == 0:
            log.info("step %d/%d (epoch %d) | loss %.4g | %s | weights %s | lr %.3g | %s", self.step + 1, self.total_steps,
                     self.epoch + 1, means["loss/combined"], " ".join(f"{k} {means['loss/' + k]:.4g}" for k in self.loss_names),
                     " ".join(f"{k} {means['weight/' + k]:.3g}" for k in self.loss_names), self._lr(), self._eta())

    def _eta(self) -> str:
        if self._fit_start is None:
            return "ETA ?"
        started, first = self._fit_start
        done = self.step + 1 - first
        if done <= 0:
            return "ETA ?"
        per_step = (time.perf_counter() - started) / done
        left = per_step * max(0, self.total_steps - self.step - 1)
        return f"{1 / per_step:.2f} it/s, ETA {datetime.timedelta(seconds=round(left))}" if per_step > 0 else "ETA ?"

    def evaluate(self) -> dict[str, float]:
        """Runs ``eval_fn`` (every rank), logs rank 0's metrics and keeps ``best.pt`` up to date."""
        self._evaluated_at = self.step
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = dict(self.eval_fn(self.model))
        self.model.train()
        metrics = D.broadcast_object(metrics)  # type: ignore[assignment]
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.logger.log({"kind": "eval", "step": self.step, "epoch": self.epoch, "metrics": self.last_metrics})
        if self.rank == 0:
            log.info("eval at step %d: %s", self.step, " ".join(f"{k} {v:.4g}" for k, v in self.last_metrics.items()))
        name = self.cfg.best_metric
        if name is not None:
            if name not in self.last_metrics:
                raise KeyError(f"best_metric {name!r} not in eval metrics {sorted(self.last_metrics)}")
            value = self.last_metrics[name]
            old = self.best["value"]
            if old is not None and not math.isfinite(old):
                old = None  # a non-finite best (from an older checkpoint) must not freeze best.pt
            if not math.isfinite(value):
                # `value > nan` never holds: a NaN best would freeze best.pt for the rest of the run. A
                # non-finite value is "not better"; later values are compared with the last finite best.
                log.warning("eval at step %d: best_metric %s is %s, not a candidate for best.pt (best stays %s)",
                            self.step, name, value, "none" if old is None else f"{old:.4g} at step {self.best['step']}")
                better = False
            else:
                better = old is None or (value > old if self.cfg.best_mode == "max" else value < old)
            if better:
                self.best = {"metric": name, "value": value, "step": self.step}
                if self.run_dir is not None:
                    self.save_weights(self.run_dir / "best.pt")
        return self.last_metrics

    # ------------------------------------------------------------------ loop

    def _epoch_batches(self) -> Iterator[Any]:
        return self._batches_from(self.epoch, self.batch_in_epoch)

    def _batches_from(self, epoch: int, skip: int) -> Iterator[Any]:
        """The train loader's batches of ``epoch`` from batch ``skip`` on (the sampler starts there when it can)."""
        loader = self.train_loader
        _announce_epoch(loader, epoch)
        gen = getattr(loader, "generator", None)
        if isinstance(gen, torch.Generator):
            # The iterator draws its base seed from this generator; seeding it per epoch keeps the
            # global RNG untouched and makes worker seeds a function of (seed, epoch).
            gen.manual_seed(self.cfg.seed * 100_003 + epoch)
        elif not self._warned_generator and hasattr(loader, "generator"):
            self._warned_generator = True
            log.warning("train_loader has no generator: creating its iterator consumes the global RNG, so resume is not bit-exact")
        if _reads_by_position(loader):
            # Also at 0: a re-read of a buffered batch (resume) may have left the sampler elsewhere.
            loader.sampler.set_start(skip * loader.batch_size)  # type: ignore[attr-defined]
            return iter(loader)
        return itertools.islice(iter(loader), skip, None)

    def _read_batch(self, position: BufferPosition) -> Any:
        """Batch ``index`` of ``epoch`` read again from the train loader, as it gave it (a meta-buffer entry at resume)."""
        epoch, index = position
        try:
            return next(self._batches_from(epoch, index))
        except StopIteration:
            raise LookupError(f"the train loader has no batch {index} in epoch {epoch}") from None

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
            "skipped_steps": self.skipped_steps,
            "skipped_meta_steps": self.meta.skipped_meta_steps,
            "epochs": self.epoch_stats,
            "mean_epoch_time_s": sum(complete) / len(complete) if complete else None,
            **peaks,
        }

    def fit(self) -> dict[str, Any]:
        """Trains to ``max_steps`` (when set) or ``epochs`` (continuing from a resumed state); returns
        a summary.

        Whatever ends the run (the last epoch, ``max_steps`` mid-epoch, an exhausted loader), it ends
        with an evaluation (unless one just ran at this step) and ``last.pt``. The summary (also logged
        as the last ``summary`` record of ``metrics.jsonl`` and as a log line) holds the step, epoch,
        last and best metrics, the ``epoch`` records of this call (time, peak memory), the mean time of
        the complete epochs and the peak memory over them.
        """
        accum = self.cfg.grad_accum
        self._fit_start = (time.perf_counter(), self.step)
        if self._pending_eval:
            # Resumed from a last.pt written just before its evaluation (the run stopped inside it):
            # run that evaluation now, from the same state, as the uninterrupted run did.
            self._pending_eval = False
            self._save_and_evaluate(evaluate=True, save=self.run_dir is not None, pre_save=False)
        if self.rank == 0:
            log.info("training %s for %d steps (%d per epoch) from step %d: combiner %s, target loss %r, %d rank(s), %s",
                     type(self.model).__name__, self.total_steps, self.steps_per_epoch, self.step, self.meta.combiner_cfg.name,
                     self.target_loss, D.world_size(), self.device)
        while self.step < self.total_steps and (self.cfg.max_steps is not None or self.epoch < self.cfg.epochs):
            started, first_batch = time.perf_counter(), self.batch_in_epoch
            reset_peak_memory(self.device)
            micro: list[Any] = []
            for raw in self._epoch_batches():
                micro.append(raw)
                if len(micro) < accum:
                    continue
                self.train_step(micro, [(self.epoch, self.batch_in_epoch + j) for j in range(len(micro))] if self._positions else None)
                self.batch_in_epoch += len(micro)
                micro = []
                self.logger.progress(1)
                self._save_and_evaluate(evaluate=_due(self.step, self.cfg.eval_every),
                                        save=_due(self.step, self.cfg.checkpoint_every))
                if self.step >= self.total_steps:
                    break
            self._log_epoch(started, first_batch)
            if self.step >= self.total_steps and self.batch_in_epoch < accum * self.steps_per_epoch:
                break  # stopped by max_steps mid-epoch: keep the position for a later resume
            if self.batch_in_epoch == first_batch < accum * self.steps_per_epoch:
                # (A resume from a checkpoint written after the epoch's last step has no batch left in it,
                # rightly: only an epoch that should have had batches and yielded none stops the run.)
                log.warning("train_loader yielded no batch in epoch %d: stopping at step %d", self.epoch, self.step)
                break
            self.epoch += 1
            self.batch_in_epoch = 0
            self._save_and_evaluate(evaluate=not self.cfg.eval_every, save=True)
        self._finish()
        summary = self._summary()
        self.logger.log({"kind": "summary", **summary})
        self.logger.close()
        if self.rank == 0:
            where = f"; checkpoints in {self.run_dir}" if self.run_dir is not None else ""
            best = f"; best {self.best['metric']} {self.best['value']:.4g} at step {self.best['step']}" if self.best["value"] is not None else ""
            log.info("done at step %d (epoch %d): %s%s%s", self.step, self.epoch,
                     " ".join(f"{k} {v:.4g}" for k, v in self.last_metrics.items()) or "no evaluation", best, where)
        return summary

    def _finish(self) -> None:
        """The final evaluation and ``last.pt``, unless the end of the last epoch already wrote them."""
        unsaved = self.run_dir is not None and self._saved_at != self.step
        if self._evaluated_at != self.step:
            # A last.pt of this very step already on disk (checkpoint_every) holds the same training
            # state: no need to write it again before the evaluation, only after it (the metrics).
            self._save_and_evaluate(evaluate=True, save=self.run_dir is not None, pre_save=unsaved)
        elif unsaved:
            self.save(self.run_dir / "last.pt")  # type: ignore[operator]

    def _save_and_evaluate(self, *, evaluate: bool, save: bool, pre_save: bool = True) -> None:
        """One checkpoint/evaluation point, in the order that loses nothing.

        ``last.pt`` is written *before* the evaluation (marked ``pending_eval``, so that a run resumed
        from it evaluates first, exactly as the uninterrupted run did): a crash or a kill inside the
        evaluation loses no training. The evaluation then updates ``best.pt``, and ``last.pt`` is
        written again because the evaluation changed what it records (``metrics``, ``best``), which
        ``scripts/evaluate.py`` and the row tests read from the final ``last.pt``. Without an
        ``eval_fn`` the evaluation changes nothing and ``last.pt`` is written once. The second write
        costs one more save per evaluation point; the alternative (saving only after the evaluation)
        is what lost a whole epoch to a crash in the evaluation.
        """
        last = self.run_dir / "last.pt" if (save and self.run_dir is not None) else None
        evaluating = evaluate and self.eval_fn is not None
        if last is not None and pre_save:
            self.save(last, pending_eval=evaluating)
        if evaluate:
            self.evaluate()
        if last is not None and evaluating:
            self.save(last)

    # ------------------------------------------------------------------ checkpoints

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: the global RNG, the meta-batch RNG and the meta buffer (its batches,
        or their positions in this rank's shard and fingerprints)."""
        meta = self.meta.state_dict()
        return {"rng": rng_state(), "meta": {"generator": meta["generator"], **{k: meta[k] for k in BUFFER_STATE_KEYS}}}

    def weights_dict(self) -> dict[str, Any]:
        """What evaluation needs (``best.pt``): model and combiner weights, config, metrics."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": "weights",
            "config": self.run_config,
            "model": self.model.state_dict(),
            "combiner": self.meta.combiner.state_dict(),
            "loss_names": list(self.loss_names),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "metrics": self.last_metrics,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (``last.pt``): weights, both optimisers and schedules,
        counters, RNG states, the meta-learner's buffer."""
        meta = self.meta.state_dict()
        state: dict[str, Any] = {
            **self.weights_dict(),
            "kind": "training",
            "combiner": meta.pop("combiner"),
            "meta": meta,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": D.world_size(),
            "rng": rng_state(),
            "skipped_steps": self.skipped_steps,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def save(self, path: str | Path, *, pending_eval: bool = False) -> None:
        """Writes the training state as one checkpoint set (:func:`meltr.checkpoint_set.save_set`): under
        data parallelism every rank ``r > 0`` writes its own state (RNG, meta RNG, buffer) to
        ``<path>.rank<r>.<save_id>`` first, rank 0 writes ``path`` (the full state and the commit record)
        last; a job killed at any point leaves the previous set or the new one. Every file is atomic.

        Args:
            path: Usually ``run_dir/last.pt``.
            pending_eval: Marks a state written just before an evaluation; resuming from it runs that
                evaluation first.
        """
        path = Path(path)
        save_set(path, self.step, lambda: {**self.state_dict(), "pending_eval": pending_eval}, self._rank_state)
        if self.run_dir is not None and path == self.run_dir / "last.pt":
            self._saved_at = self.step

    def save_weights(self, path: str | Path) -> None:
        """Writes :meth:`weights_dict` atomically on rank 0 (``best.pt``: no optimiser state, no buffer)."""
        if self.rank == 0:
            save_checkpoint(self.weights_dict(), Path(path))
        D.barrier()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a state written by :meth:`state_dict` (same model, combiner and world size)."""
        if "meta" not in state or "optimizer" not in state:
            raise CheckpointError("this checkpoint holds weights only (a best.pt): resume from last.pt, which holds the training state")
        if list(state["loss_names"]) != list(self.loss_names):
            raise ValueError(f"checkpoint losses {state['loss_names']} differ from the model's {list(self.loss_names)}")
        if state["world_size"] != D.world_size():
            raise ValueError(f"checkpoint was written with {state['world_size']} ranks, this run has {D.world_size()}")
        self.model.load_state_dict(state["model"])
        # A buffer stored by position is read again from the train loader here, before the RNG states are
        # set below (opening a loader without a generator draws from the global RNG).
        self.meta.load_state_dict({**state["meta"], "combiner": state["combiner"], "loss_names": state["loss_names"]},
                                  fetch=self._read_batch if _reads_by_position(self.train_loader) else None)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best, self.last_metrics = dict(state["best"]), dict(state["metrics"])
        self.skipped_steps = int(state.get("skipped_steps", 0))  # absent before issue 14
        self._pending_eval = bool(state.get("pending_eval", False))
        set_rng_state(state["rng"])

    def resume(self, path: str | Path) -> None:
        """Loads ``path`` (and this rank's ``<path>.rank<r>.<save_id>`` file) to continue training exactly.

        Under data parallelism the ranks first compare what they read: a set whose rank files are
        missing or come from another save than ``path`` is refused on every rank with a
        :class:`~meltr.checkpoint.CheckpointError` naming each file and its step. Logs a ``resume``
        record (``step``, ``from``) to ``metrics.jsonl``: records after it with a step at or below an
        earlier record's step are replayed steps of the resumed run.
        """
        path = Path(path)
        state = dict(load_checkpoint(path, map_location=self.device))
        if D.is_distributed() and state.get("world_size") == D.world_size():
            merge_rank_file(path, state, self.device)
        saved = ((state.get("config") or {}).get("trainer") or {}).get("combiner") or {}
        ours = self.meta.combiner_cfg.name
        if isinstance(saved, dict) and saved.get("name") not in (None, ours):
            raise CheckpointError(f"{path} was written by a run with the {saved['name']!r} combiner, this run uses {ours!r}: "
                                  f"resume with trainer.combiner.name={saved['name']}, or start a new run")
        mismatch: BufferMismatchError | None = None
        try:
            self.load_state_dict(state)
        except BufferMismatchError as exc:
            mismatch = BufferMismatchError(f"cannot resume from {path}: {exc}")
        except CheckpointError:
            raise
        except (KeyError, RuntimeError, ValueError) as exc:  # another model, combiner size or form
            raise CheckpointError(f"cannot resume from {path}: it does not fit this run ({type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})") from exc
        # Each rank re-reads its own buffered batches: all ranks raise if one of them found a mismatch.
        found = [m for m in D.gather_objects(None if mismatch is None else str(mismatch)) if m is not None]
        if found:
            raise mismatch if mismatch is not None else BufferMismatchError(f"on another rank: {found[0]}")
        self.logger.log({"kind": "resume", "step": self.step, "epoch": self.epoch, "from": str(path)})
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    def export(self, path: str | Path) -> Path:
        """Writes the model's weights alone to a ``safetensors`` file, loadable into the bare model with
        ``safetensors.torch.load_model(model, path)`` (see :func:`meltr.checkpoint.export_safetensors`)."""
        from meltr.checkpoint import export_safetensors

        return export_safetensors(self.weights_dict(), path)
