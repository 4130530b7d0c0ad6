"""The on-disk layer for meltr's own training checkpoints: atomic save, safe load, RNG state.

This module knows nothing about what a checkpoint holds; the trainer builds the state dict. It only
guarantees three things:

* **Atomic writes.** :func:`save_checkpoint` writes to a temp file in the destination directory,
  fsyncs it and ``os.replace``-s it over the target, so a crash mid-save leaves the previous
  checkpoint intact.
* **Safe reads.** :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)`` and never
  falls back to unrestricted unpickling. A refused file raises :class:`CheckpointError` naming the
  file and the offending global.
* **Versioning.** Every checkpoint carries ``format_version``. Older files are upgraded step by step
  through ``_UPGRADES``; newer ones are refused.

RNG states are stored as tensors and plain Python values (:func:`rng_state`) so that they too load
under ``weights_only=True`` without an allowlist.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import random
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

try:  # numpy is optional: its global RNG is captured only when it is installed.
    import numpy as np
except ImportError:  # pragma: no cover - numpy is present in CI
    np = None  # type: ignore[assignment]

__all__ = [
    "FORMAT_VERSION",
    "atomic_write",
    "CheckpointError",
    "check_weights_only",
    "read_weights",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "export_safetensors",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION: int = 2
"""Version of the checkpoint layout this meltr writes; bump it and add an upgrader on change."""

# One entry per version step: ``_UPGRADES[v]`` turns a version-``v`` state into a version-``v + 1``
# state. Write each as ``_upgrade_vN_to_vN1(state) -> state`` and register it here.
def _upgrade_v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Version 2 keeps the meta-learner's state under ``meta`` (``meltr.MetaLearner.state_dict``)."""
    moves = {"meta_rng": "generator", "buffer": "buffer", "meta_pos": "meta_pos",
             "meta_optimizer": "optimizer", "meta_scheduler": "scheduler"}
    meta = {new: state.pop(old) for old, new in moves.items() if old in state}
    if "step" in state:
        meta["steps"] = state["step"]  # the meta step ran on the same step counter
    if meta:
        state["meta"] = meta
    return state


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_v1_to_v2}

_SAFE_CONTENT_HINT = (
    "meltr checkpoints only contain tensors and plain Python containers "
    "(dict, list, tuple, str, int, float, bool, None); convert other objects to these before "
    "saving."
)

# torch phrases a weights-only refusal as "Unsupported global: GLOBAL mod.Name was not ..." or
# "unsupported GLOBAL mod.name whose module mod is blocked"; the dotted name follows "GLOBAL".
_GLOBAL_RE = re.compile(r"GLOBAL\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")


