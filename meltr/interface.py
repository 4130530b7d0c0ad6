"""The one contract between a backbone and MELTR: ``forward(batch)`` returns a dict of named losses.

Any ``nn.Module`` with a ``loss_names`` tuple, a ``target_loss`` name and a ``forward`` that returns
exactly those losses (finite 0-dim tensors, in that order) can be fine-tuned by :class:`meltr.Trainer`.
The position of a loss in ``loss_names`` is its task index in the loss transformer. The errors raised when
a model's losses or a combiner break this contract live here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "LOSSES_KEY",
    "LossDict",
    "MultiLossModel",
    "LossContractError",
    "CombinerTrainingError",
    "NonFiniteError",
    "NonFinitePolicy",
    "Combiner",
    "check_losses",
    "losses_of",
    "stack_losses",
    "as_full_precision",
]

LossDict = dict[str, Tensor]

LOSSES_KEY = "losses"
"""A model that returns more than its losses puts them under this key (or attribute) of its output::

    return {"losses": {"task": l0, "aux": l1}, "logits": logits}
"""


@runtime_checkable
class MultiLossModel(Protocol):
    """What the trainer needs from a backbone.

    Attributes:
        loss_names: Names of the losses ``forward`` returns, fixed at construction. The order is the
            task-embedding index of the loss transformer.
        target_loss: The fine-tuning task loss, one of ``loss_names``: the loss the meta step optimises.
    """

    loss_names: tuple[str, ...]
    target_loss: str

    def forward(self, batch: Mapping[str, Any]) -> LossDict | Mapping[str, Any]: ...


class LossContractError(ValueError):
    """A model returned losses that break the :class:`MultiLossModel` contract."""


class CombinerTrainingError(RuntimeError):
    """The combiner cannot train the backbone (e.g. its output ignores the losses)."""


NonFinitePolicy = Literal["raise", "skip"]
"""What to do with a non-finite combined loss, gradient norm or hypergradient: ``raise`` a
:class:`NonFiniteError` (the default), or ``skip`` the update (no optimiser step, gradients dropped)
and count it, as AMP's ``GradScaler`` skips a step with inf/NaN gradients."""


class NonFiniteError(FloatingPointError):
    """A non-finite combined loss, gradient norm or hypergradient, caught before any optimiser step
    (so nothing poisoned reaches the weights or a checkpoint); the message names the step, the loss
    values and the combiner."""


def _model_name(model: object) -> str:
    return model if isinstance(model, str) else type(model).__name__


def losses_of(output: Any, model: object = "model") -> Any:
    """The named losses inside one model output.

    A model returns either a dict of exactly its named losses, or a mapping (or an object such as a
    Hugging Face ``ModelOutput``) whose ``losses`` entry holds that dict beside anything else (logits,
    hidden states). Anything else is returned unchanged for :func:`check_losses` to reject.

    Args:
        output: What ``model(batch)`` returned.
        model: The model (or its name), named in errors.
    """
    inner = output.get(LOSSES_KEY) if isinstance(output, Mapping) else getattr(output, LOSSES_KEY, None)
    if isinstance(inner, Mapping):
        return inner
    if output is None:
        raise LossContractError(f"{_model_name(model)}.forward returned None, expected a dict of named losses")
    return output


def check_losses(model: object, losses: object, loss_names: tuple[str, ...] | None = None) -> None:
    """Checks one ``forward`` output against the contract and raises a precise error.

    Args:
        model: The model that produced ``losses``, or its name (named in the error).
        losses: The output of ``model(batch)``.
        loss_names: Expected names; defaults to ``model.loss_names``.

    Raises:
        LossContractError: naming the model and every missing, extra, non-scalar or non-finite loss.
    """
    name = _model_name(model)
    expected = tuple(loss_names if loss_names is not None else getattr(model, "loss_names", ()))
    if not expected:
        raise LossContractError(f"{name}: no loss_names declared (a MultiLossModel needs loss_names)")
    if not isinstance(losses, Mapping):
        raise LossContractError(
            f"{name}.forward returned {type(losses).__name__}, expected a dict of named losses {expected} "
            f"(or a dict with a {LOSSES_KEY!r} entry holding them beside other outputs)"
        )
    problems: list[str] = []
    missing = [k for k in expected if k not in losses]
    extra = [k for k in losses if k not in expected]
    if missing:
        problems.append(f"missing {missing}")
    if extra:
        problems.append(f"extra {extra} (return other outputs under a {LOSSES_KEY!r} entry: {{{LOSSES_KEY!r}: losses, 'logits': ...}})")
    not_tensor = [k for k in expected if k in losses and not isinstance(losses[k], Tensor)]
    if not_tensor:
        problems.append(f"not tensors {not_tensor}")
    tensors = {k: v for k, v in losses.items() if k in expected and isinstance(v, Tensor)}
    non_scalar = [f"{k}{tuple(v.shape)}" for k, v in tensors.items() if v.dim() != 0]
    if non_scalar:
        problems.append(f"non-scalar {non_scalar}")
    scalars = [(k, v) for k, v in tensors.items() if v.dim() == 0]
    if scalars:
        # One device sync for all losses instead of one per loss.
        finite = torch.isfinite(torch.stack([v.detach().float() for _, v in scalars])).tolist()
        bad = [f"{k}={v.item():g}" for (k, v), ok in zip(scalars, finite) if not ok]
        if bad:
            problems.append(f"non-finite {bad}")
    if problems:
        raise LossContractError(f"{name}.forward losses break the contract: {'; '.join(problems)}")


def stack_losses(losses: Mapping[str, Tensor], loss_names: tuple[str, ...]) -> Tensor:
    """Stacks named 0-dim losses into a vector ``[T]`` in ``loss_names`` order, at least float32
    (half-precision losses from autocast are promoted so the combiner runs in full precision)."""
    return torch.stack([as_full_precision(losses[k]) for k in loss_names])


def as_full_precision(x: Tensor) -> Tensor:
    """``x`` promoted to at least float32 (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class Combiner(torch.nn.Module):
    """Base class of every loss combiner: maps a loss vector ``[..., T]`` to one loss ``[...]``.

    Subclasses set ``loss_names`` (task order) and ``learnable`` (``True`` when the combiner has meta
    parameters trained by the bi-level meta step, as MELTR and the learned linear weights do).
    """

    loss_names: tuple[str, ...]
    learnable: bool = False

    def task_weights(self, losses: Tensor) -> Tensor:
        """Each task's weight ``a_t = d combiner / d l_t`` at ``losses``.

        Args:
            losses: ``[T]`` or ``[B, T]`` loss values (detached inside).

        Returns:
            ``[T]`` or ``[B, T]``: the gradient of the combined loss with respect to each input loss.
            For the multi-task sum this is all ones; for MELTR it depends on the losses.
        """
        with torch.enable_grad():
            x = as_full_precision(losses.detach()).requires_grad_(True)
            out = self(x)
            if not out.requires_grad:
                return torch.zeros_like(x)
            (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        # None: the output ignores the losses (e.g. a TE-only MELTR), so every weight is 0.
        return torch.zeros_like(x) if grad is None else grad
