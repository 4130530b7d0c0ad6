"""UniVL's official pretrained checkpoint and the two entry points to it: load, and export back."""

from __future__ import annotations

import os
from typing import Mapping

from torch import Tensor, nn

from backbones.common import loading
from backbones.univl.convert import LAYOUTS

__all__ = ["PRETRAINED", "load_official", "to_official"]

PRETRAINED = loading.PretrainedSpec(
    filename="univl.pretrained.bin",
    layout="pretrain_stage_two",
    source="microsoft/UniVL, release v0 (see its README, 'Pretrained weights')",
    sha256=None,
    notes="Stage-two pre-training on HowTo100M. The 444-key layout is taken from keys_shapes.json (built by "
    "running the official code); the weights themselves were not downloaded here, so no digest is recorded.",
)


def load_official(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor]) -> loading.LoadReport:
    """Loads an official UniVL checkpoint (any of :data:`~backbones.univl.convert.LAYOUTS`) into ``model``.

    Returns:
        The load report (loaded / ignored / left at init). Anything outside the layout's allowlists
        raises :class:`~backbones.common.loading.CheckpointMismatchError` naming the file and keys.
    """
    return loading.load_official(model, source, LAYOUTS)


def to_official(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights under official names (the identity table, tied aliases included)."""
    return loading.to_official(model, LAYOUTS[-1])
