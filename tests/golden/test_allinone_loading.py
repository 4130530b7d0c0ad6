"""Official All-in-one checkpoints: fake PyTorch-Lightning files with the official layout, read without running
foreign code; the fork's loading rules; errors that name the file and keys; the to_official round trip.

The fake checkpoints are built here: golden["pretrained_ckpt"] (the fixture's own fake Lightning file, plain
types only), and a PL-1.1.4-style file whose pickle names classes of a throwaway module standing in for
``pytorch_lightning`` (callbacks keyed by the callback class, an AttributeDict-like dict subclass, and an
object whose unpickling would call a function of that module). The loader must extract ``state_dict``
without importing or calling any of them.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from backbones.allinone import AllInOne, AllInOneConfig, load_official, to_official
from backbones.allinone.pretrained import read_lightning_checkpoint
from backbones.common.loading import CheckpointMismatchError
from tests.golden._allinone import golden_batch, golden_state, load_golden

FOREIGN = "fake_pytorch_lightning_for_allinone_tests"
PROJECTIONS = ["txt_proj.bias", "txt_proj.weight", "vid_proj.bias", "vid_proj.weight"]


@pytest.fixture
def foreign() -> Iterator[types.SimpleNamespace]:
    """A throwaway module with Lightning-like classes; ``calls`` records any code of it that runs."""
    calls: list[str] = []
    module = types.ModuleType(FOREIGN)

    class ModelCheckpoint:
        def __setstate__(self, state: Any) -> None:
            calls.append("ModelCheckpoint.__setstate__")

    class AttributeDict(dict):
        def __setitem__(self, key: str, value: Any) -> None:
            calls.append("AttributeDict.__setitem__")
            super().__setitem__(key, value)

    def trigger(payload: str) -> str:
        calls.append(f"trigger({payload})")
        return payload

    class Trap:
        def __reduce__(self) -> tuple:
            return trigger, ("foreign code ran",)

    for obj in (ModelCheckpoint, AttributeDict, trigger, Trap):
        obj.__module__, obj.__qualname__ = FOREIGN, obj.__name__
        setattr(module, obj.__name__, obj)
    sys.modules[FOREIGN] = module
    try:
        yield types.SimpleNamespace(module=module, calls=calls)
    finally:
        sys.modules.pop(FOREIGN, None)


def _lightning_file(path: Path, state: dict[str, torch.Tensor], foreign: types.SimpleNamespace) -> Path:
    """A PL-1.1.4-style checkpoint (reference §2.2) around ``state``."""
    m = foreign.module
    hparams = m.AttributeDict()
    dict.update(hparams, {"learning_rate": 3e-4})
    ckpt = {
        "epoch": 10, "global_step": 12345, "pytorch-lightning_version": "1.1.4",
        "state_dict": state,
        "callbacks": {m.ModelCheckpoint: {"monitor": "val/the_metric", "best_model_score": torch.tensor(1.5),
                                          "best_model_path": "result/best.ckpt", "trap": m.Trap()}},
        "optimizer_states": [{"state": {0: {"step": 3, "exp_avg": torch.zeros(2)}},
                              "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.98), "params": [0]}]}],
        "lr_schedulers": [{"last_epoch": 3, "base_lrs": [3e-4], "lr_lambdas": [None]}],
        "native_amp_scaling_state": {"scale": 65536.0, "_growth_tracker": 0},
        "hparams_name": "kwargs",
        "hyper_parameters": {"config": dict(load_golden()["config"]), "extra": hparams},
    }
    torch.save(ckpt, path)
    return path


def _pretrained_state() -> dict[str, torch.Tensor]:
    return dict(load_golden()["pretrained_ckpt"]["state_dict"])


def _assert_pretrained_report(report: Any, model: AllInOne, before: dict[str, torch.Tensor]) -> None:
    """The fixture's loader result (golden["loader"]) and bit-exact weights."""
    expected = load_golden()["loader"]
    assert report.layout == "cotrain_pretrain"
    assert report.left_at_init == sorted(expected["missing"]) == PROJECTIONS
    assert set(report.ignored) == set(expected["unexpected"]) | {"text_embeddings.position_ids"}
    source = _pretrained_state()
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key] if key in source else before[key]), key


