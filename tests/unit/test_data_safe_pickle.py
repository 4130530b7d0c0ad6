"""data.safe_pickle: foreign globals are refused before anything runs; official content round-trips."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError
from data.safe_pickle import ALLOWED_GLOBALS, load_pickle, loads_pickle


class _SystemCall:
    """Pickles as ``os.system(command)`` (a REDUCE of a foreign global)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_reduce_is_refused_and_never_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"features": [1, 2], "x": _SystemCall(f"touch {marker}")}, protocol=protocol)
    path = _write(tmp_path / "evil.pickle", payload)
    with pytest.raises(UnsafePickleError) as info:
        load_pickle(path)
    assert str(path) in str(info.value)
    assert "system" in info.value.global_name  # posix.system / nt.system
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"), ("builtins", "__import__"),
                                         ("subprocess", "Popen"), ("numpy", "load"), ("torch", "load"),
                                         ("collections", "Counter"), ("not_a_module_xyz", "f")])
def test_foreign_globals_are_refused_without_import(tmp_path: Path, module: str, name: str) -> None:
    # Protocol-0 GLOBAL opcode followed by a call: c<module>\n<name>\n(S'arg'\ntR.
    raw = f"c{module}\n{name}\n(S'1+1'\ntR.".encode()
    path = _write(tmp_path / "g.pickle", raw)
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}") as info:
        load_pickle(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "int16", "uint8", "bool",
                                   "complex64"])
def test_numpy_arrays_round_trip(tmp_path: Path, protocol: int, dtype: str) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((7, 5)) * 10).astype(dtype)
    obj = {"c": arr, "f": np.asfortranarray(arr), "strided": arr[::2, 1:], "empty": arr[:0]}
    path = _write(tmp_path / "a.pickle", pickle.dumps(obj, protocol=protocol))
    out = load_pickle(path)
    assert isinstance(out, dict) and out.keys() == obj.keys()
    for key, value in obj.items():
        assert out[key].dtype == value.dtype and out[key].shape == value.shape, key
        np.testing.assert_array_equal(out[key], value)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_containers_strings_and_numpy_scalars_round_trip(tmp_path: Path, protocol: int) -> None:
    obj = {
        "video0": {"start": np.array([0, 3.5], dtype=object),
                   "text": np.array(["a man cuts", "é stir"], dtype=object)},
        "list": [1, 2.5, -3, True, None, "s", b"\x00\xffbytes", b""],
        "tuple": (1, (2, 3)), "set": {1, 2}, "frozenset": frozenset({"a"}), "complex": 1 + 2j,
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]), "bytearray": bytearray(b"xy"),
        "scalars": [np.float64(2.5), np.float32(1.25), np.int64(-7), np.bool_(True)],
        "big": 2**70,
    }
    out = load_pickle(_write(tmp_path / "c.pickle", pickle.dumps(obj, protocol=protocol)))
    assert out["video0"]["text"].dtype == object and list(out["video0"]["text"]) == ["a man cuts", "é stir"]
    assert list(out["video0"]["start"]) == [0, 3.5]
    for key in ("list", "tuple", "set", "frozenset", "complex", "bytearray", "big"):
        assert out[key] == obj[key] and type(out[key]) is type(obj[key]), key
    assert isinstance(out["ordered"], collections.OrderedDict) and list(out["ordered"]) == ["b", "a"]
    for got, want in zip(out["scalars"], obj["scalars"]):
        assert type(got) is type(want) and got == want


def test_numpy_1x_module_spelling_is_accepted() -> None:
    # numpy 1.x writes numpy.core.multiarray; numpy 2 writes numpy._core.multiarray. Protocol 2 GLOBAL is
    # newline-terminated text, so the spelling can be swapped in place.
    data = pickle.dumps({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(4.0)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data and b"numpy._core" not in old
    out = loads_pickle(old)
    np.testing.assert_array_equal(out["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert out["s"] == 4.0


def test_allow_list_is_exactly_the_documented_set() -> None:
    modules = {m for m, _ in ALLOWED_GLOBALS}
    assert modules == {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                       "numpy._core.numeric", "collections", "_codecs", "builtins"}
    assert ("builtins", "eval") not in ALLOWED_GLOBALS and ("builtins", "getattr") not in ALLOWED_GLOBALS


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pickle"
    with pytest.raises(MissingDataFileError, match="nope.pickle.*file not found") as info:
        load_pickle(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataFormatError)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.0])
def test_truncated_pickle_names_the_file(tmp_path: Path, cut: float) -> None:
    data = pickle.dumps({"v": np.zeros((50, 8), dtype=np.float32), "t": ["x"] * 10}, protocol=4)
    path = _write(tmp_path / "feat.pickle", data[: int(len(data) * cut)])
    with pytest.raises(DataFormatError, match=r"feat\.pickle: corrupt or truncated pickle"):
        load_pickle(path)


def test_garbage_and_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"junk\.pickle: corrupt"):
        load_pickle(_write(tmp_path / "junk.pickle", b"this is not a pickle at all"))
    good = pickle.dumps({"a": 1})
    with pytest.raises(DataFormatError, match=r"two\.pickle: trailing bytes"):
        load_pickle(_write(tmp_path / "two.pickle", good + good))
    assert load_pickle(_write(tmp_path / "one.pickle", good)) == {"a": 1}


def test_errors_survive_pickling_for_dataloader_workers() -> None:
    err = UnsafePickleError("/x/f.pickle", "os.system")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is UnsafePickleError and str(back) == str(err) and back.global_name == "os.system"
    miss = pickle.loads(pickle.dumps(MissingDataFileError("/x/y", "file not found")))
    assert str(miss) == "/x/y: file not found"


def test_huge_allowlisted_bytearray_is_refused_naming_the_file(tmp_path) -> None:
    # bytearray is allow-listed; a 30-byte pickle calling bytearray(2**44) raised a bare MemoryError.
    from data.safe_pickle import load_pickle as _load

    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\nbytearray\n(\x8a\x06\x00\x00\x00\x00\x00\x10tR.")
    with pytest.raises(DataFormatError, match="17592186044416 bytes, above the limit") as info:
        _load(path)
    assert info.value.path == str(path)
