"""Fault injection on the official-checkpoint loaders and the dataset readers.

* truncation at many cut points (and 0 bytes) of a UniVL-layout ``.bin``, a VIOLET-layout ``.pt`` (pre-train and
  Swin), an All-in-one Lightning ``.ckpt`` and an official MELTR file: each must raise the project's error naming
  the file, never a raw torch error;
* NaN / inf injected into official feature pickles: refused at read time naming the file and the video;
* a binary file given as a csv / json / split list: refused naming the file and the byte offset.

``MELTR_SLOW_TESTS=1`` runs many more cut points.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backbones.allinone import pretrained as allinone
from backbones.allinone.convert import LAYOUTS as ALLINONE_LAYOUTS
from backbones.common.loading import CheckpointMismatchError, read_state_dict
from backbones.univl import pretrained as univl
from backbones.univl.convert import LAYOUTS as UNIVL_LAYOUTS
from backbones.violet import pretrained as violet
from backbones.violet.convert import LAYOUTS as VIOLET_LAYOUTS
from backbones.violet.convert import SWIN_LAYOUT
from data.errors import DataFormatError
from data.files import read_csv_rows, read_json
from data.safe_pickle import load_pickle
from data.univl.dataset import load_features
from meltr.loss_transformer import LossTransformer, LossTransformerConfig, load_official_meltr

SLOW = os.environ.get("MELTR_SLOW_TESTS") == "1"
N_CUTS = 300 if SLOW else 25


def _cut_points(size: int, n: int) -> list[int]:
    return sorted({0, 1, size - 1} | {int(i * size / n) for i in range(n)})


def _tiny(keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    # Official key names with small tensors: truncation fails while reading, before any shape matters.
    return {k: torch.randn(4, 3) for k in keys}


def _univl_bin(path: Path) -> Callable[[Path], object]:
    torch.save(_tiny(UNIVL_LAYOUTS[-1].sentinels), path)
    return lambda p: univl.load_official(nn.Linear(1, 1), p)


def _violet_pt(path: Path) -> Callable[[Path], object]:
    torch.save({"model": _tiny(VIOLET_LAYOUTS[0].sentinels)}, path)
    return lambda p: violet.load_official(nn.Linear(1, 1), pretrain=p)


def _violet_swin(path: Path) -> Callable[[Path], object]:
    torch.save(_tiny(SWIN_LAYOUT.sentinels), path)
    return lambda p: violet.load_official(nn.Linear(1, 1), swin=p)


def _allinone_ckpt(path: Path) -> Callable[[Path], object]:
    # The Lightning container as the golden tests build it (epoch, global_step, version, state_dict, optimizer
    # and scheduler states, hyper-parameters), tiny.
    torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.1.4",
                "state_dict": _tiny(ALLINONE_LAYOUTS[0].sentinels),
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}],
                "lr_schedulers": [{"last_epoch": 3}], "hparams_name": "config",
                "hyper_parameters": {"config": {"num_frames": 3, "loss_names": {"vtm": 1}}}}, path)
    return lambda p: allinone.load_official(nn.Linear(1, 1), p)


def _allinone_read(path: Path) -> Callable[[Path], object]:
    _allinone_ckpt(path)
    return allinone.read_lightning_checkpoint


KINDS = {"univl.bin": _univl_bin, "violet.pt": _violet_pt, "violet_swin.pt": _violet_swin,
         "allinone.ckpt": _allinone_ckpt, "allinone_read.ckpt": _allinone_read}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_truncated_official_checkpoints_raise_the_loader_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    whole = tmp_path / kind
    load = KINDS[kind](whole)
    if kind.startswith("allinone"):
        assert allinone.read_lightning_checkpoint(whole).metadata["global_step"] == 120
    else:
        read_state_dict(whole)  # the whole file reads
    data = whole.read_bytes()
    cuts = _cut_points(len(data), N_CUTS)
    for cut in cuts:
        bad = tmp_path / f"cut{cut}_{kind}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointMismatchError) as info:
            load(bad)
        assert str(bad) in str(info.value), f"cut at {cut}: {info.value}"
        assert "cannot be read safely" in str(info.value)
        bad.unlink()
    print(f"{kind}: {len(cuts)}/{len(cuts)} cut points of {len(data)} bytes raised CheckpointMismatchError naming "
          "the file")


@pytest.mark.parametrize("kind", ["univl.bin", "violet.pt", "violet_swin.pt", "allinone.ckpt"])
def test_zero_byte_file_names_the_file_and_says_empty(tmp_path: Path, kind: str) -> None:
    load = KINDS[kind](tmp_path / "whole")
    empty = tmp_path / kind
    empty.write_bytes(b"")
    with pytest.raises(CheckpointMismatchError, match="EOFError") as info:
        load(empty)
    assert str(empty) in str(info.value)


def _official_meltr_file(path: Path) -> None:
    model = LossTransformer(LossTransformerConfig(num_tasks=3, scale_hidden_dim=8, hidden_dim=16, ffn_dim=16,
                                                  num_heads=4, residual="none"))
    torch.save(model.to_official(), path)


def test_truncated_official_meltr_file_names_the_file(tmp_path: Path) -> None:
    whole = tmp_path / "meltr.pt"
    _official_meltr_file(whole)
    load_official_meltr(whole)
    data = whole.read_bytes()
    for cut in _cut_points(len(data), N_CUTS):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises((KeyError, ValueError, RuntimeError)) as info:  # OfficialKeyError / CheckpointError
            load_official_meltr(bad)
        # the file and the problem are named (a torch detail such as "[Errno 22]" may follow in parentheses)
        message = str(info.value)
        assert str(bad) in message and ("truncated" in message or "missing" in message or "unexpected" in message), \
            f"cut at {cut}: {info.value!r}"


# ------------------------------------------------------------------------------------- NaN / inf in features
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_non_finite_features_are_refused_naming_file_video_and_row(tmp_path: Path, value: float, dtype: type) -> None:
    feats = {f"video{i}": np.ones((5, 4), dtype=dtype) for i in range(3)}
    feats["video1"][3, 2] = value
    path = tmp_path / "feats.pickle"
    path.write_bytes(pickle.dumps(feats))
    with pytest.raises(DataFormatError, match=r"video 'video1'.*non-finite.*row\(s\) \[3\]") as info:
        load_features(path, ["video0", "video1"], 4)
    assert info.value.path == str(path)
    # A split that does not read the bad video is not refused, and integer features cannot hold NaN.
    assert set(load_features(path, ["video0", "video2"], 4)) == set(feats)


def test_nan_in_youcook2_and_msrvtt_features_is_refused_at_construction(tmp_path: Path) -> None:
    from data.synthetic.univl import write_msrvtt, write_youcook2
    from data.univl.msrvtt import MSRVTT
    from data.univl.youcook2 import YouCook2

    tok = lambda text: [5 + len(w) % 7 for w in text.split()]  # noqa: E731 - ids only, the text is not the point
    yc = write_youcook2(tmp_path / "yc", n_videos=4, seed=0, feature_dim=8)
    feats = load_pickle(yc["features"])
    first = sorted(feats)[0]
    feats[first][0, 0] = np.nan
    yc["features"].write_bytes(pickle.dumps(feats))
    found = []
    for split in ("train_csv", "val_csv"):
        try:
            YouCook2(yc[split], yc["data_transcript"], yc["features"], tok, feature_dim=8, max_words=16, max_frames=8)
        except DataFormatError as exc:
            assert exc.path == str(yc["features"]) and repr(first) in str(exc) and "non-finite" in str(exc)
            found.append(split)
    assert found, "the video with a NaN is in no split"

    vtt = write_msrvtt(tmp_path / "vtt", n_videos=6, seed=0, feature_dim=8)
    feats = load_pickle(vtt["features"])
    for v in feats.values():
        v[-1, -1] = np.inf
    vtt["features"].write_bytes(pickle.dumps(feats))
    with pytest.raises(DataFormatError, match="non-finite") as info:
        MSRVTT(vtt["json"], vtt["features"], tok, split="train_7k", feature_dim=8, max_words=16, max_frames=8,
               n_train_videos=vtt["n_train_videos"], n_test_videos=vtt["n_test_videos"])
    assert info.value.path == str(vtt["features"])


def test_mosi_keeps_mmsa_zeroing_and_names_the_file_and_segments(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    from data.univl.mosi import read_univl

    feats = {"s1": np.ones((3, 4), np.float32), "s2": np.ones((3, 4), np.float32)}
    feats["s2"][1, 1] = np.nan
    fpath, cpath = tmp_path / "mosi.pkl", tmp_path / "mosi.csv"
    fpath.write_bytes(pickle.dumps(feats))
    cpath.write_text("id,text,label,split\ns1,good film,1.5,train\ns2,bad film,-2,test\n")
    with caplog.at_level("WARNING", logger="data.univl.mosi"):
        records = read_univl(fpath, cpath, feature_dim=4)
    assert records[1].video[1, 1] == 0 and np.isfinite(records[1].video).all()
    assert str(fpath) in caplog.text and "s2" in caplog.text and "s1," not in caplog.text


# ------------------------------------------------------------------------------------------ binary text files
BINARY = b"video_id,sentence\n" + bytes(range(128, 256)) + b"\x00\x01"


def test_binary_csv_names_the_file_and_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(BINARY)
    with pytest.raises(DataFormatError, match=r"byte offset 18\b") as info:
        read_csv_rows(path, ("video_id",))
    assert info.value.path == str(path)
    path.write_bytes(b"video_id\n\x00\x00\x00\n")  # valid utf-8, still binary
    with pytest.raises(DataFormatError, match="NUL"):
        read_csv_rows(path, ("video_id",))


@pytest.mark.parametrize("reader", ["json", "allinone_split_list", "tgif_tsv", "youtube_mapping"])
def test_binary_text_files_name_the_file_and_the_byte_offset(tmp_path: Path, reader: str) -> None:
    from data.allinone.msrvtt import read_id_list
    from data.violet.qa_convert import read_tgif_tsv, read_youtube_mapping

    call = {"json": read_json, "allinone_split_list": read_id_list,
            "tgif_tsv": lambda p: read_tgif_tsv(p, ("question",)), "youtube_mapping": read_youtube_mapping}[reader]
    path = tmp_path / "annotation.txt"
    path.write_bytes(BINARY)
    with pytest.raises(DataFormatError, match="byte offset 18") as info:
        call(path)
    assert info.value.path == str(path)