def test_fixture_lightning_checkpoint_loads_as_the_fork_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "all-in-one-plus-224.ckpt"
    torch.save(load_golden()["pretrained_ckpt"], path)
    model = AllInOne(AllInOneConfig.tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_official(model, path)
    assert report.file == str(path) and report.stand_ins == [] and report.adapted == []
    assert report.metadata == {"epoch": 10, "global_step": 12345, "pytorch-lightning_version": "1.1.4"}
    _assert_pretrained_report(report, model, before)


def test_in_memory_lightning_dicts_and_ddp_prefixes_load(tmp_path: Path) -> None:
    model = AllInOne(AllInOneConfig.tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_official(model, load_golden()["pretrained_ckpt"])
    assert report.file == "<state_dict>" and report.metadata["global_step"] == 12345
    _assert_pretrained_report(report, model, before)
    path = tmp_path / "ddp.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _pretrained_state().items()}}, path)
    model = AllInOne(AllInOneConfig.tiny(num_frames=2))  # the fork's temporal rule must see the cleaned names
    report = load_official(model, path)
    assert report.layout == "cotrain_pretrain" and "kept the first 2 of 3" in report.adapted[0]


def test_foreign_classes_are_never_imported_or_called(tmp_path: Path, foreign: types.SimpleNamespace) -> None:
    path = _lightning_file(tmp_path / "pl.ckpt", _pretrained_state(), foreign)
    # The file really needs more than torch's allowlist, and an unsafe load really runs the foreign code.
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)
    torch.load(path, weights_only=False)  # the trap is live (this test's own module, safe to run here)
    assert "trigger(foreign code ran)" in foreign.calls
    foreign.calls.clear()

    model = AllInOne(AllInOneConfig.tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_official(model, path)
    assert foreign.calls == []
    assert report.stand_ins == sorted(f"{FOREIGN}.{n}" for n in ("AttributeDict", "ModelCheckpoint", "trigger"))
    _assert_pretrained_report(report, model, before)

    # Also when the foreign module cannot be imported at all.
    del sys.modules[FOREIGN]
    assert read_lightning_checkpoint(path).state_dict.keys() == _pretrained_state().keys()
    assert foreign.calls == []


def test_blocked_modules_are_refused_naming_the_file(tmp_path: Path) -> None:
    class Hostile:
        def __reduce__(self) -> tuple:
            return os.system, ("true",)

    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": _pretrained_state(), "callbacks": {"x": Hostile()}}, path)
    with pytest.raises(CheckpointMismatchError, match=rf"{path}: cannot be read safely.*GLOBAL {os.system.__module__}\.system whose module \w+ is blocked"):
        load_official(AllInOne(AllInOneConfig.tiny()), path)


def test_non_tensor_state_dict_entries_are_refused(tmp_path: Path, foreign: types.SimpleNamespace) -> None:
    state = _pretrained_state()
    state["transformer.pos_embed"] = foreign.module.Trap()
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointMismatchError, match=rf"{path}: state_dict entries that are not tensors: \['transformer\.pos_embed'\]"):
        load_official(AllInOne(AllInOneConfig.tiny()), path)
    assert foreign.calls == []


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load_official(AllInOne(AllInOneConfig.tiny()), tmp_path / "nowhere.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="corrupt.ckpt: cannot be read safely"):
        load_official(AllInOne(AllInOneConfig.tiny()), corrupt)


def test_unexpected_missing_and_misshapen_keys_raise_naming_file_layout_and_keys(tmp_path: Path) -> None:
    model = AllInOne(AllInOneConfig.tiny())
    cases = {
        "unexpected": ({"transformer.surprise": torch.zeros(1)}, None, r"unexpected keys \['transformer\.surprise'\]"),
        "missing": ({}, "transformer.blocks.1.mlp.fc2.bias", r"missing keys \['transformer\.blocks\.1\.mlp\.fc2\.bias'\]"),
        "pos_embed": ({"transformer.pos_embed": torch.zeros(1, 5, 32)}, None, r"transformer\.pos_embed \(1, 5, 32\) vs \(1, 17, 32\)"),
    }
    for name, (extra, drop, pattern) in cases.items():
        state = {**_pretrained_state(), **extra}
        state.pop(drop, None)
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": state, "epoch": 0}, path)
        with pytest.raises(CheckpointMismatchError, match=rf"{path} \[layout cotrain_pretrain\].*{pattern}"):
            load_official(model, path)


def test_fork_rules_for_frames_and_text_positions() -> None:
    base = _pretrained_state()
    temporal = base["transformer.temporal_embed"]  # [1, 3, 32]
    longer = torch.cat([temporal, torch.randn(1, 2, 32)], dim=1)
    shorter = temporal[:, :2]
    model = AllInOne(AllInOneConfig.tiny())
    report = load_official(model, {**base, "transformer.temporal_embed": longer})
    assert torch.equal(model.transformer.temporal_embed, temporal) and "kept the first 3 of 5" in report.adapted[0]
    report = load_official(model, {**base, "transformer.temporal_embed": shorter})
    assert torch.equal(model.transformer.temporal_embed[:, :2], shorter)
    assert torch.equal(model.transformer.temporal_embed[:, 2], torch.zeros(1, 32)) and "zero-filled" in report.adapted[0]

    longer_text = AllInOne(AllInOneConfig.tiny(max_text_len=16))
    table = longer_text.text_embeddings.position_embeddings.weight.detach().clone()
    report = load_official(longer_text, base)
    assert "text_embeddings.position_embeddings.weight" in report.left_at_init
    assert "text_embeddings.position_ids" not in report.ignored  # popped with the table, as the fork does
    assert torch.equal(longer_text.text_embeddings.position_embeddings.weight, table)
    assert torch.equal(longer_text.text_embeddings.word_embeddings.weight, base["text_embeddings.word_embeddings.weight"])


def test_finetuned_fork_checkpoint_ignores_the_loss_network_and_reproduces_the_losses() -> None:
    golden = load_golden()
    model = AllInOne(AllInOneConfig.tiny()).eval()
    report = load_official(model, dict(golden["state_dict"]))
    assert report.layout == "meltr_finetune" and report.left_at_init == []
    assert set(report.ignored) == {k for k in golden["state_dict"] if k.startswith("aux_model.")} | {"text_embeddings.position_ids"}
    with torch.no_grad():
        out = model(golden_batch())
    torch.testing.assert_close(out["ind_itc"], golden["outputs"]["ind_itc_loss"], rtol=0.0, atol=1e-5)
    torch.testing.assert_close(out["mlm"], golden["outputs"]["mlm_loss"], rtol=0.0, atol=1e-5)


def test_to_official_round_trip_through_a_lightning_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = AllInOne(AllInOneConfig.tiny())
    exported = to_official(model)
    assert list(exported) == [k for k in load_golden()["state_dict"] if not k.startswith("aux_model.")]
    assert torch.equal(exported["text_embeddings.position_ids"], torch.arange(12)[None])
    path = tmp_path / "export.ckpt"
    torch.save({"epoch": 1, "global_step": 2, "pytorch-lightning_version": "1.1.4", "state_dict": exported}, path)
    other = AllInOne(AllInOneConfig.tiny())
    report = load_official(other, path)
    assert report.layout == "meltr_finetune" and report.left_at_init == [] and report.ignored == ["text_embeddings.position_ids"]
    for (key, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), key
    assert set(golden_state()) == set(other.state_dict())
