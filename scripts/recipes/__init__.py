"""Run recipes: one module per backbone, each a :class:`Recipe`.

A recipe maps a run YAML onto its ``RunConfig`` dataclass and builds what a run needs (:class:`RunParts`).
``scripts.train`` and ``scripts.evaluate`` pick the recipe from the run YAML's ``backbone`` key. A new
backbone is one module implementing :class:`Recipe` plus one line in :data:`RECIPES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from torch import nn
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["RECIPES", "Recipe", "RunParts", "recipe"]

RECIPES: dict[str, str] = {
    "univl": "scripts.recipes.univl",
    "allinone": "scripts.recipes.allinone",
    "violet": "scripts.recipes.violet",
}


@dataclass
class RunParts:
    """What a recipe builds for one run.

    Attributes:
        model: The backbone (an ``nn.Module`` with ``loss_names``, ``target_loss`` and a dict of losses).
        train_loader: The training batches of this rank.
        eval_fn: ``eval_fn(model) -> {metric: value}`` on the test data (the model as built, in eval mode).
        close: Releases what the run holds besides memory (e.g. the caption scorer's Java process).
    """

    model: nn.Module
    train_loader: DataLoader
    eval_fn: Callable[[Any], dict[str, float]]
    close: Callable[[], None] = field(default=lambda: None)


class Recipe(Protocol):
    """The contract of a recipe module (``scripts/recipes/<backbone>.py``)."""

    @property
    def RunConfig(self) -> type[DataclassInstance]:  # noqa: N802 - the dataclass the run YAML maps onto
        ...

    def build(self, cfg: Any, rank: int, world: int, *, load_init: bool = True) -> RunParts:
        """Model, loader and evaluation of a run; ``load_init=False`` skips the official weights."""
        ...

    def report(self, cfg: Any, metrics: dict[str, float]) -> str:
        """One line of the selected checkpoint's numbers as the paper reports them."""
        ...


def recipe(backbone: str) -> Recipe:
    """The recipe of ``backbone``; an unknown name lists the known ones."""
    if backbone not in RECIPES:
        raise KeyError(f"unknown backbone {backbone!r} in the run config; known: {', '.join(sorted(RECIPES))}")
    return cast(Recipe, importlib.import_module(RECIPES[backbone]))


if TYPE_CHECKING:  # the type checker verifies that every recipe module implements the protocol
    from scripts.recipes import allinone, univl, violet

    _RECIPES: tuple[Recipe, ...] = (univl, violet, allinone)
