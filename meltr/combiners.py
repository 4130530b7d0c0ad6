"""Loss combiners behind one interface: MELTR and the baselines the paper compares against.

=========  ==========================================================  ==========
name       combined loss                                                learnable
=========  ==========================================================  ==========
meltr      ``LossTransformer(l)`` (paper eq. 4-5)                      yes
single     ``l[target_loss]`` (fine-tuning on the target task only)    no
sum        ``sum_t l_t`` (multi-task learning, "MTL")                  no
fixed      ``sum_t c_t l_t`` with given coefficients (paper Table 7)   no
linear     ``sum_t w_t l_t`` with learned ``w`` (Appendix D)           yes
=========  ==========================================================  ==========

Learnable combiners are trained by the same bi-level meta step as MELTR (see :mod:`meltr.hypergrad`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from meltr.deprecation import renamed_kwargs
from meltr.interface import Combiner
from meltr.loss_transformer import LossTransformer, LossTransformerConfig, preset
from meltr.registry import Registry

__all__ = [
    "CombinerConfig",
    "COMBINERS",
    "build_combiner",
    "SingleTask",
    "SumCombiner",
    "FixedCombiner",
    "LinearCombiner",
]


@dataclass
class CombinerConfig:
    """Which combiner to use and its options."""

    name: str = "meltr"  # one of COMBINERS.names(): meltr, single, sum, fixed, linear
    preset: str | None = None  # loss-transformer preset (univl, violet_retrieval, violet_qa, allinone, paper)
    meltr: LossTransformerConfig = field(default_factory=LossTransformerConfig)  # used when preset is None
    coefficients: dict[str, float] = field(default_factory=dict)  # "fixed": coefficient per loss name
    linear_init: float = 1.0  # "linear": initial weight of every loss


CombinerFactory = Callable[[CombinerConfig, Sequence[str], str], Combiner]
"""``factory(cfg, loss_names, target_loss) -> Combiner``: what :data:`COMBINERS` holds."""
COMBINERS: Registry[CombinerFactory] = Registry("combiner")


def _check_width(losses: Tensor, t: int, who: str) -> None:
    if losses.shape[-1] != t:
        raise ValueError(f"{who} expects {t} losses in the last axis, got shape {tuple(losses.shape)}")


class SingleTask(Combiner):
    """Returns the target loss only: plain fine-tuning."""

    @renamed_kwargs(primary="target_loss")
    def __init__(self, loss_names: Sequence[str], target_loss: str) -> None:
        super().__init__()
        self.loss_names = tuple(loss_names)
        self.index = self.loss_names.index(target_loss)

    def forward(self, losses: Tensor) -> Tensor:
        _check_width(losses, len(self.loss_names), "SingleTask")
        return losses[..., self.index]


class FixedCombiner(Combiner):
    """``sum_t c_t l_t`` with constant coefficients (a buffer, so it is saved but never trained)."""

    coefficients: Tensor

    def __init__(self, loss_names: Sequence[str], coefficients: Sequence[float]) -> None:
        super().__init__()
        self.loss_names = tuple(loss_names)
        if len(coefficients) != len(self.loss_names):
            raise ValueError(f"{len(coefficients)} coefficients for {len(self.loss_names)} losses")
        self.register_buffer("coefficients", torch.tensor([float(c) for c in coefficients]))

    def forward(self, losses: Tensor) -> Tensor:
        _check_width(losses, len(self.loss_names), type(self).__name__)
        return (losses * self.coefficients.to(losses.dtype)).sum(-1)


class SumCombiner(FixedCombiner):
    """Multi-task sum: every coefficient is 1."""

    def __init__(self, loss_names: Sequence[str]) -> None:
        super().__init__(loss_names, [1.0] * len(loss_names))


class LinearCombiner(Combiner):
    """Learned linear weights ``sum_t w_t l_t`` (Appendix D "Linear"), trained by the meta step."""

    learnable = True

    def __init__(self, loss_names: Sequence[str], init: float = 1.0) -> None:
        super().__init__()
        self.loss_names = tuple(loss_names)
        self.weight = nn.Parameter(torch.full((len(self.loss_names),), float(init)))

    def forward(self, losses: Tensor) -> Tensor:
        _check_width(losses, len(self.loss_names), "LinearCombiner")
        return (losses * self.weight.to(losses.dtype)).sum(-1)


@COMBINERS.register("meltr")
def _meltr(cfg: CombinerConfig, loss_names: Sequence[str], target_loss: str) -> Combiner:
    mcfg: LossTransformerConfig = preset(cfg.preset) if cfg.preset else cfg.meltr
    return LossTransformer(mcfg, loss_names)


@COMBINERS.register("single")
def _single(cfg: CombinerConfig, loss_names: Sequence[str], target_loss: str) -> Combiner:
    return SingleTask(loss_names, target_loss)


@COMBINERS.register("sum")
def _sum(cfg: CombinerConfig, loss_names: Sequence[str], target_loss: str) -> Combiner:
    return SumCombiner(loss_names)


@COMBINERS.register("fixed")
def _fixed(cfg: CombinerConfig, loss_names: Sequence[str], target_loss: str) -> Combiner:
    unknown = sorted(set(cfg.coefficients) - set(loss_names))
    if unknown:
        raise ValueError(f"fixed combiner: coefficients for unknown losses {unknown}; losses are {tuple(loss_names)}")
    missing = [n for n in loss_names if n not in cfg.coefficients]
    if missing:
        raise ValueError(f"fixed combiner: no coefficient for {missing} (give 0 to drop a loss)")
    return FixedCombiner(loss_names, [cfg.coefficients[n] for n in loss_names])


@COMBINERS.register("linear")
def _linear(cfg: CombinerConfig, loss_names: Sequence[str], target_loss: str) -> Combiner:
    return LinearCombiner(loss_names, cfg.linear_init)


@renamed_kwargs(primary="target_loss")
def build_combiner(cfg: CombinerConfig, loss_names: Sequence[str], target_loss: str) -> Combiner:
    """Builds the combiner ``cfg.name`` for a model's ``loss_names`` and its ``target_loss``."""
    if target_loss not in loss_names:
        raise ValueError(f"target loss {target_loss!r} is not one of the model's losses {tuple(loss_names)}")
    return COMBINERS.get(cfg.name)(cfg, tuple(loss_names), target_loss)
