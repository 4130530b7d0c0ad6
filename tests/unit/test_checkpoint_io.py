"""Tests for meltr.checkpoint: atomic save, safe load, versioning and RNG state round trips."""

from __future__ import annotations

import collections
import os
import pickle
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import meltr.checkpoint as ckpt
from meltr.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _touch_marker(path: str) -> None:
    """The payload of a malicious pickle: proof that unpickling ran our code."""
    Path(path).write_text("pwned")


class Evil:
    """Unpickles into a call to ``_touch_marker``, like a real code-execution payload would."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch_marker, (self.marker,))


class PlainObject:
    """An ordinary user class: harmless, but still not something a meltr checkpoint may contain."""

    def __init__(self) -> None:
        self.value = 3


def _sample_state() -> dict:
    return {
        "model": {"w": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64)},
        "optim": [{"lr": 1e-3, "betas": (0.9, 0.999)}, {"lr": 0.5, "momentum": None}],
        "step": 17,
        "best_metric": 0.25,
        "name": "univl/youcook2",
        "nested": {"a": [1, 2.5, "x", None, [torch.ones(2)]]},
        "nothing": None,
    }


def _assert_same(a, b) -> None:
    """Exact structural equality, comparing tensors by dtype, shape and values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


# --- 1. round trip -------------------------------------------------------------------------------


