"""The learned loss and its bi-level meta step, for any training loop.

:class:`MetaLearner` owns everything MELTR adds to fine-tuning: the combiner (the loss transformer or a
baseline), its optimiser and schedule, the meta batches (the official buffer of recent training batches
or a held-out loader), the regulariser, the hypergradient scheme and the data-parallel reductions. A
training loop calls two things::

    meta = MetaLearner.for_model(model)                  # defaults: MELTR, AID-FP-Lite, K=3, gamma=0.1
    for batch in loader:
        loss = meta.combine(model(batch))                # combined loss; the combiner is frozen here
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        meta.maybe_step(model, batch)                    # every K calls: one meta step; buffers the batch

``meltr.Trainer`` and the Hugging Face / Lightning integrations are built on it, so there is one
implementation of the meta step (Algorithm 1 as the official code runs it)::

    after the backbone update of step s, if s % K == 0 and the combiner is learnable:
        b_v, b_t = meta batches                          # official: two draws from the last 10 batches
        L_P = l_target(w; b_v) + gamma * |sum_t l_t(w; b_t) - combiner(l(w; b_t))|
        phi.grad = hypergradient(L_P, combiner(l(w; b_t)))     # AID-FP-Lite by default
        clip; meta_optimizer.step()
    then the step's batches join the buffer

Under data parallelism (``torch.distributed`` initialised) the loss vector is averaged over ranks before
the combiner (value of the global mean, gradient of the local losses), and the meta step averages its
outer gradient and directional derivatives explicitly (:mod:`meltr.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from meltr.buffer import BUFFER_STATE_KEYS, BufferPosition, CheckpointBuffer, MetaBuffer, restore_buffer
from meltr.combiners import CombinerConfig, build_combiner
from meltr.deprecation import renamed_attribute, renamed_kwargs
from meltr.hypergrad import (
    CombinedObjective,
    Comm,
    HypergradConfig,
    Objective,
    Params,
    SumObjective,
    build_hypergrad,
    full_precision_requested,
    lite_from_graph,
)
from meltr.interface import (Combiner, CombinerTrainingError, LossContractError, NonFiniteError, NonFinitePolicy,
                             check_losses, losses_of, stack_losses)
from meltr.model_call import BoundCall, ModelCall, call_batch, explain_meta_error, model_loss_names, to_device, unwrap_model
from meltr.optim import OptimConfig, build_optimizer, build_scheduler

# ModelCall, unwrap_model, to_device (meltr.model_call) and CheckpointBuffer, BUFFER_STATE_KEYS (meltr.buffer)
# live in their own modules; they stay importable from here.
__all__ = ["MetaConfig", "MetaLearner", "CombinerTrainingError", "NonFiniteError", "NonFinitePolicy", "ModelCall", "unwrap_model",
           "to_device", "CheckpointBuffer", "BUFFER_STATE_KEYS"]

log = logging.getLogger(__name__)

@dataclass
class MetaConfig:
    """The bi-level meta step that trains a learnable combiner."""

    every: int = 3  # K: update the combiner every K backbone steps (official: 3 UniVL/VIOLET, 5 All-in-one)
    gamma: float = 0.1  # regulariser strength (paper eq. 6; official 0.1, UniVL off unless --reg 1)
    reg: Literal["abs", "squared"] = "abs"  # official |sum l - MELTR(l)|, or its square
    reg_direct: bool = False  # also differentiate the regulariser w.r.t. phi directly (official: no)
    # Meta batches: two draws from the last-N training batches (official), the target loss's from meta_loader, or
    # "current": both are the step's own batch, at the weights before its update, v from its own graph.
    source: Literal["buffer", "loader", "current"] = "buffer"
    buffer_size: int = 10  # how many recent training batches the buffer keeps (official: 10)
    buffer_evict: Literal["fifo", "weighted"] = "fifo"  # UniVL drops the oldest; VIOLET/All-in-one weighted
    # What checkpoints keep of the buffer. positions: each batch's (epoch, batch index) and fingerprint;
    # meltr.Trainer re-reads and checks the batches at resume (exact and small; batches with no position,
    # e.g. from a loader that cannot start mid-epoch or observe() without one, are stored as batches, with
    # a warning). batches: the batches (exact, large: 10 x 128 videos). none: nothing, a resumed run refills
    # the buffer (not bit-exact). The old booleans are read as true = batches, false = none.
    checkpoint_buffer: CheckpointBuffer | bool = "positions"
    share_batch: bool = False  # one draw for both meta batches (the official draws twice, independently)
    hypergrad: HypergradConfig = field(default_factory=HypergradConfig)  # scheme and its options
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(name="adam", lr=1e-4, weight_decay=3e-5, schedule="constant", clip_grad_norm=10.0)
    )  # meta optimiser (official: Adam, lr 1e-4, L2 3e-5, clip 50/12/1 per backbone)

    def __post_init__(self) -> None:
        self._read_old_checkpoint_buffer()

    def _read_old_checkpoint_buffer(self) -> None:
        if isinstance(self.checkpoint_buffer, bool):  # configs and checkpoints written before the modes
            self.checkpoint_buffer = "batches" if self.checkpoint_buffer else "none"

    def validate(self, where: str = "") -> None:
        """Raises ValueError naming the field (``<where>.<field>``, e.g. ``meta.gamma``) of the first invalid
        value. An old boolean ``checkpoint_buffer`` becomes its mode (true: batches, false: none)."""
        at = f"{where}." if where else ""
        if self.every < 1:
            raise ValueError(f"{at}every must be >= 1, got {self.every}")
        if self.buffer_size < 1:
            raise ValueError(f"{at}buffer_size must be >= 1, got {self.buffer_size}")
        if self.source not in ("buffer", "loader", "current"):
            raise ValueError(f"{at}source must be buffer, loader or current, got {self.source!r}")
        if self.source == "current" and self.hypergrad.name != "aid_fp_lite":
            raise ValueError(f"{at}source=current supports the aid_fp_lite hypergradient only, got {self.hypergrad.name!r}")
        self._read_old_checkpoint_buffer()  # also a boolean set after construction
        if not isinstance(self.checkpoint_buffer, str) or self.checkpoint_buffer not in ("positions", "batches", "none"):
            raise ValueError(f"{at}checkpoint_buffer must be 'positions', 'batches' or 'none' (or the old true = batches, "
                             f"false = none), got {self.checkpoint_buffer!r}")
        # NaN fails every comparison, so `gamma < 0` alone would accept it.
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"{at}gamma must be a finite number >= 0, got {self.gamma}")
        self.optim.validate(f"{at}optim")


def _fmt_losses(names: Sequence[str], values: Tensor | None) -> str:
    if values is None:
        return "n/a"
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values.detach().float().reshape(-1).tolist()))


class MetaLearner:
    """A learned combination of named losses and the meta step that trains it.

    Args:
        loss_names: The losses the model returns; the order is the loss transformer's task index.
        target_loss: The target (fine-tuning) loss, one of ``loss_names``: the meta step optimises it
            (``primary=`` is its deprecated name).
        combiner: Which combiner (``meltr``, ``single``, ``sum``, ``fixed``, ``linear``) and its options.
        meta: The meta step: K, gamma, meta batches, hypergradient scheme, meta optimiser.
        seed: Seed of the meta-batch draws (identical on all ranks).
        total_steps: Backbone steps planned; sizes a ``linear`` meta schedule (settable later through
            :meth:`set_total_steps`, before the first meta step).
        meta_loader: Held-out batches for the target-loss side of the meta step (``meta.source="loader"``).
        call: How to call the model on a batch; default ``model(batch)``.
        amp_dtype: Autocast dtype for the meta step's forwards (``torch.bfloat16`` / ``torch.float16``) on
            the model's device type (CUDA or CPU), matching the loop's backbone step; None: full precision.
            The loss vector is promoted to float32 before the combiner and the finite differences.
        device: Where the combiner lives; default CPU (move it with :meth:`to`).
        nonfinite: ``"raise"`` (default): :meth:`combine` raises :class:`NonFiniteError` when finite losses
            give a non-finite combined loss, and :meth:`step` when the hypergradient is non-finite.
            ``"skip"``: :meth:`combine` returns the non-finite value for the loop to skip (see
            :meth:`skip_step`), and :meth:`step` drops the meta update (the meta schedule still
            advances) and counts it in :attr:`skipped_meta_steps`.
    """

    @renamed_kwargs(primary="target_loss")
    def __init__(
        self,
        loss_names: Sequence[str],
        target_loss: str,
        combiner: CombinerConfig | None = None,
        meta: MetaConfig | None = None,
        *,
        seed: int = 0,
        total_steps: int | None = None,
        meta_loader: Iterable[Any] | None = None,
        call: ModelCall | None = None,
        amp_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        nonfinite: NonFinitePolicy = "raise",
    ) -> None:
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.combiner_cfg = combiner if combiner is not None else CombinerConfig()
        self.cfg = meta if meta is not None else MetaConfig()
        self.cfg.validate()
        self.loss_names = tuple(loss_names)
        if target_loss not in self.loss_names:
            raise ValueError(f"target loss {target_loss!r} is not one of the losses {self.loss_names}")
        self.target_loss = target_loss
        self.target_index = self.loss_names.index(target_loss)  # its index in the loss vector
        self.combiner: Combiner = build_combiner(self.combiner_cfg, self.loss_names, target_loss)
        if device is not None:
            self.combiner.to(device)
        self.meta_params = [p for p in self.combiner.parameters() if p.requires_grad]
        if self.cfg.source == "loader" and meta_loader is None and self.learnable:
            raise ValueError("meta.source='loader' needs a meta_loader")
        self.meta_loader = meta_loader
        self.call = call or call_batch
        self.amp_dtype = amp_dtype
        self.hypergrad = build_hypergrad(self.cfg.hypergrad)
        self.total_steps = total_steps
        if self.learnable:
            self.optimizer = build_optimizer(self.combiner.named_parameters(), self.cfg.optim)
            self.scheduler = build_scheduler(self.optimizer, self.cfg.optim, self._meta_steps_planned())
        self.generator = torch.Generator().manual_seed(seed)
        self.replay = MetaBuffer(self.cfg.buffer_size, self.cfg.buffer_evict, self.generator)
        self.steps = 0  # backbone steps seen by maybe_step
        self.meta_pos = 0  # batches consumed from meta_loader
        self.last_losses: Tensor | None = None  # the loss vector of the last combine() (global mean under DDP)
        self._comm: Comm | None = None
        self._meta_iter: Iterator[Any] | None = None
        self._running: list[Tensor] = []  # [losses..., combined] since the last pop_metrics()
        self._hypergrad_norms: list[float] = []  # meta steps since the last pop_metrics()
        self._meta_lr: float | None = None  # the meta learning rate after the latest meta step
        self.model_name = "model"  # named in loss-contract errors
        self.skipped_meta_steps = 0  # meta updates dropped for a non-finite hypergradient (nonfinite="skip")
        self._pending: tuple[int, tuple[Tensor, ...]] | None = None  # source=current: (step, hypergradient)

    # Deprecated names of target_loss / target_index, read for one release.
    primary = renamed_attribute("target_loss")
    primary_index = renamed_attribute("target_index")

    @classmethod
    @renamed_kwargs(primary="target_loss")
    def for_model(cls, model: nn.Module, combiner: CombinerConfig | None = None, meta: MetaConfig | None = None, *,
                  target_loss: str | None = None, **kwargs: Any) -> MetaLearner:
        """A meta-learner for a :class:`meltr.interface.MultiLossModel` (its ``loss_names`` and
        ``target_loss``, unless ``target_loss=`` is given), on the device of the model's parameters.

        Raises:
            LossContractError: the model declares no ``loss_names``, or no ``target_loss`` (and
                ``target_loss=`` is not given).
        """
        model = unwrap_model(model)
        try:
            names, target = model_loss_names(model)
        except LossContractError:
            if target_loss is None or not getattr(model, "loss_names", None):
                raise
            names, target = tuple(model.loss_names), target_loss  # type: ignore[arg-type]
        param = next(model.parameters(), None)
        kwargs.setdefault("device", param.device if param is not None else None)
        learner = cls(names, target_loss or target, combiner, meta, **kwargs)
        learner.model_name = type(model).__name__
        return learner

    # ------------------------------------------------------------------ properties

    @property
    def buffer(self) -> list[Any]:
        """The buffered training batches, oldest first (see :attr:`replay`)."""
        return self.replay.batches

    @property
    def buffer_positions(self) -> list[BufferPosition | None]:
        """Where each buffered batch came from, ``(epoch, index)``, or None when unknown."""
        return self.replay.positions

    @property
    def learnable(self) -> bool:
        """Whether the combiner has meta parameters (MELTR, linear); fixed combiners never meta-step."""
        return bool(self.combiner.learnable)

    @property
    def comm(self) -> Comm:
        """Averaging over data-parallel ranks, resolved on first use (after the process group exists)."""
        if self._comm is None:
            from meltr.distributed import DistComm

            self._comm = DistComm()
        return self._comm

    @property
    def device(self) -> torch.device:
        p = next(self.combiner.parameters(), None)
        if p is None:
            b = next(self.combiner.buffers(), None)
            return b.device if b is not None else torch.device("cpu")
        return p.device

    def to(self, device: torch.device | str) -> MetaLearner:
        """Moves the combiner (in place, so its optimiser keeps its parameters) to ``device``."""
        self.combiner.to(device)
        if self.learnable:
            for state in self.optimizer.state.values():
                for k, v in state.items():
                    if isinstance(v, Tensor) and v.dim() > 0:
                        state[k] = v.to(device)
        return self

    def meta_step_due(self, step: int | None = None) -> bool:
        """Whether a meta step follows backbone step ``step`` (default: the current one): the one place the
        meta-step schedule lives (every ``meta.every`` steps, from step 0), for the buffer and current sources."""
        return self.learnable and (self.steps if step is None else step) % self.cfg.every == 0

    def _meta_steps_planned(self) -> int:
        """The length of the meta lr schedule: ``total_steps // every``."""
        return max(1, (self.total_steps or 1) // self.cfg.every)

    def set_total_steps(self, total_steps: int) -> None:
        """Sets the planned backbone steps (sizes a linear meta schedule); before the first meta step."""
        self.total_steps = int(total_steps)
        if self.learnable and self.scheduler.last_epoch == 0:
            self.scheduler = build_scheduler(self.optimizer, self.cfg.optim, self._meta_steps_planned())

    # ------------------------------------------------------------------ the backbone step

    def losses(self, output: Any, model: object | None = None) -> Tensor:
        """The loss vector ``[T]`` (``loss_names`` order, at least float32) of one model output, checked
        against the contract; under DDP its value is the mean over ranks and its gradient the local one.

        Args:
            output: What the model returned: a dict of exactly the named losses, or a mapping/object
                with a ``losses`` entry holding that dict beside other outputs (e.g. ``logits``).
            model: Named in contract errors (default: this meta-learner).
        """
        who = model if model is not None else self.model_name
        named = losses_of(output, who)
        check_losses(who, named, self.loss_names)
        return self.comm.globalise(stack_losses(named, self.loss_names))

    def combine(self, output: Any, model: object | None = None, batch: Any = None) -> Tensor:
        """The combined loss ``[]`` for the backbone step; the combiner's parameters are frozen (the
        backbone step never trains the combiner, only the meta step does).

        Also records the loss vector (:attr:`last_losses`, and running means for :meth:`pop_metrics`).
        With ``meta.source="current"``, on a meta step (the first micro-batch of every K-th step) it also
        computes the hypergradient from this output's graph (which it keeps for the loop's backward);
        :meth:`maybe_step` applies it after the backbone update.

        Args:
            output: What the model returned (see :meth:`losses`).
            model: The model (needed by ``source="current"``; otherwise only named in errors).
            batch: The batch of ``output``: needed by ``source="current"`` with the ``jvp``/``fd`` modes,
                which evaluate the losses again at other weights (``vjp``/``autograd`` reuse the graph).

        Raises:
            LossContractError: the output breaks the loss contract (names every problem).
            CombinerTrainingError: the combined loss does not depend on the losses.
        """
        losses = self.losses(output, model)
        combined = self.combine_frozen(losses)
        if not bool(torch.isfinite(combined.detach()).all()):
            self._nonfinite_combined(losses, combined)
        if not combined.requires_grad and losses.requires_grad:
            raise CombinerTrainingError(
                f"{type(self.combiner).__name__} output does not depend on the losses, so it cannot train "
                f"the backbone (a TE-only MELTR is such a case: paper Appendix D, 'cannot be trained')"
            )
        if not losses.requires_grad:
            return combined  # evaluation (no_grad): nothing to record
        if self.cfg.source == "current" and self.meta_step_due() and (
                self._pending is None or self._pending[0] != self.steps):
            self._pending = (self.steps, self._hypergrad_from_graph(model, losses, batch))
        self.last_losses = losses.detach()
        self._running.append(torch.cat([self.last_losses, combined.detach().reshape(1).to(self.last_losses.dtype)]))
        return combined

    def _nonfinite_combined(self, losses: Tensor, combined: Tensor) -> None:
        """Finite losses (the contract checked them) gave a non-finite combined loss: the combiner
        overflowed, e.g. MELTR embeds each loss value and an auxiliary loss near 1e20 overflows it."""
        if self.nonfinite == "skip" or not bool(torch.isfinite(losses.detach()).all()):
            return  # skip: the loop drops this step; non-finite inputs: the contract check names them
        vals = losses.detach().float()
        worst = int(vals.abs().argmax())
        raise NonFiniteError(
            f"step {self.steps}: the {self.combiner_cfg.name!r} combiner ({type(self.combiner).__name__}) turned finite losses "
            f"into a non-finite combined loss {float(combined.detach()):.4g} (losses: {_fmt_losses(self.loss_names, vals)}); the "
            f"largest, {self.loss_names[worst]!r}={float(vals[worst]):.4g}, is the likely cause: rescale that loss in the "
            f"model, or set nonfinite='skip' to drop such steps"
        )

    def skip_step(self) -> None:
        """Counts a backbone step the loop dropped (non-finite, ``nonfinite="skip"``) instead of
        :meth:`maybe_step`: no meta step, and the step's batches do not join the buffer."""
        self.steps += 1

    def combine_frozen(self, losses: Tensor) -> Tensor:
        """The combiner on a loss vector ``[..., T]`` with its parameters detached."""
        frozen = {n: p.detach() for n, p in self.combiner.named_parameters()}
        combined: Tensor = functional_call(self.combiner, frozen, (losses,))
        return combined

    def task_weights(self, losses: Tensor | None = None) -> Tensor:
        """Each task's weight ``a_t = d combiner / d l_t`` at ``losses`` ``[T]`` (default: the last
        combined loss vector)."""
        if losses is None:
            if self.last_losses is None:
                raise RuntimeError("task_weights() needs a loss vector: call combine() first or pass losses")
            losses = self.last_losses
        return self.combiner.task_weights(losses.to(self.device))

    def pop_metrics(self) -> dict[str, float]:
        """What to log, since the last call (then reset): the mean of every loss (``loss/<name>``) and of
        the combined loss (``loss/combined``), the task weights at the mean losses (``weight/<name>``, the
        combiner in eval mode),
        the mean hypergradient norm of the meta steps (``meta/hypergrad_norm``) and the meta learning
        rate (``meta/lr``). Under DDP the losses are the global means. Empty before any ``combine``."""
        out: dict[str, float] = {}
        if self._running:
            mean = torch.stack(self._running).mean(0)
            self._running = []
            losses = mean[:-1]
            out.update({f"loss/{n}": v for n, v in zip(self.loss_names, losses.tolist())})
            out["loss/combined"] = float(mean[-1])
            # In eval mode: deterministic weights (no combiner dropout) and no draw from the global RNG,
            # so logging never changes what training computes.
            was_training = self.combiner.training
            self.combiner.eval()
            try:
                weights = self.task_weights(losses).tolist()
            finally:
                self.combiner.train(was_training)
            out.update({f"weight/{n}": w for n, w in zip(self.loss_names, weights)})
        if self._hypergrad_norms:
            out["meta/hypergrad_norm"] = sum(self._hypergrad_norms) / len(self._hypergrad_norms)
            self._hypergrad_norms = []
        if self._meta_lr is not None:
            out["meta/lr"] = self._meta_lr
        return out

    # ------------------------------------------------------------------ the meta step

    def maybe_step(self, model: nn.Module, *batches: Any, lr: float | None = None,
                   positions: Sequence[BufferPosition] | None = None) -> dict[str, float]:
        """Call once after every backbone optimiser step with that step's batch (or all its
        micro-batches, under gradient accumulation).

        Every K-th call (the 1st, K+1-th, ...) runs :meth:`step` first; then the batches join the buffer.

        Args:
            model: The model being fine-tuned (wrappers such as DDP are removed).
            batches: The step's batch(es), as given to the model.
            lr: The backbone's current learning rate (the ``itd`` scheme's inner step; others ignore it).
            positions: Where each batch came from, ``(epoch, batch index in the epoch)``, when the loop can
                read it again at resume (see :meth:`observe`); None: checkpoints store the batches.

        Returns:
            ``{"hypergrad_norm", "meta_lr"}`` when a meta step ran, else ``{}``.
        """
        if not batches:
            raise TypeError("maybe_step(model, batch, ...) needs the step's batch")
        if positions is not None and len(positions) != len(batches):
            raise ValueError(f"maybe_step got {len(batches)} batches and {len(positions)} positions: give one position per batch")
        out: dict[str, float] = {}
        if self.meta_step_due():
            if self.cfg.source == "current":
                if self._pending is None or self._pending[0] != self.steps:
                    raise RuntimeError(
                        f"meta.source='current': no hypergradient was computed for step {self.steps}; call "
                        f"combine(output, model) with grad enabled on every step before maybe_step")
                grads, self._pending = self._pending[1], None
                out = self._apply(grads)
            else:
                out = self.step(model, batches[-1], lr=lr)
        if self.cfg.source != "current":  # the current source needs no buffer
            for i, b in enumerate(batches):
                self.observe(b, None if positions is None else positions[i])
        self.steps += 1
        return out

    def observe(self, batch: Any, position: BufferPosition | None = None) -> None:
        """Adds a training batch to the meta buffer (evicting per ``meta.buffer_evict``). With
        ``meta.source="loader"`` the buffer still serves the auxiliary side of the meta step.

        Args:
            batch: The batch, as the loader gave it.
            position: ``(epoch, index of the batch in the epoch)`` on this rank, for a loop that can read
                that batch again (``meltr.Trainer`` does): with ``meta.checkpoint_buffer="positions"`` a
                checkpoint then stores the position and a fingerprint instead of the batch, and
                :meth:`load_state_dict` re-reads it through ``fetch``. None: the batch itself is stored.
        """
        if self.learnable:
            self.replay.add(batch, position)

    def _next_meta_batch(self) -> Any:
        assert self.meta_loader is not None
        if self._meta_iter is None:
            self._meta_iter = iter(self.meta_loader)
            try:
                n = len(self.meta_loader)  # type: ignore[arg-type]
            except TypeError:
                n = 1 << 62
            for _ in range(self.meta_pos % max(1, n)):
                next(self._meta_iter)
        try:
            batch = next(self._meta_iter)
        except StopIteration:
            self._meta_iter = iter(self.meta_loader)
            batch = next(self._meta_iter)
        self.meta_pos += 1
        return batch

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.amp_dtype is None or full_precision_requested():  # fd's differenced forwards: full precision
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def _functional_losses(self, model: nn.Module, names: list[str], batch: Any) -> Callable[[Any], Tensor]:
        """``params -> [T]`` local losses of ``batch`` at the given backbone parameter values."""
        device = next(model.parameters()).device
        batch = to_device(batch, device)
        if self.call is call_batch:
            module, prefix = model, ""
        else:
            module, prefix = BoundCall(model, self.call), "model."
        keys = [prefix + n for n in names]

        def losses(params: Any) -> Tensor:
            with self._autocast(device):
                out = functional_call(module, dict(zip(keys, params)), (batch,))
            named = losses_of(out, model)
            check_losses(model, named, self.loss_names)
            return stack_losses(named, self.loss_names)

        return losses

    def _regulariser(self, losses: Tensor, globalised: bool = False) -> Tensor:
        if not globalised:
            losses = self.comm.globalise(losses)
        combined = self.combiner(losses) if self.cfg.reg_direct else self.combine_frozen(losses)
        diff = losses.sum() - combined
        return self.cfg.gamma * (diff.abs() if self.cfg.reg == "abs" else diff.square())

    def step(self, model: nn.Module, current: Any, *, lr: float | None = None) -> dict[str, float]:
        """One meta step now: the hypergradient of the target loss w.r.t. the combiner, clipped, applied.

        Args:
            model: The model being fine-tuned (DDP wrappers are removed); its trainable parameters are
                the backbone parameters ``w``.
            current: The latest training batch (used while the buffer is still empty).
            lr: The backbone's current learning rate, passed to the hypergradient scheme (``itd`` unrolls a
                step of this size unless ``meta.hypergrad.inner_lr`` is set; the other schemes ignore it).

        Returns:
            ``{"hypergrad_norm": ..., "meta_lr": ...}``.
        """
        if not self.learnable:
            return {}
        model = unwrap_model(model)
        mcfg = self.cfg
        b_v = self._next_meta_batch() if mcfg.source == "loader" else self.replay.draw(current)
        b_t = b_v if (mcfg.share_batch and mcfg.source == "buffer") else self.replay.draw(current)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names, params = [n for n, _ in named], [p for _, p in named]
        pi = self.target_index
        # The outer objective L_P: the target loss on b_v, plus the regulariser on b_t.
        lv = self._functional_losses(model, names, b_v)
        lt = lv if b_t is b_v else self._functional_losses(model, names, b_t)

        def target(ps: Params) -> Tensor:
            return lv(ps)[pi]

        def target_and_regulariser(ps: Params) -> Tensor:
            l = lv(ps)  # one forward serves both terms when b_t is b_v
            return l[pi] + self._regulariser(l)

        outer: Objective
        if mcfg.gamma == 0:
            outer = target
        elif lt is lv:
            outer = target_and_regulariser
        else:
            outer = SumObjective(target, lambda ps: self._regulariser(lt(ps)))

        def make_aux(losses_fn: Objective) -> CombinedObjective:
            return CombinedObjective(losses_fn, self.combiner, lambda: make_aux(self._functional_losses(model, names, self.replay.draw(current))), self.comm)

        try:
            grads = self.hypergrad(outer, make_aux(lt), params, self.meta_params, comm=self.comm, inner_lr=lr)
        except (RuntimeError, NotImplementedError) as exc:
            explained = explain_meta_error(model, mcfg.hypergrad.mode or "jvp", exc)
            if explained is exc:
                raise
            raise explained from exc
        return self._apply(grads)

    def _hypergrad_from_graph(self, model: object | None, losses: Tensor, batch: Any) -> tuple[Tensor, ...]:
        """``source="current"``: AID-FP-Lite on the step's own batch and graph (see :func:`meltr.hypergrad.lite_from_graph`)."""
        if not isinstance(model, nn.Module):
            raise TypeError("meta.source='current' needs the model: call combine(output, model)")
        module = unwrap_model(model)
        params = [p for p in module.parameters() if p.requires_grad]
        # Unset: jvp (exact, the cheapest measured) when the batch is given, else vjp (reuses the graph alone).
        mode = self.cfg.hypergrad.mode or ("jvp" if batch is not None else "vjp")
        aux: CombinedObjective | None = None
        if mode in ("jvp", "fd"):
            if batch is None:
                raise TypeError(f"meta.source='current' with mode {mode!r} evaluates the losses again: call "
                                f"combine(output, model, batch=batch), or use mode 'vjp' (reuses the graph)")
            names = [n for n, p in module.named_parameters() if p.requires_grad]
            aux = CombinedObjective(self._functional_losses(module, names, batch), self.combiner, None, self.comm)
        pi = self.target_index
        outer = (lambda l: l[pi]) if self.cfg.gamma == 0 else (lambda l: l[pi] + self._regulariser(l, globalised=True))
        try:
            return lite_from_graph(losses, outer, self.combiner, params, self.meta_params, mode, self.comm, aux,
                                   self.cfg.hypergrad.fd_eps, target_index=pi if self.cfg.gamma == 0 else None)
        except (RuntimeError, NotImplementedError) as exc:
            explained = explain_meta_error(module, mode, exc)
            if explained is exc:
                raise
            raise explained from exc

    def _apply(self, grads: Sequence[Tensor]) -> dict[str, float]:
        """Writes a hypergradient to the combiner and takes the meta optimiser step (clipped), or handles
        a non-finite one per the ``nonfinite`` policy."""
        mcfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.meta_params, grads):
            p.grad = g.to(p.dtype)
        # A float32 zero to start sum() instead of its int 0: the same value (0.0 + x == x), typed as a Tensor.
        start = torch.zeros((), dtype=torch.float32, device=grads[0].device)
        norm = torch.sqrt(sum(((g.float() ** 2).sum() for g in grads), start))
        if not bool(torch.isfinite(norm)):
            # The hypergradient is averaged over ranks, so every rank takes the same branch.
            if self.nonfinite == "raise":
                self.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteError(
                    f"meta step at step {self.steps}: non-finite hypergradient (norm {float(norm):.4g}) of the "
                    f"{self.combiner_cfg.name!r} combiner, scheme {mcfg.hypergrad.name!r} (last losses: "
                    f"{_fmt_losses(self.loss_names, self.last_losses)}); set nonfinite='skip' to drop such meta steps"
                )
            # As GradScaler: no update, but the step counts (the meta schedule advances).
            self.optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # the skipped optimiser step is deliberate
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
                self.scheduler.step()
            self.skipped_meta_steps += 1
            self._meta_lr = float(self.optimizer.param_groups[0]["lr"])
            log.warning("meta step at step %d skipped: non-finite hypergradient norm %s (%d skipped so far)",
                        self.steps, float(norm), self.skipped_meta_steps)
            return {"meta_lr": self._meta_lr, "skipped_meta_steps": self.skipped_meta_steps}
        if mcfg.optim.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.meta_params, mcfg.optim.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats = {"hypergrad_norm": float(norm), "meta_lr": float(self.optimizer.param_groups[0]["lr"])}
        self._hypergrad_norms.append(stats["hypergrad_norm"])
        self._meta_lr = stats["meta_lr"]
        return stats

    # ------------------------------------------------------------------ state

    def _combiner_form(self) -> str | None:
        """The loss transformer's resolved ``residual`` form (``none``: the paper's, ``sum``), None for
        other combiners."""
        cfg = getattr(self.combiner, "cfg", None)
        return getattr(cfg, "residual", None)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: combiner, meta optimiser and schedule, meta RNG,
        buffer (per ``meta.checkpoint_buffer``: positions and fingerprints, the batches, or nothing),
        counters (tensors and plain containers only: loads with ``weights_only=True``)."""
        state: dict[str, Any] = {
            "loss_names": list(self.loss_names),
            "combiner": self.combiner.state_dict(),
            "generator": self.generator.get_state(),
            **self.replay.state(self.cfg.checkpoint_buffer),  # type: ignore[arg-type]
            "steps": self.steps,
            "meta_pos": self.meta_pos,
            "skipped_meta_steps": self.skipped_meta_steps,
        }
        form = self._combiner_form()
        if form is not None:
            state["residual"] = form
        if self.learnable:
            state["optimizer"] = self.optimizer.state_dict()
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any], fetch: Callable[[BufferPosition], Any] | None = None) -> None:
        """Restores a :meth:`state_dict` of a meta-learner with the same losses and combiner.

        Args:
            state: What :meth:`state_dict` returned (this rank's, under DDP).
            fetch: ``fetch((epoch, index)) -> batch``: reads a training batch again, as the loader gave it
                (``meltr.Trainer`` passes its own); needed when ``state`` stores the buffer by position.
                With ``meta.checkpoint_buffer="none"`` such a buffer is not re-read (it refills).

        Raises:
            BufferMismatchError: a re-read batch differs from the buffered one (its fingerprint), or
                ``fetch`` cannot read it (a :class:`~meltr.checkpoint.CheckpointError`).
            ValueError: the state does not fit this meta-learner, or it stores positions and no ``fetch``
                was given.
        """
        if list(state["loss_names"]) != list(self.loss_names):
            raise ValueError(f"meta-learner state has losses {list(state['loss_names'])}, this one {list(self.loss_names)}")
        form = self._combiner_form()
        # A state without the key predates the residual start: its loss transformer was the paper's form.
        saved = state.get("residual", "none") if form is not None else None
        if form != saved:
            raise ValueError(
                f"meta-learner state holds a loss transformer trained in the residual={saved!r} form, this one is "
                f"residual={form!r}: the same weights compute another loss; resume with combiner.meltr.residual={saved!r}"
            )
        # Before any change: it may raise.
        restored = restore_buffer(state, fetch, mode=self.cfg.checkpoint_buffer,  # type: ignore[arg-type]
                                  refills=self.learnable and self.cfg.source == "buffer")
        self.combiner.load_state_dict(state["combiner"])
        if self.learnable:
            if "optimizer" not in state:
                raise ValueError(f"meta-learner state has no meta optimiser, but the {self.combiner_cfg.name!r} combiner is learnable")
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.replay.restore(restored)
        self.steps, self.meta_pos = int(state["steps"]), int(state["meta_pos"])
        self.skipped_meta_steps = int(state.get("skipped_meta_steps", 0))  # absent before issue 14
        self._meta_iter = None
