"""Official VIOLET checkpoints through the conversion engine: the fixture's weights saved as the official files
(``ckpt_violet_pretrain.pt`` layout, bare ``ckpt_video-swin.pt``), what ``load_ckpt`` fills per task, errors,
and the ``to_official`` round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones.common.loading import CheckpointMismatchError
from backbones.violet import Violet, VioletConfig
from backbones.violet.pretrained import load_official, to_official
from tests.golden._violet import golden_batch, golden_state, load_golden, load_keys_shapes

SWIN = "enc_img.swin."


@pytest.fixture(scope="module")
def pretrain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's retrieval weights in the official pre-training layout, plus transformers 4.18's position ids."""
    path = tmp_path_factory.mktemp("ckpt") / "ckpt_violet_pretrain.pt"
    state = golden_state("retrieval")
    state["enc_txt.emb_txt.position_ids"] = torch.arange(64)[None]
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def swin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ckpt_video-swin.pt"
    torch.save({k[len(SWIN):]: v for k, v in golden_state("retrieval").items() if k.startswith(SWIN)}, path)
    return path


def _tiny(task: str = "retrieval", **cfg: object) -> Violet:
    return Violet(VioletConfig.tiny(task=task, fork_quirks=True, **cfg)).eval()


def test_pretrain_file_fills_the_retrieval_model_and_reproduces_the_official_losses(pretrain_file: Path) -> None:
    model = _tiny()
    report = load_official(model, pretrain=pretrain_file)
    assert report.file == str(pretrain_file) and report.layout == "pretrain"
    assert report.ignored == ["enc_txt.emb_txt.position_ids"] and report.left_at_init == []
    assert report.loaded == sorted(model.state_dict())
    with torch.no_grad():
        losses = model(golden_batch("retrieval"))
    for name, value in losses.items():
        torch.testing.assert_close(value, load_golden()["outputs"][f"ret_loss_{name}"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("task,official", [("qa_oe", "qaoe_1000"), ("qa_mc", "qamc")])
def test_qa_heads_stay_untrained_as_in_the_fork(task: str, official: str, pretrain_file: Path) -> None:
    """The fork renamed the QA heads, so the pretrained VTM head ``fc`` is ignored and ``fc_vtm`` plus the
    answer head keep their init: exactly keys_shapes.json's ``not_filled_by_load_ckpt_from_pretrain_layout``."""
    model = _tiny(task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_official(model, pretrain=pretrain_file)
    assert report.left_at_init == sorted(load_keys_shapes()[official]["not_filled_by_load_ckpt_from_pretrain_layout"])
    assert report.ignored == sorted(["enc_txt.emb_txt.position_ids"] + [f"fc.{i}.{p}" for i in (1, 3) for p in ("weight", "bias")])
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in report.left_at_init)
    state = golden_state("retrieval")
    assert all(torch.equal(after[k], state[k]) for k in report.loaded)


def test_eval_model_ignores_the_training_heads(pretrain_file: Path) -> None:
    model = _tiny(losses=("vtm",))
    report = load_official(model, pretrain=pretrain_file)
    assert report.left_at_init == [] and {k.split(".")[0] for k in report.ignored} == {"enc_txt", "fc_mtm", "fc_mvm"}


def test_swin_file_fills_only_swin_and_the_pretrain_file_then_the_rest(swin_file: Path, pretrain_file: Path) -> None:
    model = _tiny()
    report = load_official(model, swin=swin_file)
    assert report.layout == "video_swin" and report.ignored == []
    assert report.loaded == sorted(k for k in model.state_dict() if k.startswith(SWIN))
    assert report.left_at_init == sorted(k for k in model.state_dict() if not k.startswith(SWIN))
    state = golden_state("retrieval")
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in report.loaded)
    both = load_official(_tiny(), pretrain=pretrain_file, swin=swin_file)
    assert both.layout == "video_swin + pretrain" and both.left_at_init == [] and both.file.endswith("ckpt_violet_pretrain.pt")


def test_mismatches_raise_naming_file_layout_and_keys(tmp_path: Path) -> None:
    state = golden_state("retrieval")
    surprise = dict(state, **{"trsfr.surprise.weight": torch.zeros(1)})
    path = tmp_path / "bad.pt"
    torch.save(surprise, path)
    with pytest.raises(CheckpointMismatchError, match=rf"{path}.*\[layout pretrain\].*trsfr\.surprise\.weight"):
        load_official(_tiny(), pretrain=path)
    missing = {k: v for k, v in state.items() if k != "trsfr.layer.1.output.dense.weight"}
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['trsfr\.layer\.1\.output\.dense\.weight'\]"):
        load_official(_tiny(), pretrain=missing)
    qa_oe = to_official(_tiny("qa_oe"))  # 10 answers, into a 12-answer model: the official loader would skip it
    with pytest.raises(CheckpointMismatchError, match=r"\[layout qa_oe\].*shape mismatches \['fc_oe\.3\.bias"):
        load_official(_tiny("qa_oe", n_answers=12), pretrain=qa_oe)
    with pytest.raises(CheckpointMismatchError, match=r"bare\.pt: no known layout"):
        torch.save({"something.weight": torch.zeros(1)}, tmp_path / "bare.pt")
        load_official(_tiny(), pretrain=tmp_path / "bare.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_official(_tiny(), swin=tmp_path / "absent.pt")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pt"
    torch.save({"state": Path("x")}, path)  # an arbitrary class: not loadable with weights_only=True
    with pytest.raises(CheckpointMismatchError, match=r"unsafe\.pt: cannot be read safely \(weights_only=True\)"):
        load_official(_tiny(), pretrain=path)


@pytest.mark.parametrize("task,layout", [("retrieval", "pretrain"), ("qa_oe", "qa_oe"), ("qa_mc", "qa_mc")])
def test_to_official_round_trip(task: str, layout: str) -> None:
    torch.manual_seed(1)
    model = _tiny(task)
    exported = to_official(model)
    assert list(exported) == list(model.state_dict())  # identity key table, official order
    other = _tiny(task)
    report = load_official(other, pretrain=exported)
    assert report.layout == layout and report.left_at_init == [] and report.ignored == []
    for (k, x), y in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(x, y), k
    heads = other.fc_mtm.predictions
    assert heads.decoder.bias is heads.bias
    swin = _tiny(task)
    load_official(swin, swin=to_official(model, part="swin"))
    for k, v in model.state_dict().items():
        if k.startswith(SWIN):
            assert torch.equal(swin.state_dict()[k], v), k