def _read_umask() -> int:
    # Python has no umask getter; setting and restoring it is racy only against other threads that
    # create files at that instant, so do it once at import time rather than on every save.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, is refused by the safe loader, or has a bad version."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str], check: bool = True) -> None:
    """Writes ``state`` to ``path`` atomically.

    The state is written with ``torch.save`` into a temp file (``.<name>.<host>.<pid>.XXXX.tmp``) in the
    same directory, flushed, fsynced and moved over ``path`` with ``os.replace``; the directory is then
    fsynced (best effort). If anything fails, the temp file is removed and the previous file at
    ``path`` (if any) is untouched. The parent directory is created if needed. Temp files of the same
    target left by an earlier save that was killed (SIGKILL, power loss) are removed first; see
    :func:`_remove_stale_temps` for the rule that keeps a live writer's file.

    Args:
        state: The checkpoint contents: tensors and plain Python containers only, so that
            :func:`load_checkpoint` can read them back with ``weights_only=True``. The top level is
            copied, and ``format_version`` is set to :data:`FORMAT_VERSION` if absent; the caller's
            dict is not modified.
        path: Destination file.
        check: Walk ``state`` before writing anything and refuse what ``weights_only=True`` would
            refuse at load time (:func:`check_weights_only`); on by default so that a bad state
            fails at save time, not at resume after a crash.

    Raises:
        TypeError: If ``state`` is not a dict.
        CheckpointError: If ``check`` and ``state`` holds an object the safe loader refuses (the
            message names its key path and type); nothing is written then.
    """
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
    state = dict(state)
    state.setdefault("format_version", FORMAT_VERSION)

    path = Path(path)
    if check:
        check_weights_only(state, str(path))
    atomic_write(path, lambda f: torch.save(state, f))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> None:
    """Writes a file atomically: the one writer of the project (checkpoints, configs, data files).

    Calls ``write(file)`` on a binary temp file beside ``path``, flushes, fsyncs and ``os.replace``-s it
    over ``path``, then fsyncs the directory (best effort). The parent directory is created; the file gets
    the mode of the file it replaces, or what a plain ``open`` would give. On any failure (Ctrl-C
    included) the temp file is removed and ``path`` is untouched. Stale temps of the same target left by a
    killed writer are removed first (:func:`_remove_stale_temps`).

    Example::

        atomic_write("out/info.json", lambda f: f.write(json.dumps(info).encode()))
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    # Same directory as the target so that os.replace is a rename within one filesystem (atomic).
    # host and pid in the name let a later save tell a dead writer's leftover from a live writer's file.
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _set_mode(tmp_name, path)
        os.replace(tmp_name, path)
    except BaseException:
        # BaseException too: a Ctrl-C mid-save must not leave a stray temp file behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


# ----------------------------------------------------------------------------- save-time check
# What torch.load(weights_only=True) rebuilds (torch 2.13, torch._weights_only_unpickler): plain
# containers of exactly these types, numbers, strings, bytes, and torch's own tensor/metadata types.
_PLAIN_CONTAINERS = (dict, collections.OrderedDict, collections.Counter, list, tuple, set)
_PLAIN_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None))
_TORCH_LEAVES = (torch.Size, torch.dtype, torch.device, torch.layout, torch.qscheme)
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _refusal(value: Any) -> str | None:
    """Why the safe loader would refuse ``value`` itself (not its contents), or None."""
    kind = type(value)
    if kind in _TENSOR_TYPES or kind in _PLAIN_CONTAINERS or kind in _PLAIN_LEAVES or kind in _TORCH_LEAVES:
        return None
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, torch.Tensor):
        return f"a tensor subclass {name} (save a plain tensor: .as_subclass(torch.Tensor) or .data)"
    if isinstance(value, (dict, list, tuple)):
        return f"a {name}, a subclass of {kind.__mro__[1].__name__} (convert it to a plain {kind.__mro__[1].__name__})"
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        return f"a numpy value ({name}; convert it with torch.from_numpy or .item())"
    return f"a {name}"


def check_weights_only(state: Any, label: str = "<state>") -> None:
    """Raises if ``torch.load(weights_only=True)`` would refuse to read ``state`` back.

    Walks dicts (keys and values), lists, tuples and sets; every other object must be a tensor, a
    ``torch.Size``/dtype/device/layout, or a plain ``str``/``bytes``/number/bool/None. Exact types are
    required, as the safe unpickler requires them: a dict subclass or a numpy array saves fine and is
    refused only at load time.

    Args:
        state: What would be passed to ``torch.save``.
        label: Names the destination in the message.

    Raises:
        CheckpointError: naming ``label``, the key path (e.g. ``state['meta']['buffer'][3]['video']``) and the
            type.
    """
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("state", state)]
    while stack:
        where, value = stack.pop()
        why = _refusal(value)
        if why is not None:
            raise CheckpointError(
                f"refusing to save checkpoint {label}: {where} is {why}, which "
                f"torch.load(weights_only=True) cannot read back. {_SAFE_CONTENT_HINT}"
            )
        if not isinstance(value, _PLAIN_CONTAINERS) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                shown = f"{where}[{key!r}]"
                stack.append((f"{shown} (a key)", key))
                stack.append((shown, item))
        else:
            for i, item in enumerate(value):
                stack.append((f"{where}[{i}]", item))


# ---------------------------------------------------------------------------- stale temp files
def _host_tag() -> str:
    # os.uname has no Windows twin; there the computer name is in the environment.
    name = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
    return re.sub(r"[^A-Za-z0-9-]", "-", name or "host")[:40] or "host"


_HOST = _host_tag()
# A temp file whose writer cannot be identified is removed once it has not been written for this long:
# a live torch.save keeps writing, so its mtime stays fresh.
STALE_TEMP_AGE_S: float = 3600.0


def _remove_stale_temps(path: Path) -> list[Path]:
    """Removes leftovers of earlier saves to ``path`` that were killed mid-write; returns them.

    Only names of this target's temp pattern are considered (``.<name>.<host>.<pid>.XXXX.tmp`` and the
    older ``.<name>.XXXX.tmp``). The rule that never touches a live writer's file:

    * written on this host by another pid that no longer exists (``os.kill(pid, 0)`` fails with
      ``ProcessLookupError``): removed;
    * this process's own pid: kept (another thread may be saving);
    * another host (a shared filesystem), or the older name without a pid: removed only when it has not
      been modified for :data:`STALE_TEMP_AGE_S` seconds.
    """
    removed: list[Path] = []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp$")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        host, pid = match.group("host"), match.group("pid")
        if host == _HOST and pid is not None:
            if int(pid) == os.getpid() or _pid_alive(int(pid)):
                continue
        else:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMP_AGE_S:
                    continue
            except OSError:
                continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
            logger.info("removed %s, the temp file of a save to %s that did not finish", entry.path, path)
        except OSError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real pid: treat as alive (never remove on doubt)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _set_mode(tmp_name: str, path: Path) -> None:
    # mkstemp creates files 0600; give the checkpoint the permissions a plain torch.save would have
    # (or keep those of the file being replaced) so that e.g. a group eval job can still read it.
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_UMASK
    try:
        os.chmod(tmp_name, mode)
    except OSError:  # pragma: no cover - filesystems without POSIX modes
        pass


def _fsync_dir(directory: Path) -> None:
    # Persists the rename itself. Not every platform can open or fsync a directory (Windows cannot).
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_weights(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure raised as :class:`CheckpointError` naming the file.

    The reading half of :func:`load_checkpoint`, for any torch file (e.g. an official MELTR state dict): no
    ``format_version`` is required and nothing is upgraded. Never falls back to unrestricted unpickling.

    Raises:
        FileNotFoundError: If ``path`` is not an existing file.
        PermissionError: If it cannot be opened (the message names it).
        CheckpointError: If the file is truncated or corrupt (every cut point of a torch file: ``EOFError``,
            torch's ``RuntimeError``, ``OSError [Errno 22]`` ...) or names a global the safe loader refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        match = _GLOBAL_RE.search(str(exc))
        if match is not None:
            raise CheckpointError(
                f"refusing to load checkpoint {path}: it contains the global {match.group(1)!r}, "
                f"which the safe loader (weights_only=True) does not allow. {_SAFE_CONTENT_HINT}"
            ) from exc
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated, corrupt, or not written by torch.save"
        ) from exc
    except PermissionError:
        raise  # names the file already, and "corrupt" would be wrong
    except (RuntimeError, EOFError, ValueError, OSError, MemoryError, IndexError, KeyError, TypeError,
            AttributeError, OverflowError, UnicodeDecodeError) as exc:
        # Truncated zips surface as RuntimeError, empty files as EOFError, a cut inside a record's
        # header as OSError (Errno 22); keep torch's first line because the same RuntimeError type
        # also covers e.g. a CUDA map_location without CUDA.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated, corrupt, or not written by torch.save "
            f"({detail})"
        ) from exc

    return state


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint`, safely.

    Uses ``torch.load(..., weights_only=True)`` only; a file that needs arbitrary unpickling is
    refused, never retried unsafely. Files written by an older meltr are upgraded to
    :data:`FORMAT_VERSION` in memory.

    Args:
        path: Checkpoint file.
        map_location: Passed to ``torch.load``; ``"cpu"`` by default so that a GPU checkpoint
            loads anywhere.

    Returns:
        The state dict, with ``format_version == FORMAT_VERSION``.

    Raises:
        FileNotFoundError: If ``path`` is not an existing file.
        CheckpointError: If the file is truncated or corrupt, contains a non-allowlisted global,
            is not a dict with ``format_version``, or has a version this meltr cannot read.
    """
    path = Path(path)
    state = read_weights(path, map_location)

    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, "
            "expected a dict written by save_checkpoint"
        )
    if "format_version" not in state:
        raise CheckpointError(
            f"checkpoint {path} has no 'format_version'; "
            "it was not written by meltr.save_checkpoint"
        )
    return _upgrade(state, path)


