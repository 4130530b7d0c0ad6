"""One parse of a run's config: the YAML, its overlays and the ``--set`` overrides, then the recipe's dataclass.

    recipe_mod, cfg = load_run("configs/univl/mosi.yaml", overlays=["configs/tiny/univl.yaml"],
                               overrides=["trainer.epochs=1"])

The run YAML is read once into a dict; each overlay (a partial run YAML, e.g. ``configs/tiny/<backbone>.yaml``:
the settings of a tiny CPU run) is merged over it, key by key, in order; the ``--set`` overrides are applied
last (:func:`meltr.config.apply_overrides`). The ``backbone`` key of that one dict picks the recipe, and
:func:`meltr.config.from_dict` builds the recipe's ``RunConfig`` from the same dict, strictly. An error names
the file that set the offending key: the run YAML, the overlay, or the ``--set`` override that set it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any


from meltr.config import ConfigError, apply_overrides, from_dict, read_yaml
from scripts.recipes import RECIPES, Recipe, recipe

__all__ = ["load_run", "merge", "resolve"]


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` merged over it: mappings merge key by key, any other value replaces.

    Unlike a ``--set`` of a mapping (which replaces it), an overlay's ``model: {size: tiny}`` changes only
    ``model.size``. Neither argument is modified.
    """
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of the non-mapping values of ``data`` (what an overlay sets)."""
    keys: list[str] = []
    for k, v in data.items():
        dotted = f"{prefix}.{k}" if prefix else str(k)
        keys += _leaves(v, dotted) if isinstance(v, Mapping) and v else [dotted]
    return keys


def _touches(key: str, dotted: str) -> bool:
    """Whether setting ``dotted`` set ``key`` (the same key, a parent of it, or a key below it)."""
    return key == dotted or key.startswith((dotted + ".", dotted + "[")) or dotted.startswith(key + ".")


def resolve(config: str | os.PathLike[str], overlays: Sequence[str | os.PathLike[str]] = (),
            overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The run's config as one plain dict: ``config``, each overlay merged over it in order, then ``overrides``."""
    data = read_yaml(config)
    for path in overlays:
        data = merge(data, read_yaml(path))
    return apply_overrides(data, overrides, str(config))


def load_run(config: str | os.PathLike[str], overlays: Sequence[str | os.PathLike[str]] = (),
             overrides: Sequence[str] = ()) -> tuple[Recipe, Any]:
    """The recipe and the ``RunConfig`` of a run, from one parse (:func:`resolve`) of its files and overrides.

    Args:
        config: The run YAML (``configs/<backbone>/<row>.yaml``).
        overlays: Partial run YAMLs merged over it in order (e.g. ``configs/tiny/<backbone>.yaml``).
        overrides: ``dotted.key=value`` strings applied last (``--set``).

    Returns:
        ``(recipe module, RunConfig instance)``; the recipe is the one named by the ``backbone`` key.

    Raises:
        ConfigError: A file cannot be read, ``backbone`` is missing or unknown, or the config does not fit the
            recipe's ``RunConfig``; the message names the file (or the override) that set the offending key.
    """
    source = str(config)
    data = resolve(config, overlays, overrides)
    backbone = data.get("backbone")
    if backbone not in RECIPES:
        what = "missing (the recipe selector" if backbone is None else f"unknown value {backbone!r} (known"
        raise _blame(ConfigError(f"{what}: {', '.join(sorted(RECIPES))})", source=source, key="backbone"),
                     overlays, overrides)
    mod = recipe(str(backbone))
    try:
        return mod, from_dict(data, mod.RunConfig, source=source)
    except ConfigError as err:
        raise _blame(err, overlays, overrides) from err.__cause__


def _blame(err: ConfigError, overlays: Sequence[str | os.PathLike[str]], overrides: Sequence[str]) -> ConfigError:
    """``err`` naming what set its key: the last ``--set`` override, else the last overlay, else the run YAML."""
    if not err.key or err.override:
        return err
    for override in reversed(overrides):
        if _touches(err.key, override.partition("=")[0].strip()):
            return ConfigError(err.detail, source=err.source, key=err.key, override=override)
    for path in reversed(overlays):
        if any(_touches(err.key, dotted) for dotted in _leaves(read_yaml(path))):
            return ConfigError(err.detail, source=str(path), key=err.key)
    return err