def test_round_trip_preserves_everything_and_adds_version(tmp_path: Path) -> None:
    state = _sample_state()
    path = tmp_path / "sub" / "dir" / "last.pt"  # parent directories do not exist yet

    save_checkpoint(state, path)
    loaded = load_checkpoint(path)

    assert loaded["format_version"] == FORMAT_VERSION
    assert "format_version" not in state, "the caller's dict must not be mutated"
    _assert_same({**state, "format_version": FORMAT_VERSION}, loaded)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_save_keeps_an_explicit_format_version(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint({"format_version": FORMAT_VERSION, "x": 1}, path)
    assert load_checkpoint(path) == {"format_version": FORMAT_VERSION, "x": 1}


def test_saved_file_mode_follows_umask_not_mkstemp(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint({"x": 1}, path)
    # mkstemp would leave 0600; a checkpoint should be as readable as a plain torch.save output.
    assert path.stat().st_mode & 0o777 == 0o666 & ~ckpt._UMASK


def test_save_rejects_non_dict(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="dict"):
        save_checkpoint([1, 2], tmp_path / "c.pt")  # type: ignore[arg-type]


# --- 2. crash during save ------------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_crash_mid_save_leaves_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc_type: type[BaseException]
) -> None:
    path = tmp_path / "last.pt"
    first = _sample_state()
    save_checkpoint(first, path)
    seen: list[object] = []

    def crashing_save(obj, f, *args, **kwargs):
        # Leave a half-written file behind, as a real crash (disk full, kill) would.
        seen.append(f)
        if hasattr(f, "write"):
            f.write(b"PK\x03\x04 half a checkpoint")
        else:
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise exc_type("injected crash")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(exc_type, match="injected crash"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "step": 99}, path)
    monkeypatch.undo()

    assert seen, "the injected torch.save was never called"
    _assert_same({**first, "format_version": FORMAT_VERSION}, load_checkpoint(path))
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".*.tmp")) == []
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_crash_on_first_save_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"garbage")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint({"x": 1}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


# --- 3. foreign globals are refused --------------------------------------------------------------


def test_pickle_with_code_execution_payload_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Evil(marker)}, path)  # torch.save pickles anything

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)

    message = str(info.value)
    assert str(path) in message
    assert f"{_touch_marker.__module__}._touch_marker" in message
    assert "plain Python containers" in message
    assert not marker.exists(), "the payload ran during load_checkpoint"
    # Sanity check that the payload is live, so the assertion above could have failed.
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def test_pickle_with_plain_custom_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.pt"
    torch.save({"format_version": 1, "cfg": PlainObject()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert f"{PlainObject.__module__}.PlainObject" in str(info.value)


def test_refusal_never_falls_back_to_unsafe_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "obj.pt"
    torch.save({"format_version": 1, "cfg": PlainObject()}, path)
    calls: list[object] = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert calls == [True]


# --- 4. truncated / corrupt files ----------------------------------------------------------------


@pytest.mark.parametrize("damage", ["half", "empty", "garbage"])
def test_corrupt_file_raises_checkpoint_error_naming_file(tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(_sample_state(), good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    damaged = {"half": data[: len(data) // 2], "empty": b"", "garbage": b"\x80\x02garbage"}
    bad.write_bytes(damaged[damage])

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


# --- 5. missing file, wrong layout, versions -----------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "missing.pt"
    with pytest.raises(FileNotFoundError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ([1, 2, 3], "holds a list"),
        (torch.zeros(2), "holds a Tensor"),
        ({"model": {}}, "no 'format_version'"),
        ({"format_version": "1"}, "non-integer"),
        ({"format_version": True}, "non-integer"),
    ],
)
def test_wrong_layout_is_refused(tmp_path: Path, payload: object, match: str) -> None:
    path = tmp_path / "c.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save({"format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer meltr") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_older_version_without_upgrader_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format_version": 0}, path)
    with pytest.raises(CheckpointError, match="no upgrade") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_older_versions_are_upgraded_step_by_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format_version": 1, "lr": 0.1}, path)

    def v1_to_v2(state: dict) -> dict:
        rest = {k: v for k, v in state.items() if k != "lr"}
        return {**rest, "lrs": [state["lr"]]}

    def v2_to_v3(state: dict) -> dict:
        return {**state, "epoch": 0}

    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 3)
    monkeypatch.setattr(ckpt, "_UPGRADES", {1: v1_to_v2, 2: v2_to_v3})
    assert ckpt.load_checkpoint(path) == {"format_version": 3, "lrs": [0.1], "epoch": 0}


# --- 6. RNG state --------------------------------------------------------------------------------


def _draw() -> tuple:
    return (
        [random.random() for _ in range(3)],
        random.gauss(0.0, 1.0),
        np.random.rand(3).tolist(),
        float(np.random.normal()),
        torch.rand(3).tolist(),
        torch.randint(0, 1000, (4,)).tolist(),
    )


def _warm_gaussian_caches() -> None:
    # Leave a cached second Gaussian in both Python's and numpy's RNG, so the restore must carry
    # the "gauss" / "cached_gaussian" fields and not only the Mersenne words. Each call toggles the
    # cache, so draw until it is full whatever earlier tests left behind.
    while random.getstate()[2] is None:
        random.gauss(0.0, 1.0)
    while not np.random.get_state(legacy=True)[3]:
        np.random.normal()


def test_rng_state_restores_identical_draws() -> None:
    _warm_gaussian_caches()
    state = rng_state()
    assert state["python"]["gauss"] is not None and state["numpy"]["has_gauss"] == 1
    first = _draw()
    assert _draw() != first  # the RNGs really advance, so equality below is meaningful
    set_rng_state(state)
    assert _draw() == first


def test_rng_state_survives_a_checkpoint_round_trip(tmp_path: Path) -> None:
    _warm_gaussian_caches()
    path = tmp_path / "rng.pt"
    state = rng_state()
    assert state["python"]["gauss"] is not None and state["numpy"]["has_gauss"] == 1
    save_checkpoint({"rng": state}, path)
    first = _draw()
    _draw()

    set_rng_state(load_checkpoint(path)["rng"])  # loaded with weights_only=True
    assert _draw() == first


def test_set_rng_state_tolerates_missing_optional_entries() -> None:
    state = rng_state()
    del state["numpy"]
    np.random.seed(0)
    numpy_before = np.random.rand()
    np.random.seed(0)
    torch_first = torch.rand(2).tolist()
    set_rng_state(state)  # no numpy, no cuda: numpy's stream must be left alone
    assert torch.rand(2).tolist() == torch_first
    assert np.random.rand() == numpy_before


def test_set_rng_state_requires_python_and_torch() -> None:
    with pytest.raises(ValueError, match="torch"):
        set_rng_state({"python": rng_state()["python"]})


def test_cuda_rng_states_are_captured_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI has no GPU, so stand in for torch.cuda; this checks the plumbing, not the CUDA generator.
    fake_states = [torch.full((16,), 1, dtype=torch.uint8), torch.full((16,), 2, dtype=torch.uint8)]
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake_states)
    monkeypatch.setattr(
        torch.cuda, "set_rng_state_all", lambda states: restored.append(list(states))
    )

    state = rng_state()
    assert len(state["cuda"]) == 2
    set_rng_state(state)
    assert len(restored) == 1
    assert [s.tolist() for s in restored[0]] == [s.tolist() for s in fake_states]


# --------------------------------------------------------------------------------------------------
# Save-time check: what weights_only would refuse at resume is refused at save, naming the key path.


class _Box(dict):
    """A dict subclass: torch.save writes it, torch.load(weights_only=True) refuses it."""


class _Thing:
    pass


@pytest.mark.parametrize(
    ("bad", "where", "what"),
    [
        (np.zeros(3), r"state\['meta'\]\['buffer'\]\[1\]\['video'\]", "numpy"),
        (_Box(a=torch.ones(1)), r"state\['meta'\]\['buffer'\]\[1\]\['video'\]", "subclass of dict"),
        (_Thing(), r"state\['meta'\]\['buffer'\]\[1\]\['video'\]", "_Thing"),
        (np.float32(1.0), r"state\['meta'\]\['buffer'\]\[1\]\['video'\]", "numpy"),
        (collections.defaultdict(list), r"state\['meta'\]\['buffer'\]\[1\]\['video'\]", "defaultdict"),
    ],
    ids=["numpy-array", "dict-subclass", "object", "numpy-scalar", "defaultdict"],
)
def test_save_refuses_what_weights_only_would_refuse_naming_the_key_path(tmp_path: Path, bad: object, where: str,
                                                                         what: str) -> None:
    state = {"model": {"w": torch.ones(2)}, "meta": {"buffer": [{"video": torch.ones(1)}, {"video": bad}]}}
    # The premise: torch itself writes this state and refuses it only when reading it back.
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "plain.pt", weights_only=True)
    (tmp_path / "plain.pt").unlink()
    path = tmp_path / "run" / "last.pt"
    with pytest.raises(CheckpointError, match=where) as info:
        save_checkpoint(state, path)
    assert str(path) in str(info.value) and what in str(info.value)
    assert not path.parent.exists() or list(path.parent.iterdir()) == []  # nothing written


