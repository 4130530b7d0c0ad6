"""The official-checkpoint conversion engine on a small module with a renamed layer, a tied alias,
legacy gamma/beta names and a pre-training head that fine-tuning ignores; the PretrainedSpec rules, and each
backbone's specs against its layouts."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import torch
from torch import nn

from backbones.allinone import convert as allinone_convert
from backbones.allinone import pretrained as allinone_pretrained
from backbones.common.loading import CheckpointMismatchError, Layout, PretrainedSpec, load_official, to_official
from backbones.univl import convert as univl_convert
from backbones.univl import pretrained as univl_pretrained
from backbones.violet import convert as violet_convert
from backbones.violet import pretrained as violet_pretrained


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


def test_a_file_named_as_a_pretrained_spec_must_have_its_layout_and_digest(tmp_path) -> None:
    """The spec drives the load: its file name selects its layout (the only one tried), its digest is
    checked when recorded (against hashlib over the bytes written), and a missing file says where to get it."""
    path = tmp_path / "tiny.pretrained.bin"
    torch.save(_official(Tiny()), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = PretrainedSpec(filename="tiny.pretrained.bin", layout="pretrain", source="the tiny release page", sha256=digest)
    report = load_official(Tiny(), path, [OTHER, FINETUNE], specs=[spec])
    assert (report.layout, report.pretrained) == ("pretrain", "tiny.pretrained.bin")
    assert load_official(Tiny(), path, [OTHER, FINETUNE]).pretrained == ""  # no spec given: detection only
    with pytest.raises(CheckpointMismatchError, match=f"SHA-256 {digest} is not the official tiny.pretrained.bin's 00ff"):
        load_official(Tiny(), path, [FINETUNE], specs=[replace(spec, sha256="00ff")])
    with pytest.raises(CheckpointMismatchError, match=r"no known layout matches; tried \['other'\]"):
        load_official(Tiny(), path, [OTHER, FINETUNE], specs=[replace(spec, layout="other")])
    with pytest.raises(CheckpointMismatchError, match="has layout 'pretrain', which this loader does not read"):
        load_official(Tiny(), path, [OTHER], specs=[spec])
    with pytest.raises(FileNotFoundError, match="get it from the tiny release page"):
        load_official(Tiny(), tmp_path / "sub" / "tiny.pretrained.bin", [FINETUNE], specs=[spec])
    # An in-memory dict labelled with the file it was read from is held to the spec too.
    with pytest.raises(CheckpointMismatchError, match="has layout 'pretrain'"):
        load_official(Tiny(), _official(Tiny()), [OTHER], label=str(path), specs=[spec])


@pytest.mark.parametrize("specs,layouts", [
    ([univl_pretrained.PRETRAINED], univl_convert.LAYOUTS),
    (list(violet_pretrained.PRETRAINED.values()), (*violet_convert.LAYOUTS, violet_convert.SWIN_LAYOUT)),
    ([allinone_pretrained.PRETRAINED], allinone_convert.LAYOUTS),
], ids=["univl", "violet", "allinone"])
def test_every_pretrained_spec_names_a_layout_of_its_backbone(specs: list[PretrainedSpec], layouts: tuple[Layout, ...]) -> None:
    known = {lay.name for lay in layouts}
    assert all(spec.layout in known for spec in specs), ([spec.layout for spec in specs], known)