def _upgrade(state: dict[str, Any], path: Path) -> dict[str, Any]:
    version = state["format_version"]
    # bool is an int subclass; True must not pass as version 1.
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(
            f"checkpoint {path} has a non-integer format_version {version!r}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version}: it was written by a newer meltr "
            f"(this one reads up to {FORMAT_VERSION}); upgrade meltr to load it"
        )
    while version < FORMAT_VERSION:
        upgrader = _UPGRADES.get(version)
        if upgrader is None:
            raise CheckpointError(
                f"checkpoint {path} has format_version {version}, and there is no upgrade from "
                f"version {version} to {version + 1}"
            )
        state = upgrader(state)
        version += 1
        state["format_version"] = version
    return state


def rng_state() -> dict[str, Any]:
    """Captures every global RNG a training run draws from, as ``weights_only``-loadable values.

    Returns:
        A dict with:

        * ``"python"``: ``{"version": int, "state": int64 tensor (625,), "gauss": float | None}``
          from ``random.getstate()``.
        * ``"numpy"`` (only if numpy is importable): ``{"bit_generator": str, "keys": int64 tensor
          (624,), "pos": int, "has_gauss": int, "cached_gaussian": float}`` from
          ``np.random.get_state()``.
        * ``"torch"``: uint8 tensor, the CPU generator state.
        * ``"cuda"`` (only if CUDA is available): list of uint8 tensors, one per device.
    """
    version, internal, gauss = random.getstate()
    # The Mersenne Twister words are < 2**32, so int64 holds them exactly.
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "torch": torch.get_rng_state().clone(),
    }
    if np is not None:
        legacy = np.random.get_state(legacy=True)
        assert isinstance(legacy, tuple)  # legacy=True gives the 5-tuple (the dict is legacy=False's form)
        name, keys, pos, has_gauss, cached = legacy
        state["numpy"] = {
            "bit_generator": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if torch.cuda.is_available():
        state["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the RNGs captured by :func:`rng_state` (the exact inverse).

    The ``"numpy"`` and ``"cuda"`` entries are optional. An entry that cannot be applied here (numpy
    not installed, no CUDA) is skipped with a warning, so a GPU run's checkpoint can still be
    evaluated on CPU.

    Args:
        state: The dict returned by :func:`rng_state`, possibly after a save/load round trip.

    Raises:
        ValueError: If the required ``"python"`` or ``"torch"`` entry is missing.
    """
    missing = [key for key in ("python", "torch") if key not in state]
    if missing:
        raise ValueError(f"RNG state is missing {missing}; got keys {sorted(state)}")

    py = state["python"]
    gauss = py["gauss"]
    random.setstate(
        (
            int(py["version"]),
            tuple(int(x) for x in py["state"].tolist()),
            None if gauss is None else float(gauss),
        )
    )
    # set_rng_state needs a CPU ByteTensor; a GPU map_location at load time has moved it.
    torch.set_rng_state(state["torch"].to(device="cpu", dtype=torch.uint8))

    if "numpy" in state:
        if np is None:
            logger.warning("checkpoint has a numpy RNG state but numpy is not installed; skipped")
        else:
            nps = state["numpy"]
            np.random.set_state(
                (
                    nps["bit_generator"],
                    nps["keys"].cpu().numpy().astype(np.uint32),
                    int(nps["pos"]),
                    int(nps["has_gauss"]),
                    float(nps["cached_gaussian"]),
                )
            )

    if "cuda" in state:
        cuda_states = [s.to(device="cpu", dtype=torch.uint8) for s in state["cuda"]]
        if not torch.cuda.is_available():
            logger.warning("checkpoint has CUDA RNG states but CUDA is not available; skipped")
        else:
            n_devices = torch.cuda.device_count()
            if len(cuda_states) != n_devices:
                logger.warning(
                    "checkpoint has CUDA RNG states for %d devices, this process sees %d; "
                    "restoring the first %d",
                    len(cuda_states),
                    n_devices,
                    min(len(cuda_states), n_devices),
                )
            torch.cuda.set_rng_state_all(cuda_states[:n_devices])


def export_safetensors(checkpoint: str | os.PathLike[str] | dict[str, Any], out: str | os.PathLike[str], key: str = "model") -> Path:
    """Exports the weights of a meltr checkpoint to a ``safetensors`` file (weights only, no pickle).

    The file holds the ``state_dict`` of the bare model with tied weights stored once (as Hugging Face
    saves them), so ``safetensors.torch.load_model(model, out)`` restores it strictly (it knows the
    tied names). Its metadata records the loss names, the step, the format and the tied names.

    Args:
        checkpoint: A ``best.pt`` / ``last.pt`` path, or a state dict as :meth:`meltr.Trainer.weights_dict`
            returns it.
        out: Destination ``.safetensors`` file (written atomically).
        key: Which state dict to export: ``model`` (default) or ``combiner``.

    Returns:
        ``out`` as a path.

    Raises:
        CheckpointError: the checkpoint has no ``key`` state dict.
        ImportError: ``safetensors`` is not installed (``pip install meltr[export]``).
    """
    try:
        from safetensors.torch import save
    except ImportError as exc:  # pragma: no cover - pinned in CI
        raise ImportError("exporting to safetensors needs the safetensors package: pip install 'meltr[export]'") from exc
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "<state dict>"
    state = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    weights = state.get(key)
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{source}: no {key!r} weights to export (keys: {sorted(state)})")
    # safetensors refuses tensors that share memory: keep one name per tied tensor (the first, in
    # state-dict order) and record the others, which load_model() fills from the model's own ties.
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple[object, ...], str] = {}  # storage identity (pointer, offset, shape, stride, dtype) -> first name
    tied: dict[str, str] = {}
    for k, v in weights.items():
        if not isinstance(v, torch.Tensor):
            continue
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if v.numel() and ident in seen:
            tied[k] = seen[ident]
            continue
        seen[ident] = k
        tensors[k] = v.detach().to("cpu").contiguous().clone()
    metadata = {"format": "pt", "producer": "meltr", "state": key, "tied": json.dumps(tied),
                "loss_names": ",".join(state.get("loss_names", [])), "step": str(state.get("step", ""))}
    out = Path(out)
    atomic_write(out, lambda f: f.write(save(tensors, metadata=metadata)))
    return out
