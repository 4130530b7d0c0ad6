"""PyTorch Lightning integration: MELTR in a ``LightningModule`` with one changed line.

::

    meta = MetaLearner.for_model(model, CombinerConfig(), MetaConfig())   # model.loss_names / target_loss
    trainer = pl.Trainer(max_steps=1000, accumulate_grad_batches=2, callbacks=[MeltrCallback(meta)])

    class Net(pl.LightningModule):                     # forward(batch) -> {"task": ..., "aux": ...}
        def training_step(self, batch, batch_idx):
            return meltr_loss(self, self(batch))       # was: sum(self(batch).values())

**Automatic optimisation.** The backbone step stays a plain Lightning step, so Lightning keeps doing
what it does well: precision plugins and AMP, gradient accumulation (with DDP's ``no_sync``),
clipping, LR schedulers and strategies. MELTR needs no hook inside that step: the combiner is frozen
there, and the meta step is a separate optimisation (its own optimiser, inside :class:`MetaLearner`)
that runs *after* the backbone update. :class:`MeltrCallback` runs it from ``on_train_batch_end`` once
``trainer.global_step`` has advanced, i.e. after every optimiser step whatever the accumulation. Manual
optimisation would cost every user a rewritten ``training_step`` (``manual_backward``, accumulation,
clipping) and gain nothing; it works too, since the callback only watches the step counter.

**Guarantees** (each tested in ``tests/integration/test_lightning.py``):

* *accumulation*: ``maybe_step`` gets all micro-batches of a step, also the short last step of an epoch
  (the result equals ``meltr.Trainer``'s, under automatic and under manual optimisation);
* *max_steps*: the meta schedule is sized by ``trainer.estimated_stepping_batches`` (``max_steps``
  wins), and Lightning stops after the step whose meta step has run;
* *resume*: the meta-learner's state (combiner, meta optimiser and schedule, meta RNG, buffer) and
  every rank's global RNG states (dropout, shuffling: Lightning saves none) go into the Lightning
  checkpoint under ``callbacks`` as tensors and plain containers (it loads with ``weights_only=True``).
  Resuming from a checkpoint written after an optimiser step (``ModelCheckpoint(every_n_train_steps=)``)
  is exact at an epoch's end, and mid-epoch when the train loader is stateful (Lightning restores only
  such a loader's position). From the checkpoint ModelCheckpoint writes at ``on_train_epoch_end``,
  Lightning 2.6 itself runs one extra optimiser step (Lightning-AI/pytorch-lightning#19403);
* *DDP*: :class:`MetaLearner` averages over Lightning's process group (global loss values before the
  combiner, explicit all-reduces in the meta step); each rank keeps its own buffer and RNG in the
  checkpoint;
* *logging*: ``loss/<name>``, ``loss/combined``, ``weight/<name>`` and ``meta/hypergrad_norm`` (means
  since the last logged step) and ``meta/lr``, as the Hugging Face integration names them, through
  ``LightningModule.log_dict`` at Lightning's ``log_every_n_steps``: every Lightning logger and
  ``trainer.callback_metrics`` see them.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from meltr import distributed as D
from meltr.checkpoint import rng_state, set_rng_state
from meltr.interface import LossContractError
from meltr.meta_learner import MetaLearner
from meltr.model_call import to_device

__all__ = ["MeltrCallback", "meltr_loss"]

log = logging.getLogger(__name__)

# Lightning's mixed-precision settings and the autocast dtype the meta step's forwards must match.
_AMP_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
_STATE_VERSION = 1


class MeltrCallback(pl.Callback):
    """Trains a :class:`meltr.MetaLearner` beside a Lightning fit: the meta step after every backbone
    optimiser step, logging, checkpoint state and resume.

    The module's ``training_step`` returns :func:`meltr_loss` of its losses. The meta step calls the
    module functionally on buffered batches with ``meta.call(module, batch)`` (default
    ``module(batch)``: ``forward`` returns the named losses); its trainable parameters are the backbone
    parameters. The combiner lives in the meta-learner, never in the module, so it can never reach
    ``configure_optimizers`` (checked at fit start).

    Buffered batches stay where Lightning put them (on the accelerator), ``meta.buffer_size`` of them.

    Args:
        meta: The meta-learner; its ``loss_names`` must be the module's (when the module declares them).
    """

    def __init__(self, meta: MetaLearner) -> None:
        super().__init__()
        self.meta = meta
        self._micro: list[Any] = []  # micro-batches since the last optimiser step
        self._step_seen = 0  # trainer.global_step after the last optimiser step handled
        self._losses_before: Tensor | None = None  # meta.last_losses when the current batch started
        self._epoch_done = False  # the current epoch has no batch left (the next one opens a new iterator)
        self._fit_started = False
        self._pending: dict[str, Any] | None = None  # checkpoint state waiting for on_fit_start
        self._pending_rng: dict[str, Any] | None = None  # this rank's global RNG state from the checkpoint
        self._rng_at_fit_start = False  # restore that RNG state at on_fit_start (else at on_train_start)

    # ------------------------------------------------------------------ the backbone step

    def combine(self, pl_module: pl.LightningModule, output: Any) -> Tensor:
        """The combined loss ``[]`` of one output of ``pl_module`` (see :meth:`MetaLearner.combine`);
        the combiner follows the module's train/eval mode, as Lightning sets it."""
        self.meta.combiner.train(pl_module.training)
        return self.meta.combine(output, pl_module)

    # ------------------------------------------------------------------ set-up

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Puts the combiner where the module runs, in its precision (any stage: validate and test
        call :func:`meltr_loss` too)."""
        self._fit_started = False  # a new run: a checkpoint state waits for this run's on_fit_start
        names = getattr(pl_module, "loss_names", None)
        if names is not None and tuple(names) != self.meta.loss_names:
            raise LossContractError(f"{type(pl_module).__name__}.loss_names {tuple(names)} differ from the MetaLearner's {self.meta.loss_names}")
        self.meta.to(trainer.strategy.root_device)
        if trainer.precision == "64-true":
            self.meta.combiner.double()  # the losses arrive in float64; the combiner must take them
        if self.meta.amp_dtype is None:
            self.meta.amp_dtype = _AMP_DTYPES.get(str(trainer.precision))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Checks the combiner is outside the backbone's modules and optimisers, sizes the meta
        schedule, and applies a checkpoint state loaded before."""
        mine = {id(p) for p in self.meta.combiner.parameters()}
        backbone = list(pl_module.parameters())
        backbone += [p for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]]
        if any(id(p) in mine for p in backbone):
            raise ValueError(
                f"the combiner's parameters are in {type(pl_module).__name__} or its optimiser: only the meta step may "
                f"train them. Keep the combiner out of the module (no `self.x = meta.combiner`; holding the MetaLearner "
                f"itself is fine, it is no nn.Module) and build configure_optimizers from the module's own parameters"
            )
        total = trainer.estimated_stepping_batches
        if math.isfinite(total):
            self.meta.set_total_steps(int(total))
        elif self.meta.learnable and (self.meta.cfg.optim.schedule == "linear" or self.meta.cfg.optim.warmup_ratio):
            raise ValueError("the meta schedule needs the run's length: set max_steps or max_epochs, or use a constant meta schedule")
        self._fit_started = True
        self._apply_pending()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._micro = []
        self._step_seen = trainer.global_step
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        elif trainer.global_step > 0 and self.meta.steps == 0:
            log.warning("resuming at step %d without MeltrCallback state in the checkpoint: the combiner starts from its initial "
                        "weights (was the checkpoint saved with save_weights_only=True or without this callback?)", trainer.global_step)

    # ------------------------------------------------------------------ after each batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._losses_before = self.meta.last_losses
        self._epoch_done = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Buffers the micro-batch; after an optimiser step, runs ``maybe_step`` and logs."""
        self._epoch_done = batch_idx + 1 >= trainer.num_training_batches
        if outputs is not None:  # None: training_step skipped this batch
            if self.meta.last_losses is self._losses_before:
                raise RuntimeError(
                    f"{type(pl_module).__name__}.training_step did not use the MELTR loss: return "
                    f"meltr.integrations.lightning.meltr_loss(self, self(batch)) (or build on it)"
                )
            self._micro.append(batch)
        if trainer.global_step == self._step_seen:
            return  # accumulating: no optimiser step yet
        self._step_seen = trainer.global_step
        if not self._micro:
            return  # every batch of this step was skipped
        lr = float(trainer.optimizers[0].param_groups[0]["lr"])  # after the scheduler step, as meltr.Trainer passes it
        self.meta.maybe_step(pl_module, *self._micro, lr=lr)
        self._micro = []
        self._log(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_done = True

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # set on the Trainer by Lightning's logger connector, undeclared
        if every == 0:
            self.meta.pop_metrics()  # logging is off: drop the running means
            return
        # The steps whose metrics Lightning writes to its loggers (`should_update_logs`): popping only
        # there makes every written value the mean over the interval since the last one.
        if trainer.global_step % every:
            return
        metrics = self.meta.pop_metrics()
        # The values are global means already (MetaLearner averages the losses over ranks).
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The meta-learner's state plus every rank's buffer, meta RNG and global RNG states (a
        collective under DDP: Lightning dumps checkpoints on every rank)."""
        meta = self.meta.state_dict()
        local = {
            "generator": meta.pop("generator"),
            "buffer": to_device(meta.pop("buffer"), torch.device("cpu")),  # rank 0 unpickles every rank's batches
            "rng": rng_state(),
        }
        return {"version": _STATE_VERSION, "meta": meta, "ranks": D.gather_objects(local), "epoch_done": self._epoch_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` (this rank's part); applied once the fit has set up the combiner."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"MeltrCallback state version {state.get('version')!r}: this meltr reads version {_STATE_VERSION}")
        ranks = state["ranks"]
        if len(ranks) != D.world_size():
            raise ValueError(f"the MELTR state was saved by {len(ranks)} ranks and this run has {D.world_size()}: "
                             f"each rank's meta buffer and RNG cannot be mapped")
        local = dict(ranks[D.rank()])
        self._pending = {**state["meta"], "generator": local["generator"], "buffer": local["buffer"]}
        self._pending_rng = local["rng"]
        # Lightning opens the loader's iterator between on_fit_start and on_train_start, and opening a
        # DataLoader draws from the global RNG. Saved at an epoch's end, the uninterrupted run opened a
        # new iterator next too, so the RNG goes back before that; saved mid-epoch, it did not, so the
        # RNG goes back after it.
        self._rng_at_fit_start = bool(state["epoch_done"])
        if self._fit_started:
            self._apply_pending()

    def _apply_pending(self) -> None:
        if self._pending is None:
            return
        self.meta.load_state_dict(self._pending)
        self._pending = None
        if self._rng_at_fit_start and self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None


def meltr_loss(module: pl.LightningModule, output: Any) -> Tensor:
    """The MELTR-combined loss ``[]`` of ``output``, for ``training_step`` (and, optionally, the
    evaluation steps) of a module trained with a :class:`MeltrCallback`.

    Args:
        module: The ``LightningModule`` (``self``), attached to a Trainer with a :class:`MeltrCallback`.
        output: What the module returned: a dict of exactly the named losses, or a mapping with a
            ``losses`` entry beside other outputs.

    Raises:
        RuntimeError: the module's Trainer has no :class:`MeltrCallback`.
        meltr.LossContractError: the output breaks the loss contract (names every problem).
    """
    for callback in module.trainer.callbacks:  # type: ignore[attr-defined]  # set on the Trainer by Lightning's callback connector, undeclared
        if isinstance(callback, MeltrCallback):
            return callback.combine(module, output)
    raise RuntimeError(
        f"meltr_loss: the Trainer of {type(module).__name__} has no MeltrCallback; pass "
        f"pl.Trainer(callbacks=[MeltrCallback(MetaLearner.for_model(model, ...))])"
    )
