"""The official-checkpoint conversion engine on a small module with a renamed layer, a tied alias,
legacy gamma/beta names and a pre-training head that fine-tuning ignores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones.common.loading import CheckpointMismatchError, Layout, load_official, to_official


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight  # tied alias: both keys appear in state_dict()
        self.fresh = nn.Linear(4, 2)  # task head the pre-trained checkpoint does not have


FINETUNE = Layout(
    name="pretrain",
    sentinels=("embeddings.word.weight", "mlm.bias"),
    key_map={"embeddings.word.weight": "emb.weight", "layer.{}.dense.{}": "blocks.{}.{}", "ln.{}": "norm.{}", "out.weight": "head.weight"},
    legacy_renames=(("gamma", "weight"), ("beta", "bias")),
    ignorable=("mlm.*",),
    may_stay_at_init=("fresh.*",),
)
OTHER = Layout(name="other", sentinels=("something.else",))


def _official(model: Tiny) -> dict[str, torch.Tensor]:
    sd = {
        "module.embeddings.word.weight": torch.randn(10, 4),
        "module.ln.gamma": torch.randn(4),
        "module.ln.beta": torch.randn(4),
        "module.mlm.bias": torch.randn(10),
    }
    for i in range(2):
        sd[f"module.layer.{i}.dense.weight"] = torch.randn(4, 4)
        sd[f"module.layer.{i}.dense.bias"] = torch.randn(4)
    sd["module.out.weight"] = sd["module.embeddings.word.weight"]
    return sd


def test_load_maps_renames_and_reports(tmp_path) -> None:
    model = Tiny()
    sd = _official(model)
    path = tmp_path / "official.bin"
    torch.save(sd, path)
    fresh_before = model.fresh.weight.clone()
    report = load_official(model, path, [OTHER, FINETUNE])
    assert report.layout == "pretrain" and report.file == str(path)
    assert torch.equal(model.emb.weight, sd["module.embeddings.word.weight"])
    assert model.head.weight is model.emb.weight
    assert torch.equal(model.blocks[1].bias, sd["module.layer.1.dense.bias"])
    assert torch.equal(model.norm.weight, sd["module.ln.gamma"]) and torch.equal(model.norm.bias, sd["module.ln.beta"])
    assert torch.equal(model.fresh.weight, fresh_before)
    assert report.ignored == ["mlm.bias"] and report.left_at_init == ["fresh.bias", "fresh.weight"]
    assert "emb.weight" in report.loaded and report.renamed["ln.gamma"] == "norm.weight"


def test_round_trip_through_to_official() -> None:
    model = Tiny()
    load_official(model, _official(model), [FINETUNE])
    off = to_official(model, FINETUNE)
    assert "layer.0.dense.weight" in off and "embeddings.word.weight" in off and "fresh.weight" in off
    other = Tiny()
    off["mlm.bias"] = torch.zeros(10)  # sentinel of the layout
    load_official(other, off, [FINETUNE])
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        if not k.startswith("fresh"):
            assert torch.equal(a, b), k


def test_unexpected_missing_and_shape_errors_name_file_layout_and_keys(tmp_path) -> None:
    sd = _official(Tiny())
    sd["module.surprise.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"<state_dict> \[layout pretrain\].*unexpected keys \['surprise.weight'\]"):
        load_official(Tiny(), sd, [FINETUNE])
    sd = _official(Tiny())
    del sd["module.layer.1.dense.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['blocks.1.bias'\]"):
        load_official(Tiny(), sd, [FINETUNE])
    sd = _official(Tiny())
    sd["module.ln.gamma"] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError, match=r"norm.weight \(5,\) vs \(4,\)"):
        load_official(Tiny(), sd, [FINETUNE])
    with pytest.raises(CheckpointMismatchError, match="no known layout"):
        load_official(Tiny(), {"x": torch.zeros(1)}, [FINETUNE])
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        load_official(Tiny(), tmp_path / "nope.bin", [FINETUNE])


class _Foreign:
    pass


def test_foreign_pickle_is_refused_without_unsafe_fallback(tmp_path) -> None:
    path = tmp_path / "evil.bin"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "obj": _Foreign()}, path)
    with pytest.raises(CheckpointMismatchError, match=r"evil\.bin: cannot be read safely"):
        load_official(Tiny(), path, [FINETUNE])


@pytest.mark.parametrize("content", [b"", b"\x80", b"PK\x03\x04"], ids=["empty", "one-byte", "zip-header-only"])
def test_empty_or_cut_file_names_the_file_instead_of_crashing_the_handler(tmp_path, content: bytes) -> None:
    # An empty file makes torch raise EOFError() with an empty message; the handler took its first line.
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointMismatchError, match="cannot be read safely") as info:
        load_official(Tiny(), path, [FINETUNE])
    assert str(path) in str(info.value) and type(info.value.__cause__).__name__ in str(info.value)
