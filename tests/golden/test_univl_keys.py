"""Full-size UniVL state-dict layouts against the official ``keys_shapes.json`` (built on the meta device).

For each official configuration the model is built in the matching layout and must have exactly the
listed keys, in the official ``state_dict()`` order, with the listed shapes and dtypes, the same number of
unique parameters, and the same tensor behind every tied alias. All five configurations are supported
(``pretrain_stage_one`` has the same modules as FT-Joint; its MIL-NCE loss is composed in the golden test).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backbones.common.bert import BertConfig
from backbones.univl import LOSS_NAMES, UniVL, UniVLConfig
from backbones.univl.config import LAYOUT_MODULES, LOSS_MODULES
from tests.golden._univl import load_keys_shapes

CONFIGS = ("retrieval_ft_joint", "retrieval_ft_align", "caption", "pretrain_stage_two", "pretrain_stage_one")


@pytest.fixture(scope="module")
def keys_shapes() -> dict[str, Any]:
    return load_keys_shapes()


def _build(name: str, task_config: dict[str, Any]) -> UniVL:
    """The full-size model for one official configuration, on the meta device (no memory, no init cost)."""
    task = "caption" if task_config.get("task_type") == "caption" else "retrieval"
    # The layout fixes the modules; one loss the layout can compute keeps the config valid.
    loss = "decoder" if "decoder" in LAYOUT_MODULES[name] else (
        "alignment" if "similarity_dense" in LAYOUT_MODULES[name] else "joint")
    cfg = UniVLConfig.base(
        task=task, layout=name, losses=(loss,), target_loss=loss,
        max_words=task_config["max_words"], max_frames=task_config["max_frames"], video_dim=task_config["video_dim"],
        text=BertConfig(num_hidden_layers=task_config["text_num_hidden_layers"]),
    )
    assert cfg.visual.num_hidden_layers == task_config["visual_num_hidden_layers"]
    assert cfg.cross.num_hidden_layers == task_config["cross_num_hidden_layers"]
    assert cfg.decoder.num_hidden_layers == task_config["decoder_num_hidden_layers"]
    with torch.device("meta"):
        return UniVL(cfg)


def test_fixture_lists_the_expected_configurations(keys_shapes: dict[str, Any]) -> None:
    assert set(keys_shapes) - {"_meta"} == set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_keys_and_shapes_match_official(name: str, keys_shapes: dict[str, Any]) -> None:
    entry = keys_shapes[name]
    model = _build(name, entry["task_config"])
    state = model.state_dict(keep_vars=True)
    expected = [(e["name"], tuple(e["shape"])) for e in entry["state_dict"]]
    assert len(state) == entry["num_state_dict_entries"] == len(expected)
    assert set(state) == {k for k, _ in expected}, (
        f"missing {sorted({k for k, _ in expected} - set(state))[:10]}, extra {sorted(set(state) - {k for k, _ in expected})[:10]}")
    assert list(state) == [k for k, _ in expected], "state_dict order differs from the official registration order"
    wrong = [(k, tuple(state[k].shape), s) for k, s in expected if tuple(state[k].shape) != s]
    assert not wrong, f"shape mismatches (key, ours, official): {wrong[:10]}"
    dtypes = {e["name"]: e["dtype"] for e in entry["state_dict"]}
    assert all(str(v.dtype).removeprefix("torch.") == dtypes[k] for k, v in state.items())
    assert all(e["kind"] == "parameter" for e in entry["state_dict"]) and not list(model.buffers())
    assert sum(p.numel() for p in model.parameters()) == entry["num_unique_parameters"]


@pytest.mark.parametrize("name", CONFIGS)
def test_tied_keys_share_one_parameter(name: str, keys_shapes: dict[str, Any]) -> None:
    """Meta tensors have no storage (no data_ptr), so tying is checked by Parameter identity."""
    entry = keys_shapes[name]
    state = _build(name, entry["task_config"]).state_dict(keep_vars=True)
    tied = {e["name"]: e["tied_to"] for e in entry["state_dict"] if e["tied_to"]}
    for alias, owner in tied.items():
        assert state[alias] is state[owner], f"{alias} is not the same Parameter as {owner}"
    # And nothing else is shared: every other key is its own Parameter.
    owners = [v for k, v in state.items() if k not in tied]
    assert len({id(v) for v in owners}) == len(owners)


def test_auto_layout_follows_the_active_losses() -> None:
    """'auto' builds what the losses need: all 8 MELTR losses → the stage-two set (MELTR's fork)."""
    def built(losses: tuple[str, ...], target: str) -> frozenset[str]:
        return UniVLConfig.tiny(losses=losses, target_loss=target).modules()

    assert built(LOSS_NAMES, "alignment") == frozenset(LAYOUT_MODULES["pretrain_stage_two"])
    assert built(("joint",), "joint") == frozenset(LAYOUT_MODULES["retrieval_ft_joint"])
    assert built(("alignment",), "alignment") == frozenset(LAYOUT_MODULES["retrieval_ft_align"])
    # Caption: the official layout also has an unused similarity_dense; 'auto' leaves it out.
    assert built(("decoder",), "decoder") == frozenset(LAYOUT_MODULES["caption"]) - {"similarity_dense"}
    for name, needs in LOSS_MODULES.items():
        model = UniVL(UniVLConfig.tiny(losses=(name,), target_loss=name))
        for module in needs:
            assert getattr(model, module) is not None, (name, module)


def test_layout_lacking_a_loss_module_is_rejected() -> None:
    with pytest.raises(ValueError, match="lacks modules"):
        UniVLConfig.tiny(layout="retrieval_ft_align", losses=("alignment", "decoder"))
