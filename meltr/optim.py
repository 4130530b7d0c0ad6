"""Optimisers and learning-rate schedules for the backbone and for the combiner (meta parameters)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["OptimConfig", "build_optimizer", "build_scheduler", "param_groups"]


@dataclass
class OptimConfig:
    """One optimiser with its schedule and gradient clipping."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"  # adam = coupled L2 decay, adamw = decoupled
    lr: float = 3e-5  # peak learning rate (paper A.3: 3e-5 backbone, 1e-4 MELTR)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas (VIOLET / All-in-one use (0.9, 0.98))
    eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.0  # weight decay
    no_decay_bias_norm: bool = True  # no decay on biases and 1-d (norm) parameters, as UniVL/All-in-one
    momentum: float = 0.9  # sgd only
    schedule: Literal["constant", "linear"] = "linear"  # linear: warm-up then linear decay to 0
    warmup_steps: int = 0  # linear warm-up steps (takes precedence over warmup_ratio when > 0)
    warmup_ratio: float = 0.0  # warm-up as a fraction of the total steps
    clip_grad_norm: float | None = None  # global gradient-norm clipping; None = off

    def validate(self, where: str = "") -> None:
        """Raises ValueError naming the field (``<where>.<field>``) of the first invalid value.

        ``where`` is the config path of this optimiser (e.g. ``meta.optim``); empty, the bare field is
        named (:func:`meltr.config.load` adds the path itself). Each check is written so that NaN, which
        fails every comparison, is refused too.
        """
        at = f"{where}." if where else ""
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{at}lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"{at}weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"{at}eps must be a finite number > 0, got {self.eps}")
        if self.warmup_steps < 0:
            raise ValueError(f"{at}warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"{at}warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.clip_grad_norm is not None and not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ValueError(f"{at}clip_grad_norm must be a finite number > 0 or null, got {self.clip_grad_norm}")


def param_groups(named: Iterable[tuple[str, nn.Parameter]], cfg: OptimConfig) -> list[dict[str, Any]]:
    """Splits parameters into decayed (>= 2-d weights) and non-decayed (biases, norms) groups."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if cfg.no_decay_bias_norm and (p.dim() < 2 or name.endswith(".bias")) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(named: Iterable[tuple[str, nn.Parameter]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Builds the optimiser ``cfg.name`` over the trainable parameters in ``named``."""
    cfg.validate()
    groups = param_groups(named, cfg)
    if not groups:
        raise ValueError("no trainable parameters for the optimiser")
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"unknown optimiser {cfg.name!r}; valid: adam, adamw, sgd")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> LambdaLR:
    """Constant, or linear warm-up then linear decay to 0 at ``total_steps`` (stepped once per update)."""
    warmup = cfg.warmup_steps or int(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)
