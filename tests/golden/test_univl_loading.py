"""Official UniVL checkpoints through the conversion engine: the golden (stage-two layout) weights,
legacy gamma/beta names, smaller task layouts, errors, and the to_official round trip."""

from __future__ import annotations

import pytest
import torch

from backbones.common.loading import CheckpointMismatchError, convert_keys, detect_layout
from backbones.univl import UniVL, UniVLConfig
from backbones.univl.convert import LAYOUTS
from backbones.univl.pretrained import load_official, to_official
from tests.golden._univl import load_golden, load_keys_shapes


def _inputs() -> dict:
    return load_golden()["inputs"]


def test_every_official_layout_is_detected_and_maps_onto_the_model_keys() -> None:
    expected = {"retrieval_ft_joint": "encoders", "pretrain_stage_one": "encoders", "retrieval_ft_align": "retrieval_ft_align",
                "caption": "caption", "pretrain_stage_two": "pretrain_stage_two"}
    for name, entry in load_keys_shapes().items():
        if name == "_meta":
            continue
        keys = [e["name"] for e in entry["state_dict"]]
        layout = detect_layout(keys, LAYOUTS)
        assert layout.name == expected[name]
        with torch.device("meta"):
            model = UniVL(UniVLConfig.base(layout=name, losses=("joint",), target_loss="joint"))
        mapped, _, _ = convert_keys({k: torch.empty(0) for k in keys}, layout)
        assert set(mapped) == set(model.state_dict())


def test_golden_weights_load_from_a_file_and_reproduce_the_meltr_losses(tmp_path) -> None:
    golden = load_golden()
    path = tmp_path / "univl.pretrained.bin"
    torch.save(dict(golden["state_dict"]), path)
    model = UniVL(UniVLConfig.tiny()).eval()
    report = load_official(model, path)
    assert report.layout == "pretrain_stage_two" and report.file == str(path)
    assert report.ignored == [] and report.left_at_init == [] and len(report.loaded) == len(model.state_dict())
    out = model(_inputs())
    for name in model.loss_names:
        torch.testing.assert_close(out[name], golden["meltr_losses"][f"meltr_loss_{name}"], rtol=1e-5, atol=3e-4 if name == "mfm" else 1e-5)


def test_legacy_gamma_beta_names_load_identically() -> None:
    golden = load_golden()["state_dict"]
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in golden.items()}
    assert any("gamma" in k for k in legacy)
    a, b = UniVL(UniVLConfig.tiny()), UniVL(UniVLConfig.tiny())
    load_official(a, golden)
    report = load_official(b, legacy)
    assert report.renamed and all("gamma" in k or "beta" in k for k in report.renamed)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


def test_smaller_models_ignore_heads_and_smaller_layouts_leave_heads_at_init() -> None:
    golden = load_golden()["state_dict"]
    joint = UniVL(UniVLConfig.tiny(losses=("joint", "m_joint"), target_loss="joint"))
    report = load_official(joint, golden)
    assert report.left_at_init == [] and any(k.startswith("decoder.") for k in report.ignored)
    encoders_only = {k: v for k, v in golden.items() if k.split(".")[0] in {"bert", "visual", "normalize_video"}}
    full = UniVL(UniVLConfig.tiny())
    report = load_official(full, encoders_only)
    assert report.layout == "encoders" and report.ignored == []
    assert {k.split(".")[0] for k in report.left_at_init} == {"cross", "decoder", "cls", "cls_visual", "similarity_dense"}


def test_unexpected_or_missing_keys_raise_naming_file_layout_and_keys() -> None:
    golden = dict(load_golden()["state_dict"])
    golden["bert.surprise.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"<state_dict> \[layout pretrain_stage_two\].*bert\.surprise\.weight"):
        load_official(UniVL(UniVLConfig.tiny()), golden)
    golden = dict(load_golden()["state_dict"])
    del golden["bert.encoder.layer.1.output.dense.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['bert\.encoder\.layer\.1\.output\.dense\.weight'\]"):
        load_official(UniVL(UniVLConfig.tiny()), golden)


def test_to_official_round_trip() -> None:
    torch.manual_seed(0)
    model = UniVL(UniVLConfig.tiny())
    exported = to_official(model)
    assert set(exported) == set(load_golden()["state_dict"])  # the official stage-two key set
    other = UniVL(UniVLConfig.tiny())
    load_official(other, exported)
    for (k, x), y in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(x, y), k
    assert other.decoder.embeddings.word_embeddings.weight is other.bert.embeddings.word_embeddings.weight
