"""Full-size VIOLET state-dict layouts against the official ``keys_shapes.json`` (built on the meta device).

Every model the fixture lists is built at full size (Video Swin-S, bert-base) and must have exactly the
official keys, in the official ``state_dict()`` order, with the listed shapes, dtypes and kinds (the 24
``relative_position_index`` buffers), the same tensor behind the tied alias, and the same number of unique
parameters. The two MELTR auxiliary nets of the fork are checked against :class:`meltr.LossTransformer`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backbones.violet import Violet, VioletConfig
from meltr.loss_transformer import LossTransformer, preset
from tests.golden._violet import load_keys_shapes

# keys_shapes.json model -> how we build it.
CONFIGS: dict[str, dict[str, Any]] = {
    "retrieval": {"task": "retrieval"},
    "pretrain_official": {"task": "retrieval"},  # same 568 keys as the fork's retrieval model
    "qaoe_1000": {"task": "qa_oe", "n_answers": 1000},
    "qamc": {"task": "qa_mc"},
    "eval_retrieval": {"task": "retrieval", "losses": ("vtm",)},  # base + fc only
}
MELTR_NETS = {"meltr_aux_retrieval": ("violet_retrieval", 3), "meltr_aux_qa": ("violet_qa", 4)}


@pytest.fixture(scope="module")
def keys_shapes() -> dict[str, Any]:
    return load_keys_shapes()


def _build(name: str) -> Violet:
    with torch.device("meta"):
        return Violet(VioletConfig.base(**CONFIGS[name]))


def test_fixture_lists_the_expected_models(keys_shapes: dict[str, Any]) -> None:
    assert set(keys_shapes) - {"_meta"} == set(CONFIGS) | set(MELTR_NETS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_state_dict_keys_shapes_and_kinds_match_official(name: str, keys_shapes: dict[str, Any]) -> None:
    entry = keys_shapes[name]
    model = _build(name)
    state = model.state_dict(keep_vars=True)
    expected = [e["name"] for e in entry["state_dict"]]
    assert len(state) == entry["num_state_dict_entries"] == len(expected)
    assert set(state) == set(expected), (f"missing {sorted(set(expected) - set(state))[:10]}, "
                                         f"extra {sorted(set(state) - set(expected))[:10]}")
    assert list(state) == expected, "state_dict order differs from the official registration order"
    buffers = {n for n, _ in model.named_buffers()}
    wrong = [(e["name"], tuple(state[e["name"]].shape), tuple(e["shape"]), str(state[e["name"]].dtype), e["dtype"])
             for e in entry["state_dict"]
             if tuple(state[e["name"]].shape) != tuple(e["shape"])
             or str(state[e["name"]].dtype).removeprefix("torch.") != e["dtype"]
             or (e["name"] in buffers) != (e["kind"] == "buffer")]
    assert not wrong, f"(key, our shape, official shape, our dtype, official dtype): {wrong[:10]}"
    assert sum(p.numel() for p in model.parameters()) == entry["num_unique_parameters"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tied_keys_share_one_tensor_and_nothing_else_is_shared(name: str, keys_shapes: dict[str, Any]) -> None:
    """Meta tensors have no storage, so tying is checked by Parameter identity."""
    state = _build(name).state_dict(keep_vars=True)
    tied = {e["name"]: e["tied_to"] for e in keys_shapes[name]["state_dict"] if e["tied_to"]}
    for alias, owner in tied.items():
        assert state[alias] is state[owner], f"{alias} is not the same tensor as {owner}"
    owners = [v for k, v in state.items() if k not in tied]
    assert len({id(v) for v in owners}) == len(owners)


@pytest.mark.parametrize("name", sorted(MELTR_NETS))
def test_meltr_auxiliary_nets_match_loss_transformer_presets(name: str, keys_shapes: dict[str, Any]) -> None:
    preset_name, tasks = MELTR_NETS[name]
    exported = LossTransformer(preset(preset_name, num_tasks=tasks)).to_official()
    entry = keys_shapes[name]
    assert [(k, list(v.shape)) for k, v in exported.items()] == [(e["name"], e["shape"]) for e in entry["state_dict"]]
    assert sum(v.numel() for v in exported.values()) == entry["num_unique_parameters"]
