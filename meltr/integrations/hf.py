"""MELTR in a Hugging Face ``transformers.Trainer``: change one class name.

A model whose ``forward(**batch)`` returns its named losses (a dict, or a dict / ``ModelOutput`` with a
``losses`` entry beside the logits) and declares ``loss_names`` and ``target_loss`` trains with the
learned loss by replacing ``Trainer`` with :class:`MeltrTrainer`::

    from meltr.integrations.hf import MeltrTrainer

    trainer = MeltrTrainer(model=model, args=TrainingArguments("out", max_steps=1000, gradient_accumulation_steps=4),
                           train_dataset=train, eval_dataset=val, data_collator=collate)
    trainer.train()                                   # or train(resume_from_checkpoint=True)

Each optimiser step is the usual Hugging Face step on the combined loss ``meta.combine(losses)``; after
it (optimiser and scheduler stepped, before logging and saving) the step's micro-batches go to
:meth:`meltr.MetaLearner.maybe_step`, which runs the bi-level meta step every K steps. So the meta step
follows the Trainer's gradient accumulation (all micro-batches of the step), ``max_steps`` and epochs
(its schedule is sized from ``state.max_steps``), checkpoints (``checkpoint-N/meltr.pt``, restored by
``resume_from_checkpoint`` before training continues) and DDP (the meta step runs on the unwrapped
model and averages over ranks itself). The per-loss means ``loss/<name>``, the task weights
``weight/<name>`` and the meta step's ``meta/hypergrad_norm`` and ``meta/lr`` join the Trainer's own
training logs (console, ``report_to``, ``state.log_history``); evaluation adds ``eval_loss/<name>``.

Importing this module imports ``transformers``; ``import meltr`` does not.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalLoopOutput, get_last_checkpoint

from meltr.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from meltr.combiners import CombinerConfig
from meltr.deprecation import renamed_kwargs
from meltr.interface import LOSSES_KEY, LossContractError, losses_of
from meltr.meta_learner import MetaConfig, MetaLearner
from meltr.model_call import to_device

__all__ = ["MeltrTrainer", "META_STATE_NAME"]

log = logging.getLogger(__name__)

META_STATE_NAME = "meltr.pt"
"""The file in each ``checkpoint-N`` folder holding :meth:`meltr.MetaLearner.state_dict` (process 0;
process ``r > 0`` writes ``meltr_rank<r>.pt``, since its meta buffer holds its own batches)."""


def _meta_file(folder: str, rank: int) -> str:
    return os.path.join(folder, META_STATE_NAME if rank == 0 else f"meltr_rank{rank}.pt")


def _without_losses(output: Any) -> Any:
    """``output`` minus its named losses: what Hugging Face's prediction loop may treat as logits (it
    concatenates every entry across batches, which 0-dim losses cannot be)."""
    named = losses_of(output)
    if named is output:  # the output is the loss dict itself
        return {}
    if isinstance(output, dict):  # ModelOutput too (an OrderedDict)
        return {k: v for k, v in output.items() if k != LOSSES_KEY}
    return output


class _MetaStepCallback(TrainerCallback):
    """Hooks the meta-learner into the training loop at the two points a ``Trainer`` subclass cannot
    reach by overriding public methods: training start and the end of each optimiser step."""

    def __init__(self, trainer: MeltrTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.trainer._begin_training(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.trainer._meta_step()


class MeltrTrainer(Trainer):
    """A ``transformers.Trainer`` that trains on a learned combination of the model's named losses.

    Takes every argument of ``transformers.Trainer`` (``compute_loss_func`` excepted: MELTR computes the
    loss), plus the keyword-only arguments below.

    Args:
        combiner: Which combiner (default MELTR's loss transformer; ``sum``, ``single``, ``fixed``,
            ``linear`` are the baselines) and its options.
        meta: The meta step: K, gamma, meta batches, hypergradient scheme and meta optimiser.
        loss_names: The losses the model returns, in task-index order; default ``model.loss_names``.
        target_loss: The loss the meta step optimises; default ``model.target_loss`` (``primary=`` is its
            deprecated name).
        meta_seed: Seed of the combiner's initialisation and of the meta-batch draws (the same on all
            ranks); default ``args.seed``.
        meta_loader: Held-out batches (``model(**batch)`` inputs) for the target-loss side of the meta step,
            with ``meta.source="loader"``; default: the buffer of recent training batches.

    With ``args.gradient_checkpointing``, ``args.gradient_checkpointing_kwargs`` gets
    ``use_reentrant=False`` unless it says otherwise (the Trainer's default is reentrant, which the meta
    step cannot differentiate through). Under DDP the meta buffer of each process holds its own batches;
    each process saves it in the checkpoint (``meltr.pt``, ``meltr_rank<r>.pt``).

    Attributes:
        meta: The :class:`meltr.MetaLearner` (combiner, meta optimiser, buffer).

    Raises:
        LossContractError: No loss names (neither ``loss_names=`` nor ``model.loss_names``) or no target
            loss; or ``args.gradient_checkpointing`` with ``use_reentrant=True``, which the meta step
            cannot differentiate through.
        ValueError: No model, a ``compute_loss_func``, or ``nn.DataParallel`` (``args.n_gpu > 1``).
    """

    @renamed_kwargs(primary="target_loss")
    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        *trainer_args: Any,
        combiner: CombinerConfig | None = None,
        meta: MetaConfig | None = None,
        loss_names: Sequence[str] | None = None,
        target_loss: str | None = None,
        meta_seed: int | None = None,
        meta_loader: Iterable[Any] | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if model is None:
            raise ValueError("MeltrTrainer needs model= (model_init is not supported: the meta-learner is built from the model)")
        if trainer_kwargs.get("compute_loss_func") is not None:
            raise ValueError("MeltrTrainer computes the loss (the learned combination of the model's losses): drop compute_loss_func")
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        if self.args.n_gpu > 1:
            raise ValueError(f"MeltrTrainer does not support nn.DataParallel ({self.args.n_gpu} GPUs in one process): "
                             "launch one process per GPU with torchrun (DDP)")
        _use_non_reentrant_checkpointing(self.args)
        # The losses are per-batch means (the MultiLossModel contract), so the Trainer must divide by the
        # accumulation steps itself and never hand the model num_items_in_batch.
        self.model_accepts_loss_kwargs = False
        # A MELTR model always computes its losses, so evaluation reports a loss even when forward has
        # no `labels`-like argument for the Trainer to detect.
        self.can_return_loss = True
        seed = self.args.seed if meta_seed is None else meta_seed
        self.meta = self._build_meta(loss_names, target_loss, combiner, meta, seed, meta_loader)
        self._micro_batches: list[Any] = []  # the inputs of the optimiser step in progress
        self._eval_losses: list[Tensor] = []  # loss vectors of the evaluation in progress
        self._resume: tuple[str, dict[str, Any]] | None = None  # (file, meta state) to apply when training begins
        self.add_callback(_MetaStepCallback(self))

    def _build_meta(self, loss_names: Sequence[str] | None, target_loss: str | None, combiner: CombinerConfig | None,
                    meta: MetaConfig | None, seed: int, meta_loader: Iterable[Any] | None) -> MetaLearner:
        args, model = self.args, self.model
        assert model is not None  # __init__ requires model= (no model_init)
        kwargs: dict[str, Any] = {
            "seed": seed,
            "meta_loader": meta_loader,
            "call": lambda m, b: m(**b),
            "amp_dtype": torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None,  # the meta step autocasts as HF does
        }
        # Its own RNG stream: the combiner's initialisation is a function of the seed alone, and the
        # global RNG (dropout, data order) is where the plain Trainer would have it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if loss_names is None:
                try:
                    return MetaLearner.for_model(model, combiner, meta, target_loss=target_loss, **kwargs)
                except LossContractError as exc:
                    raise LossContractError(f"{exc}. With MeltrTrainer: MeltrTrainer(..., loss_names=(...), target_loss='...')") from None
            target_loss = target_loss if target_loss is not None else getattr(model, "target_loss", None)
            if target_loss is None:
                raise LossContractError(f"{type(model).__name__} has no target_loss: pass MeltrTrainer(..., target_loss='<one of {tuple(loss_names)}>')")
            param = next(model.parameters(), None)
            device = param.device if param is not None else args.device
            learner = MetaLearner(loss_names, target_loss, combiner, meta, device=device, **kwargs)
            learner.model_name = type(self.model).__name__
            return learner

    # ------------------------------------------------------------------ the backbone step

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Tensor | int | None = None) -> Tensor | tuple[Tensor, Any]:
        """The combined loss ``[]`` of ``model(**inputs)`` (the combiner frozen).

        Under ``no_grad`` (evaluation) the loss vector is kept for the ``eval_loss/<name>`` metrics.
        ``num_items_in_batch`` is ignored: every loss is already a mean over its batch.

        Returns:
            The loss, or ``(loss, outputs)`` with ``return_outputs``, the outputs without their named
            losses (the Trainer's prediction loop treats the other entries as logits).
        """
        # The combiner follows the model's mode, as a submodule would: dropout while training, none
        # when the Trainer evaluates.
        self.meta.combiner.train(model.training)
        out = model(**inputs)
        if torch.is_grad_enabled():
            loss = self.meta.combine(out, self.model, batch=inputs)
        else:
            losses = self.meta.losses(out, self.model)
            self._eval_losses.append(losses)
            loss = self.meta.combine_frozen(losses)
        return (loss, _without_losses(out)) if return_outputs else loss

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Tensor:
        """The Trainer's micro-batch step, remembering ``inputs`` for the meta step of this optimiser step."""
        # Plain dicts (a BatchEncoding is not a weights-only type, and the buffer is checkpointed); the
        # tensors stay where the data loader put them, so this copies nothing.
        self._micro_batches.append(to_device(inputs, self.args.device))
        return super().training_step(model, inputs, *args, **kwargs)

    # ------------------------------------------------------------------ the meta step

    def _begin_training(self, state: TrainerState) -> None:
        """Sizes the meta schedule, then restores the meta state of a resumed checkpoint (in this order,
        so that a linear meta schedule keeps the planned length)."""
        self.meta.set_total_steps(state.max_steps)
        self._micro_batches = []
        if self._resume is None:
            return
        path, saved = self._resume
        self._resume = None
        if int(saved["global_step"]) != state.global_step:
            raise CheckpointError(f"{path} was written at step {saved['global_step']}, but the Trainer state beside it is "
                                  f"at step {state.global_step}: the checkpoint folder mixes two runs")
        self.meta.load_state_dict(saved["meta"])

    def _meta_step(self) -> None:
        """After each optimiser (and scheduler) step: the meta step every K steps, then the buffer."""
        batches, self._micro_batches = self._micro_batches, []
        if not batches:
            return
        # self.model is the bare model: the meta step must never run through DDP (its reducer would
        # see the functional passes); the learner averages over ranks itself.
        assert self.model is not None and self.optimizer is not None  # set before the first optimiser step
        self.meta.maybe_step(self.model, *batches, lr=float(self.optimizer.param_groups[0]["lr"]))

    # ------------------------------------------------------------------ logging and evaluation

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log call; a training log (the one with ``loss``) also gets the per-loss means
        and task weights since the last one, and the meta step's statistics."""
        if "loss" in logs:  # evaluation logs carry eval_loss, the end-of-training summary train_loss
            logs = {**logs, **self.meta.pop_metrics()}
        super().log(logs, *args, **kwargs)

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> EvalLoopOutput:
        """The Trainer's evaluation loop, plus ``<prefix>_loss/<name>``: each loss's mean over the batches."""
        self._eval_losses = []
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._eval_losses:
            mean = torch.stack(self._eval_losses).mean(0).tolist()
            assert output.metrics is not None  # the Trainer's evaluation_loop always returns its metrics dict
            output.metrics.update({f"{metric_key_prefix}_loss/{n}": v for n, v in zip(self.meta.loss_names, mean)})
            self._eval_losses = []
        return output

    # ------------------------------------------------------------------ checkpoints

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """``transformers.Trainer.train``; resuming also restores the meta-learner from the checkpoint's
        ``meltr.pt`` (``True``: the last checkpoint in ``args.output_dir``).

        Raises:
            FileNotFoundError: The checkpoint folder has no meta state for this process (it was not
                written by a :class:`MeltrTrainer`, or by fewer processes).
            ValueError: The checkpoint was written by another number of processes (each process's meta
                buffer holds its own batches, so they cannot be mapped).
        """
        if resume_from_checkpoint is True and self.args.output_dir is not None and os.path.isdir(self.args.output_dir):
            # Resolved here as the Trainer does it, to know the folder; with none found, the Trainer raises.
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or True
        self._resume = None
        if isinstance(resume_from_checkpoint, (str, os.PathLike)):
            # Read and checked before the Trainer loads anything; applied in _begin_training. Every
            # process raises on a mismatch (its own file missing, or the count in it), so none waits
            # for the others at a collective.
            path = _meta_file(os.fspath(resume_from_checkpoint), self.args.process_index)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{resume_from_checkpoint} has no {os.path.basename(path)}: it was not written by MeltrTrainer (with "
                    f"{self.args.world_size} processes), so the learned loss (combiner, meta optimiser, meta buffer) cannot be "
                    f"restored and the run would not continue exactly"
                )
            saved = load_checkpoint(path, map_location=self.meta.device)
            if int(saved["world_size"]) != self.args.world_size:
                raise ValueError(f"{path} was written by {saved['world_size']} processes and this run has {self.args.world_size}: "
                                 f"each process's meta buffer holds its own batches, so they cannot be mapped")
            self._resume = (path, saved)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial: Any, *args: Any, **kwargs: Any) -> None:
        # Written before the Trainer's files, so that a folder with trainer_state.json always has it.
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        save_checkpoint({"meta": self.meta.state_dict(), "global_step": self.state.global_step, "world_size": self.args.world_size},
                        _meta_file(folder, self.args.process_index))
        # untyped_calls_exclude does not reach a super() call of the unannotated Trainer method
        super()._save_checkpoint(model, trial, *args, **kwargs)  # type: ignore[no-untyped-call]


def _use_non_reentrant_checkpointing(args: TrainingArguments) -> None:
    """Makes ``args.gradient_checkpointing`` use non-reentrant checkpointing, which the meta step can
    differentiate through (forward-mode AD and double backward); the Trainer's default is reentrant.

    Raises:
        LossContractError: ``use_reentrant=True`` was asked for explicitly.
    """
    if not args.gradient_checkpointing:
        return
    given = args.gradient_checkpointing_kwargs or {}
    if isinstance(given, str):  # TrainingArguments parses a JSON string into a dict in __post_init__
        raise TypeError(f"gradient_checkpointing_kwargs must be a dict (or JSON object text when the arguments are built), got {given!r}")
    kwargs = dict(given)
    if "use_reentrant" not in kwargs:
        args.gradient_checkpointing_kwargs = {**kwargs, "use_reentrant": False}
        log.info("gradient checkpointing: use_reentrant=False (the meta step differentiates through the checkpointed layers)")
    elif kwargs["use_reentrant"]:
        raise LossContractError(
            "gradient_checkpointing_kwargs={'use_reentrant': True}: reentrant checkpointing supports neither the forward-mode "
            "AD nor the double backward of the meta step; drop use_reentrant or set it to False"
        )
