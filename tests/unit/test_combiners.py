"""Combiners against their definitions, and the registry's errors."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from meltr.combiners import COMBINERS, CombinerConfig, SingleTask, build_combiner
from meltr.registry import Registry, RegistryError

NAMES = ("a", "b", "c")


def test_registry_lists_every_combiner() -> None:
    assert COMBINERS.names() == ("fixed", "linear", "meltr", "single", "sum")


@pytest.mark.parametrize(
    "cfg,expected",
    [
        (CombinerConfig(name="single"), lambda l: l[..., 1]),
        (CombinerConfig(name="sum"), lambda l: l.sum(-1)),
        (CombinerConfig(name="fixed", coefficients={"a": 0.0, "b": 1.0, "c": 8.0}), lambda l: l[..., 1] + 8 * l[..., 2]),
        (CombinerConfig(name="linear", linear_init=2.0), lambda l: 2 * l.sum(-1)),
    ],
)
def test_baselines_match_their_definitions(cfg: CombinerConfig, expected) -> None:
    comb = build_combiner(cfg, NAMES, "b")
    losses = torch.tensor([[0.5, 1.5, 2.0], [1.0, 0.0, 3.0]])
    torch.testing.assert_close(comb(losses), expected(losses))
    torch.testing.assert_close(comb(losses[0]), expected(losses[0]))
    assert comb.learnable == (cfg.name == "linear")
    # a_t of a linear combination is its coefficient vector
    a = comb.task_weights(losses[0])
    coef = torch.autograd.functional.jacobian(expected, losses[0])
    torch.testing.assert_close(a, coef)


def test_fixed_needs_every_coefficient_and_no_unknown_ones() -> None:
    with pytest.raises(ValueError, match=r"no coefficient for \['c'\]"):
        build_combiner(CombinerConfig(name="fixed", coefficients={"a": 1.0, "b": 1.0}), NAMES, "a")
    with pytest.raises(ValueError, match=r"unknown losses \['z'\]"):
        build_combiner(CombinerConfig(name="fixed", coefficients={"a": 1.0, "b": 1.0, "c": 1.0, "z": 1.0}), NAMES, "a")


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(RegistryError, match="valid names: fixed, linear, meltr, single, sum"):
        build_combiner(CombinerConfig(name="mean"), NAMES, "a")
    with pytest.raises(ValueError, match="target loss 'z'"):
        build_combiner(CombinerConfig(name="sum"), NAMES, "z")


def test_registry_refuses_duplicates() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("x")(1)
    with pytest.raises(RegistryError, match="thing 'x' is already registered"):
        reg.register("x")(2)
    assert "x" in reg and reg.get("x") == 1


def test_meltr_preset_sizes_apply() -> None:
    comb = build_combiner(CombinerConfig(name="meltr", preset="allinone"), ("mlm", "ind_itc"), "ind_itc")
    assert comb.cfg.hidden_dim == 128 and comb.cfg.init == "normal" and comb.num_tasks == 2


def test_the_old_module_name_is_an_alias_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "meltr.baselines", raising=False)  # a fresh import warns again
    with pytest.warns(DeprecationWarning, match="'meltr.baselines' is renamed 'meltr.combiners'"):
        old = importlib.import_module("meltr.baselines")
    assert (old.build_combiner, old.COMBINERS, old.SingleTask) == (build_combiner, COMBINERS, SingleTask)


def test_the_old_primary_keyword_still_builds_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="build_combiner: 'primary=' is renamed 'target_loss='"):
        single = build_combiner(CombinerConfig(name="single"), NAMES, primary="b")
    assert single(torch.tensor([1.0, 2.0, 3.0])) == 2.0
