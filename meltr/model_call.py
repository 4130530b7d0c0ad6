"""How MELTR calls a training loop's model: the call itself, the wrappers it sees through, the losses the
model declares, and what a model's autograd cannot do for the meta step.

The meta step evaluates the model at other weights with ``torch.func.functional_call``, so it needs the
bare module under data-parallel wrappers (:func:`unwrap_model`), the loop's way of calling it on a batch
as a module (:class:`BoundCall`), and, when a model's operation lacks forward-mode AD or a double
backward, an error that says which mode to use instead (:func:`explain_meta_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from meltr.interface import LossContractError

__all__ = ["ModelCall", "call_batch", "BoundCall", "unwrap_model", "to_device", "model_loss_names", "explain_meta_error"]

ModelCall = Callable[[nn.Module, Any], Any]
"""How a loop calls its model on a batch: ``call(model, batch) -> output`` (default ``model(batch)``;
Hugging Face models take ``model(**batch)``). The output holds the named losses (see
:func:`meltr.interface.losses_of`)."""

_DATA_PARALLEL = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module under data-parallel wrappers (``DistributedDataParallel``, ``DataParallel``), also
    when ``torch.compile`` wrapped one (``torch.compile(DDP(model))``).

    The meta step evaluates the model functionally; DDP's reducer must not see those passes. A compiled
    model that wraps no data-parallel module is kept: the meta step's forwards run its compiled graphs
    (``functional_call`` over its ``_orig_mod.`` parameter names).
    """
    while True:
        compiled_inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(compiled_inner, _DATA_PARALLEL):
            model = compiled_inner
        elif isinstance(model, _DATA_PARALLEL):
            model = model.module
        else:
            return model


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples, nested) moved to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def call_batch(model: nn.Module, batch: Any) -> Any:
    """The default :data:`ModelCall`: ``model(batch)``."""
    return model(batch)


class BoundCall(nn.Module):
    """``call(model, batch)`` as a module, so ``functional_call`` can swap the model's parameters."""

    def __init__(self, model: nn.Module, call: ModelCall) -> None:
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, batch: Any) -> Any:
        return self.call(self.model, batch)


def model_loss_names(model: nn.Module) -> tuple[tuple[str, ...], str]:
    """``(model.loss_names, model.target_loss)``, or a :class:`LossContractError` saying what to declare."""
    name = type(model).__name__
    names = getattr(model, "loss_names", None)
    target = getattr(model, "target_loss", None)
    if not names or isinstance(names, str):
        raise LossContractError(
            f"{name} has no loss_names: declare `loss_names = ('task', 'aux', ...)` on the model (the order is the "
            f"loss transformer's task index), or pass loss_names= to MetaLearner"
        )
    if target is None:
        raise LossContractError(f"{name} has no target_loss: declare `target_loss = '<one of {tuple(names)}>'`, or pass target_loss=")
    return tuple(names), str(target)


def explain_meta_error(model: nn.Module, mode: str, exc: BaseException) -> BaseException:
    """The meta step's failure ``exc`` as a :class:`LossContractError` saying what to change, when the
    model cannot support the mode (an operation without forward-mode AD / double backward, reentrant
    checkpointing); otherwise ``exc`` itself."""
    if isinstance(exc, NotImplementedError) or "forward AD" in str(exc) or "derivative for" in str(exc):
        return LossContractError(
            f"the meta step's mode {mode!r} needs forward-mode AD or a double backward through "
            f"{type(model).__name__}, which one of its operations lacks ({str(exc).splitlines()[0][:160]}): "
            f"use a first-order mode, meta.hypergrad.mode: vjp (exact) or fd")
    if isinstance(exc, RuntimeError) and _reentrant_checkpointing(model, exc):
        return LossContractError(
            f"{type(model).__name__} uses reentrant gradient checkpointing, which supports neither the "
            f"forward-mode AD nor the double backward of the meta step: use non-reentrant checkpointing "
            f"(torch.utils.checkpoint.checkpoint(..., use_reentrant=False); Hugging Face: "
            f"model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={{'use_reentrant': False}}))")
    return exc


def _reentrant_checkpointing(model: nn.Module, exc: RuntimeError) -> bool:
    """Whether ``exc`` comes from reentrant activation checkpointing inside ``model``: its autograd
    Function has no forward-mode rule (``setup_context``) and detaches its inputs (no double backward)."""
    for module in model.modules():  # Hugging Face models keep a functools.partial of checkpoint here
        fn = getattr(module, "_gradient_checkpointing_func", None)
        if fn is not None and getattr(module, "gradient_checkpointing", False):
            if getattr(fn, "keywords", {}).get("use_reentrant", True):
                return True
    text = str(exc)
    return "setup_context" in text or "CheckpointFunction" in text
