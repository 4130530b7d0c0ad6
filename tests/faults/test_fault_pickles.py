"""Malicious and damaged pickles against every entry point that reads a pickle or a torch file.

A pickle that would run ``os.system`` if unpickled unsafely must be refused by every reader and loader, naming the
file, with nothing executed (a marker file must not appear). Memory bombs (``bytearray(2**44)`` and friends) must be
refused naming the file instead of a bare ``MemoryError``; a feature pickle cut anywhere must raise
``DataFormatError`` naming it. ``MELTR_SLOW_TESTS=1`` adds more payloads, protocols and cut points.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from data.errors import DataFormatError

SLOW = os.environ.get("MELTR_SLOW_TESTS") == "1"
PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1)) if SLOW else [0, 2, pickle.HIGHEST_PROTOCOL]


class _Run:
    """Unpickling calls ``func(*args)``: the payload of a hostile file."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, Any]:
    import subprocess

    cmd = f"touch {marker}"
    out = {"os.system": _Run(os.system, cmd)}
    if SLOW:
        out.update({
            "builtins.eval": _Run(eval, f"__import__('os').system({cmd!r})"),
            "builtins.exec": _Run(exec, f"import os; os.system({cmd!r})"),
            "subprocess.call": _Run(subprocess.call, ["touch", str(marker)]),
            "builtins.getattr": _Run(getattr, _Run(__import__, "os"), "system"),
            "builtins.__import__": _Run(__import__, "os"),
            "builtins.open": _Run(open, str(marker), "w"),
        })
    return out


# ------------------------------------------------------------------------------------- the pickle readers
def _pickle_readers(tmp: Path) -> dict[str, Callable[[Path], Any]]:
    """Every data entry point that reads a pickle, as ``read(path_of_the_hostile_pickle)``."""
    from data import violet
    from data.allinone.msrvtt import load_caption_index
    from data.safe_pickle import load_pickle, loads_pickle
    from data.synthetic.univl import write_msrvtt, write_youcook2
    from data.univl import mosi
    from data.univl.dataset import load_features
    from data.univl.msrvtt import MSRVTT
    from data.univl.youcook2 import YouCook2

    tok = lambda text: [5 + len(w) % 7 for w in text.split()]  # noqa: E731
    yc = write_youcook2(tmp / "yc", n_videos=4, seed=0, feature_dim=8)
    vtt = write_msrvtt(tmp / "vtt", n_videos=6, seed=0, feature_dim=8)
    csv = tmp / "mosi.csv"
    csv.write_text("id,text,label,split\ns1,good film,1.5,train\n")

    def violet_sources(p: Path, which: str) -> Any:
        other = p.parent / "other.pkl"  # the other pickle of the pair, harmless
        other.write_bytes(pickle.dumps({}))
        files = {"img_file": p.name, "vq_file": other.name} if which == "img" else {"img_file": other.name,
                                                                                    "vq_file": p.name}
        return violet.load_violet_sources(violet.VioletDataConfig(root=str(p.parent), **files))

    return {
        "safe_pickle.load_pickle": load_pickle,
        "safe_pickle.loads_pickle": lambda p: loads_pickle(p.read_bytes(), source=str(p)),
        "common.load_features": lambda p: load_features(p, ["v"], 8),
        "youcook2.data_pickle": lambda p: YouCook2(yc["train_csv"], p, yc["features"], tok, feature_dim=8),
        "youcook2.features": lambda p: YouCook2(yc["train_csv"], yc["data_transcript"], p, tok, feature_dim=8),
        "msrvtt.features": lambda p: MSRVTT(vtt["json"], p, tok, split="train_7k", feature_dim=8,
                                            n_train_videos=vtt["n_train_videos"], n_test_videos=vtt["n_test_videos"]),
        "mosi.read_mmsa": mosi.read_mmsa,
        "mosi.read_univl": lambda p: mosi.read_univl(p, csv, feature_dim=4),
        "violet.img_file": lambda p: violet_sources(p, "img"),
        "violet.vq_file": lambda p: violet_sources(p, "vq"),
        "allinone_msrvtt.load_caption_index": lambda p: load_caption_index(p, {"v": ("a",)}, ["v"]),
    }