def test_save_refuses_a_dict_key_of_a_refused_type(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"state\['k'\]\[.*\] \(a key\) is a numpy"):
        save_checkpoint({"k": {np.int64(3): 1}}, tmp_path / "c.pt")


def test_everything_weights_only_reads_passes_the_check_and_round_trips(tmp_path: Path) -> None:
    state = {
        "t": torch.arange(3), "p": torch.nn.Parameter(torch.ones(2)), "size": torch.Size([2, 3]),
        "dtype": torch.float16, "device": torch.device("cpu"), "layout": torch.strided,
        "od": collections.OrderedDict(a=1), "counter": collections.Counter("aab"), "set": {1, 2},
        "nested": [(1, 2.5, "s", None, True, b"raw", bytearray(b"x"), 1 + 2j)],
        "rng": rng_state(),
    }
    path = tmp_path / "ok.pt"
    save_checkpoint(state, path)
    back = load_checkpoint(path)
    assert back["size"] == torch.Size([2, 3]) and back["counter"] == collections.Counter("aab")
    assert back["nested"] == state["nested"] and back["set"] == {1, 2}


def test_check_can_be_switched_off(tmp_path: Path) -> None:
    save_checkpoint({"x": np.zeros(1)}, tmp_path / "c.pt", check=False)
    with pytest.raises(CheckpointError, match="numpy"):
        load_checkpoint(tmp_path / "c.pt")


# --------------------------------------------------------------------------------------------------
# Stale temp files of torn saves.


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_save_removes_only_stale_temps_of_the_same_target(tmp_path: Path) -> None:
    from meltr import checkpoint as ck

    target = tmp_path / "last.pt"
    host = ck._HOST
    old = time.time() - 2 * ck.STALE_TEMP_AGE_S
    files = {
        "dead_writer": tmp_path / f".last.pt.{host}.{_dead_pid()}.abc_123.tmp",
        "live_writer": tmp_path / f".last.pt.{host}.{os.getppid()}.abc_124.tmp",
        "own_pid": tmp_path / f".last.pt.{host}.{os.getpid()}.abc_125.tmp",
        "other_host_fresh": tmp_path / ".last.pt.otherhost.1.abc_126.tmp",
        "other_host_old": tmp_path / ".last.pt.otherhost.2.abc_127.tmp",
        "legacy_fresh": tmp_path / ".last.pt.k2j4h5g6.tmp",
        "legacy_old": tmp_path / ".last.pt.q1w2e3r4.tmp",
        "other_target": tmp_path / f".best.pt.{host}.{_dead_pid()}.abc_128.tmp",
        "other_target_rank": tmp_path / ".last.pt.rank1.zz99xx88.tmp",
        "not_a_temp": tmp_path / "last.pt.1.tmp",
    }
    for p in files.values():
        p.write_bytes(b"x" * 10)
    for key in ("other_host_old", "legacy_old", "other_target_rank"):
        os.utime(files[key], (old, old))
    save_checkpoint({"x": 1}, target)
    gone = {k for k, p in files.items() if not p.exists()}
    assert gone == {"dead_writer", "other_host_old", "legacy_old"}
    assert load_checkpoint(target)["x"] == 1


def test_temp_name_carries_host_and_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meltr import checkpoint as ck

    seen: list[str] = []
    real = ck.os.replace

    def spy(src: str, dst: object) -> None:
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(ck.os, "replace", spy)
    save_checkpoint({"x": 1}, tmp_path / "c.pt")
    assert seen and seen[0].startswith(f".c.pt.{ck._HOST}.{os.getpid()}.") and seen[0].endswith(".tmp")


def test_read_weights_reads_any_torch_file_and_names_it_when_damaged(tmp_path: Path) -> None:
    # The helper load_official_meltr can use: no format_version needed, every failure a CheckpointError.
    from meltr.checkpoint import read_weights

    path = tmp_path / "meltr_official.pt"
    torch.save({"task_embedding.weight": torch.ones(3, 4)}, path)
    assert torch.equal(read_weights(path)["task_embedding.weight"], torch.ones(3, 4))
    data = path.read_bytes()
    for cut in sorted({0, 1, len(data) - 1} | set(range(0, len(data), max(1, len(data) // 30)))):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
            read_weights(bad)
        assert str(bad) in str(info.value)
    torch.save({"x": collections.defaultdict(list)}, path)
    with pytest.raises(CheckpointError, match="collections.defaultdict"):
        read_weights(path)
