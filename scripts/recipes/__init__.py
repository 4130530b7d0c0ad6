"""Run recipes: one module per backbone with a ``RunConfig`` dataclass and ``build(cfg, rank, world)``.

``scripts.train`` and ``scripts.evaluate`` pick the recipe from the run YAML's ``backbone`` key.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["RECIPES", "recipe"]

RECIPES: dict[str, str] = {
    "univl": "scripts.recipes.univl",
    "allinone": "scripts.recipes.allinone",
    "violet": "scripts.recipes.violet",
}


def recipe(backbone: str) -> ModuleType:
    """The recipe module of ``backbone``; an unknown name lists the known ones."""
    if backbone not in RECIPES:
        raise KeyError(f"unknown backbone {backbone!r} in the run config; known: {', '.join(sorted(RECIPES))}")
    return importlib.import_module(RECIPES[backbone])