@pytest.fixture(scope="module")
def pickle_readers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[[Path], Any]]:
    return _pickle_readers(tmp_path_factory.mktemp("readers"))


READERS = ["safe_pickle.load_pickle", "safe_pickle.loads_pickle", "common.load_features", "youcook2.data_pickle",
           "youcook2.features", "msrvtt.features", "mosi.read_mmsa", "mosi.read_univl", "violet.img_file",
           "violet.vq_file", "allinone_msrvtt.load_caption_index"]


@pytest.mark.parametrize("reader", READERS)
def test_code_execution_pickle_is_refused_by_every_data_reader(tmp_path: Path, reader: str,
                                                               pickle_readers: dict[str, Callable[[Path], Any]]
                                                               ) -> None:
    marker = tmp_path / "pwned"
    tried = 0
    for name, payload in _payloads(marker).items():
        for proto in PROTOCOLS:
            # The payload nested where a real file has data: inside the dict of a feature pickle.
            path = tmp_path / f"{name}.p{proto}.pkl"
            path.write_bytes(pickle.dumps({"v": payload, "train": payload}, protocol=proto))
            with pytest.raises(DataFormatError) as info:
                pickle_readers[reader](path)
            assert info.value.path == str(path), f"{reader} / {name} / protocol {proto}: {info.value}"
            assert not marker.exists(), f"{reader} ran the payload {name} (protocol {proto})"
            tried += 1
    print(f"{reader}: {tried} hostile pickles refused, none ran")


def _torch_loaders() -> dict[str, Callable[[Path], Any]]:
    """Every entry point that reads a torch file."""
    from backbones.allinone import pretrained as allinone
    from backbones.common.loading import read_state_dict
    from backbones.univl import pretrained as univl
    from backbones.violet import pretrained as violet
    from meltr.checkpoint import export_safetensors, load_checkpoint

    return {
        "meltr.load_checkpoint": load_checkpoint,
        "meltr.export_safetensors": lambda p: export_safetensors(p, p.with_suffix(".safetensors")),
        "loading.read_state_dict": read_state_dict,
        "univl.load_official": lambda p: univl.load_official(nn.Linear(1, 1), p),
        "violet.load_official(pretrain)": lambda p: violet.load_official(nn.Linear(1, 1), pretrain=p),
        "violet.load_official(swin)": lambda p: violet.load_official(nn.Linear(1, 1), swin=p),
        "allinone.read_lightning_checkpoint": allinone.read_lightning_checkpoint,
        "allinone.load_official": lambda p: allinone.load_official(nn.Linear(1, 1), p),
    }


TORCH_LOADERS = sorted(_torch_loaders())


@pytest.mark.parametrize("loader", TORCH_LOADERS)
def test_code_execution_torch_file_is_refused_by_every_loader_naming_the_file(tmp_path: Path, loader: str) -> None:
    from backbones.common.loading import CheckpointMismatchError
    from meltr.checkpoint import CheckpointError

    marker = tmp_path / "pwned"
    tried = stood_in = 0
    for name, payload in _payloads(marker).items():
        # Inside the state a real file has: a state_dict beside a Lightning callback / a meltr buffer.
        path = tmp_path / f"{name}.pt"
        torch.save({"format_version": 2, "state_dict": {"w": torch.ones(1)}, "callbacks": {"x": payload}}, path)
        try:
            result = _torch_loaders()[loader](path)
        except (CheckpointError, CheckpointMismatchError) as exc:
            assert str(path) in str(exc), f"{loader} / {name}: {exc}"
        else:
            # Only the All-in-one Lightning reader may read such a file: by design it binds every foreign global
            # outside torch's blocked modules (os, sys, posix, nt) to an inert stand-in and lists it.
            assert loader == "allinone.read_lightning_checkpoint" and result.stand_ins, f"{loader} read {name}"
            assert list(result.state_dict) == ["w"]
            stood_in += 1
        assert not marker.exists(), f"{loader} ran the payload {name}"
        tried += 1
    print(f"{loader}: {tried} hostile torch files, {tried - stood_in} refused naming the file, {stood_in} read with "
          "the payload replaced by an inert stand-in; none ran")


