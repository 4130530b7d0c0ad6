"""Full-size All-in-one state-dict layout against the official ``keys_shapes.json`` (built on the meta device).

The fork's fine-tuning module (``msrvtt_retrieval_MELTR``) holds our model plus ``aux_model.*`` (the MELTR
loss network, which lives in :mod:`meltr`) and the transformers-4.2.1 ``text_embeddings.position_ids`` buffer
(our model has no buffer; :func:`to_official` writes it). Everything else must be identical: names, order,
shapes, dtypes and the parameter count.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
import torch

from backbones.allinone import AllInOne, AllInOneConfig, to_official
from backbones.allinone.convert import LAYOUTS
from backbones.common.loading import convert_keys, detect_layout
from tests.golden._allinone import load_golden, load_keys_shapes

FINETUNE = "msrvtt_retrieval_MELTR"
PRETRAIN = "cotrain_pretrain_mlm_vtm"
OFFICIAL_ONLY = ("aux_model.", "text_embeddings.position_ids")


@pytest.fixture(scope="module")
def keys_shapes() -> dict[str, Any]:
    return load_keys_shapes()


def _base_from(config: dict[str, Any]) -> AllInOneConfig:
    """Our config from the official sacred config (ViT-B/16 is what the variant name fixes)."""
    assert config["vit"] == "vit_base_patch16_224"
    return AllInOneConfig.base(
        vocab_size=config["vocab_size"], max_text_len=config["max_text_len"], hidden_size=config["hidden_size"],
        num_layers=config["num_layers"], num_heads=config["num_heads"], mlp_ratio=float(config["mlp_ratio"]),
        image_size=config["image_size"], patch_size=config["patch_size"], num_frames=config["num_frames"],
        shared_embedding_dim=config["shared_embedding_dim"], drop_rate=config["drop_rate"],
    )


def _meta_model(cfg: AllInOneConfig) -> AllInOne:
    with torch.device("meta"):
        return AllInOne(cfg)


def test_base_config_is_the_official_finetuning_config(keys_shapes: dict[str, Any]) -> None:
    assert _base_from(keys_shapes[FINETUNE]["config"]) == AllInOneConfig.base()


def test_tiny_config_is_the_golden_config() -> None:
    golden = load_golden()
    # The sacred config has no drop_path_rate (the ViT variant fixes 0.1); the fixture ran with 0 (README §2.1).
    from_fixture = _base_from({**golden["config"], "vit": "vit_base_patch16_224"}).replace(drop_path_rate=0.0)
    assert from_fixture == AllInOneConfig.tiny()


def test_state_dict_matches_official_finetuning_layout(keys_shapes: dict[str, Any]) -> None:
    entry = keys_shapes[FINETUNE]
    model = _meta_model(AllInOneConfig.base())
    state = model.state_dict(keep_vars=True)
    expected = [(e["name"], tuple(e["shape"]), e["dtype"]) for e in entry["state_dict"] if not e["name"].startswith(OFFICIAL_ONLY)]
    assert list(state) == [k for k, _, _ in expected], (
        f"missing {sorted({k for k, _, _ in expected} - set(state))[:10]}, extra {sorted(set(state) - {k for k, _, _ in expected})[:10]}")
    wrong = [(k, tuple(state[k].shape), s) for k, s, _ in expected if tuple(state[k].shape) != s]
    assert not wrong, f"shape mismatches (key, ours, official): {wrong[:10]}"
    assert all(str(state[k].dtype).removeprefix("torch.") == d for k, _, d in expected)
    assert not list(model.buffers())
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters_without_aux_model"]


def test_to_official_gives_the_official_keys_in_official_order(keys_shapes: dict[str, Any]) -> None:
    entry = keys_shapes[FINETUNE]
    exported = to_official(_meta_model(AllInOneConfig.base()))
    expected = [e for e in entry["state_dict"] if not e["name"].startswith("aux_model.")]
    assert list(exported) == [e["name"] for e in expected]
    assert all(tuple(exported[e["name"]].shape) == tuple(e["shape"]) for e in expected)
    assert exported["text_embeddings.position_ids"].dtype == torch.int64


@pytest.mark.parametrize("name,layout", [(FINETUNE, "meltr_finetune"), (PRETRAIN, "cotrain_pretrain")])
def test_official_layouts_are_detected_and_differ_from_ours_only_by_allowlisted_keys(
        name: str, layout: str, keys_shapes: dict[str, Any]) -> None:
    entry = keys_shapes[name]
    keys = [e["name"] for e in entry["state_dict"]]
    found = detect_layout(keys, LAYOUTS)
    assert found.name == layout
    ours = set(_meta_model(_base_from(entry["config"])).state_dict())
    mapped, _, _ = convert_keys({k: torch.empty(0) for k in keys}, found)
    extra = {k for k in mapped if k not in ours}
    lacking = ours - set(mapped)
    assert all(any(fnmatchcase(k, p) for p in found.ignorable) for k in extra), extra
    assert all(any(fnmatchcase(k, p) for p in found.may_stay_at_init) for k in lacking), lacking
    if name == PRETRAIN:
        fixture = keys_shapes["load_pretrained_into_finetune"]
        # The official module also misses aux_model.*, which is not part of our model.
        missing = {k for k in fixture["missing_in_ckpt_kept_at_init"] if not k.startswith("aux_model.")}
        assert lacking == missing == {"txt_proj.bias", "txt_proj.weight", "vid_proj.bias", "vid_proj.weight"}
        assert extra - {"text_embeddings.position_ids"} == set(fixture["unexpected_in_ckpt_ignored"])
        assert not fixture["shape_mismatch"]