def test_code_execution_official_meltr_file_is_refused(tmp_path: Path) -> None:
    # load_official_meltr (meltr/loss_transformer.py, not ours) refuses through weights_only; that its error names
    # the file is pinned by the xfail test in test_fault_loaders.py.
    from meltr.loss_transformer import load_official_meltr

    marker = tmp_path / "pwned"
    for name, payload in _payloads(marker).items():
        path = tmp_path / f"{name}.pt"
        torch.save({"state_dict": {"x": payload}}, path)
        # Today torch's own UnpicklingError; a CheckpointError naming the file once it reads through read_weights.
        with pytest.raises((pickle.UnpicklingError, RuntimeError)):
            load_official_meltr(path)
        assert not marker.exists()


# ------------------------------------------------------------------------------------------- memory bombs
def _reduce(module: str, name: str, *args: bytes) -> bytes:
    """A protocol-2 pickle calling ``module.name(*args)`` (each arg already pickled)."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"(" + b"".join(args) + b"tR."


def _long(n: int) -> bytes:
    body = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(body)]) + body


BOMBS = {
    "bytearray(2**44)": _reduce("builtins", "bytearray", _long(1 << 44)),
    "bytes(2**44)": _reduce("builtins", "bytes", _long(1 << 44)),
    "__builtin__.bytearray(2**44)": _reduce("__builtin__", "bytearray", _long(1 << 44)),
    "numpy.ndarray((2**40,))": _reduce("numpy", "ndarray", b"(" + _long(1 << 40) + b"t"),
    "_reconstruct(ndarray, (2**40,), 'b')": b"\x80\x02cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\n("
    + _long(1 << 40) + b"tC\x01btR.",
    "numpy.core _reconstruct(ndarray, (2**20, 2**20), 'f8')": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n("
    b"cnumpy\nndarray\n(" + _long(1 << 20) + _long(1 << 20) + b"tC\x02f8tR.",
    "_codecs.encode doubling (hex)": b"\x80\x02c_codecs\nencode\n(C\x04abcdX\x03\x00\x00\x00hextR.",
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_memory_bombs_are_refused_naming_the_file(tmp_path: Path, bomb: str) -> None:
    from data.safe_pickle import load_pickle

    path = tmp_path / "bomb.pkl"
    path.write_bytes(BOMBS[bomb])
    with pytest.raises(DataFormatError) as info:
        load_pickle(path)
    assert info.value.path == str(path) and ("limit" in str(info.value) or "codec" in str(info.value))


def test_allocation_limit_is_configurable_and_real_arrays_pass(tmp_path: Path) -> None:
    from data.safe_pickle import load_pickle

    path = tmp_path / "ok.pkl"
    arrays = {"v": np.zeros((64, 1024), np.float32), "b": bytearray(b"x" * 100)}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(arrays, protocol=proto))
        back = load_pickle(path, max_alloc_bytes=16)  # data that comes from the file is not limited
        assert type(back["v"]) is np.ndarray and back["v"].shape == (64, 1024) and back["b"] == arrays["b"]
    path.write_bytes(_reduce("builtins", "bytearray", _long(1000)))
    assert load_pickle(path) == bytearray(1000)
    with pytest.raises(DataFormatError, match="1000 bytes, above the limit of 999"):
        load_pickle(path, max_alloc_bytes=999)


# -------------------------------------------------------------------------------- truncated feature pickle
def test_feature_pickle_cut_anywhere_raises_data_format_error_naming_it(tmp_path: Path) -> None:
    from data.univl.dataset import load_features

    feats = {f"video{i}": np.random.default_rng(i).standard_normal((6, 8)).astype(np.float32) for i in range(4)}
    held = tried = 0
    for proto in PROTOCOLS:
        data = pickle.dumps(feats, protocol=proto)
        step = 1 if SLOW else max(1, len(data) // 40)
        for cut in range(0, len(data) - 1, step):
            path = tmp_path / f"p{proto}_{cut}.pkl"
            path.write_bytes(data[:cut])
            tried += 1
            with pytest.raises(DataFormatError) as info:
                load_features(path, list(feats), 8)
            assert info.value.path == str(path)
            held += 1
            path.unlink()
    assert held == tried
    print(f"feature pickle: {held}/{tried} cut points raised DataFormatError naming the file")


