"""One engine that loads official checkpoints into our backbones, driven by per-backbone key tables.

A backbone describes each official layout as data (:class:`Layout`): sentinel keys that identify it,
legacy substring renames (UniVL's ``gamma``/``beta``), a key table official -> ours (``{}`` stands for
any run of characters, so one row covers every layer), the official keys a model may leave unused and
the model keys a checkpoint may leave at init. :func:`load_official` then

1. reads the file with ``torch.load(weights_only=True)`` (never an unsafe fallback), unwraps
   ``state_dict``/``model`` containers and strips ``module.``/``_orig_mod.`` prefixes;
2. detects the layout by its sentinels; a file named as one of the backbone's :class:`PretrainedSpec` entries
   must have that entry's layout (and digest, when one is recorded);
3. renames the keys, checks every shape, and raises :class:`CheckpointMismatchError` naming the file,
   the layout and the first offending keys for anything outside the allowlists;
4. loads strictly (keys left at init are filled with the model's own tensors, so nothing is silent) and
   returns a :class:`LoadReport` of what was loaded, ignored and left at init.

:func:`to_official` is the inverse: our state dict in a layout's official key names.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["PretrainedSpec", "Layout", "LoadReport", "CheckpointMismatchError", "error_reason", "find_spec", "check_spec",
           "read_state_dict", "detect_layout", "convert_keys", "load_official", "to_official"]

log = logging.getLogger(__name__)


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not match the layout it claims (unexpected, missing or misshapen keys)."""


@dataclass(frozen=True)
class PretrainedSpec:
    """An official pretrained checkpoint (paths are always given by the user; nothing is downloaded by
    library code). :func:`load_official` recognises the file by its name and then requires ``layout`` (and
    ``sha256`` when known); a missing file's error says where to get it (``source``)."""

    filename: str  # the official file name
    layout: str  # the Layout.name it is expected to have
    source: str  # where users get it
    sha256: str | None = None  # known digest, or None when it could not be verified here
    notes: str = ""  # provenance and caveats


@dataclass(frozen=True)
class Layout:
    """One official state-dict layout of a backbone.

    Attributes:
        name: Layout name used in reports and errors (e.g. ``"pretrain_stage_two"``).
        sentinels: Keys (after cleaning) that must all be present for this layout.
        key_map: Official -> ours, with ``{}`` matching any substring (e.g. ``"a.{}.b": "x.{}.y"``);
            keys without a matching row keep their name. A value of ``None`` drops the key.
        legacy_renames: Substring replacements applied to every official key first, in order.
        ignorable: Glob patterns of official keys that a model may leave unused.
        may_stay_at_init: Glob patterns of model keys that this layout may not provide.
    """

    name: str
    sentinels: tuple[str, ...]
    key_map: Mapping[str, str | None] = field(default_factory=dict)
    legacy_renames: tuple[tuple[str, str], ...] = ()
    ignorable: tuple[str, ...] = ()
    may_stay_at_init: tuple[str, ...] = ()


@dataclass
class LoadReport:
    """What :func:`load_official` did."""

    file: str
    layout: str
    loaded: list[str] = field(default_factory=list)  # model keys filled from the checkpoint
    ignored: list[str] = field(default_factory=list)  # official keys the model does not use (allowed)
    left_at_init: list[str] = field(default_factory=list)  # model keys the checkpoint lacks (allowed)
    renamed: dict[str, str] = field(default_factory=dict)  # official -> ours, where the name changed
    pretrained: str = ""  # the PretrainedSpec filename the file was recognised as ("" when none)

    def summary(self) -> str:
        return (
            f"{self.file} [{self.layout}]: loaded {len(self.loaded)}, ignored {len(self.ignored)} "
            f"({', '.join(self.ignored[:5])}{'...' if len(self.ignored) > 5 else ''}), "
            f"left at init {len(self.left_at_init)} ({', '.join(self.left_at_init[:5])}{'...' if len(self.left_at_init) > 5 else ''})"
        )


def error_reason(error: BaseException) -> str:
    """The informative line of a load error, never empty: an empty file makes torch raise with an empty
    message (``EOFError()``), and torch's weights_only refusal opens with generic advice."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if "GLOBAL" in line or "blocked" in line or "Unsupported" in line]
    reason = (specific or lines[:1] or [""])[0]
    name = type(error).__name__
    if not reason:
        return f"{name} (empty or truncated file?)"
    return reason if reason.startswith(name) else f"{name}: {reason}"


_PREFIXES = ("module.", "_orig_mod.")


def _clean(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def find_spec(label: str, specs: Sequence[PretrainedSpec]) -> PretrainedSpec | None:
    """The spec whose ``filename`` is the base name of ``label`` (a path), or None."""
    name = os.path.basename(label)
    return next((spec for spec in specs if spec.filename == name), None)


def check_spec(path: str | os.PathLike[str], spec: PretrainedSpec) -> None:
    """Checks a file named as ``spec``: it exists (else the error says where to get it) and, when the spec
    records a digest, has that SHA-256.

    Raises:
        FileNotFoundError: the file does not exist (names it and ``spec.source``).
        CheckpointMismatchError: the digest differs (names both digests).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path} (the official {spec.filename}; get it from {spec.source})")
    if spec.sha256 is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec.sha256.lower():
        raise CheckpointMismatchError(f"{path}: SHA-256 {digest.hexdigest()} is not the official {spec.filename}'s "
                                      f"{spec.sha256} (a partial download or another file under that name?)")


def read_state_dict(source: str | os.PathLike[str] | Mapping[str, Tensor], label: str | None = None) -> tuple[dict[str, Tensor], str]:
    """Reads a state dict safely; returns it with cleaned keys and a label for messages.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``. ``label`` names an
    in-memory dict in messages (e.g. the file it was read from by another reader); default ``<state_dict>``.
    """
    raw: object
    if isinstance(source, Mapping):
        raw, label = source, label or "<state_dict>"
    else:
        label = str(source)
        if not os.path.exists(source):
            raise FileNotFoundError(f"checkpoint not found: {label}")
        try:
            raw = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refusal or a corrupt file: never fall back to unsafe pickle
            raise CheckpointMismatchError(f"{label}: cannot be read safely (weights_only=True): {error_reason(e)}") from e
        for wrapper in ("state_dict", "model"):
            if isinstance(raw, Mapping) and wrapper in raw and isinstance(raw[wrapper], Mapping):
                raw = raw[wrapper]
                break
    if not isinstance(raw, Mapping) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointMismatchError(f"{label}: not a state dict of tensors")
    return {_clean(k): v for k, v in raw.items()}, label


def detect_layout(keys: Iterable[str], layouts: Sequence[Layout], label: str = "<state_dict>") -> Layout:
    """The layout whose sentinels are all present; the most specific (most sentinels) wins."""
    keys = set(keys)
    matches = [lay for lay in layouts if all(s in keys for s in lay.sentinels)]
    if not matches:
        raise CheckpointMismatchError(
            f"{label}: no known layout matches; tried {[lay.name for lay in layouts]} (sentinels "
            f"{ {lay.name: lay.sentinels for lay in layouts} }); first keys {sorted(keys)[:10]}"
        )
    return max(matches, key=lambda lay: len(lay.sentinels))


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(re.escape("{}"), "(.+?)") + "$")


def _map_key(key: str, key_map: Mapping[str, str | None]) -> str | None:
    for off, ours in key_map.items():
        m = _pattern(off).match(key)
        if m:
            if ours is None:
                return None
            out = ours
            for g in m.groups():
                out = out.replace("{}", g, 1)
            return out
    return key


def convert_keys(state: Mapping[str, Tensor], layout: Layout) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """Applies legacy renames and the key table; returns (ours, renamed official->ours, dropped)."""
    out: dict[str, Tensor] = {}
    renamed: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in state.items():
        new = key
        for old, rep in layout.legacy_renames:
            new = new.replace(old, rep)
        mapped = _map_key(new, layout.key_map)
        if mapped is None:
            dropped.append(key)
            continue
        if mapped != key:
            renamed[key] = mapped
        out[mapped] = value
    return out, renamed, dropped


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_official(model: nn.Module, source: str | os.PathLike[str] | Mapping[str, Tensor], layouts: Sequence[Layout],
                  label: str | None = None, specs: Sequence[PretrainedSpec] = ()) -> LoadReport:
    """Loads an official checkpoint into ``model``; raises on anything outside the layout's allowlists.

    ``label`` names an in-memory ``source`` in the report and in errors (see :func:`read_state_dict`); it may be
    the path an in-memory state dict was read from. A file (``source`` or ``label``) named as one of ``specs``
    is checked by :func:`check_spec` and must have that spec's layout, which is then the only one tried.

    Raises:
        FileNotFoundError: the file does not exist (the message names it, and where to get an official one).
        CheckpointMismatchError: unreadable file, unknown layout (or not the spec's), a digest that is not the
            spec's, unexpected or missing keys, or shape mismatches, naming the file, the layout and the first
            10 offending keys.
    """
    path = label if label is not None else (None if isinstance(source, Mapping) else str(source))
    spec = find_spec(path, specs) if path is not None else None
    if spec is not None and path is not None:
        if not isinstance(source, Mapping) or os.path.isfile(path):  # a label may name no file
            check_spec(path, spec)
        layouts = [lay for lay in layouts if lay.name == spec.layout]
        if not layouts:
            raise CheckpointMismatchError(f"{path}: the official {spec.filename} has layout {spec.layout!r}, which this "
                                          "loader does not read (another entry point of the backbone?)")
    state, label = read_state_dict(source, label)
    layout = detect_layout(state.keys(), layouts, label)
    ours, renamed, dropped = convert_keys(state, layout)
    own = model.state_dict()
    unexpected = sorted(k for k in ours if k not in own and not _matches(k, layout.ignorable))
    missing = sorted(k for k in own if k not in ours and not _matches(k, layout.may_stay_at_init))
    bad_shape = sorted(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in ours.items() if k in own and v.shape != own[k].shape)
    if unexpected or missing or bad_shape:
        raise CheckpointMismatchError(
            f"{label} [layout {layout.name}] does not fit {type(model).__name__}: unexpected keys {unexpected[:10]}, "
            f"missing keys {missing[:10]}, shape mismatches {bad_shape[:10]}"
        )
    report = LoadReport(label, layout.name, renamed=renamed, pretrained=spec.filename if spec else "")
    report.ignored = sorted(dropped + [k for k in ours if k not in own])
    report.left_at_init = sorted(k for k in own if k not in ours)
    report.loaded = sorted(k for k in own if k in ours)
    # Strict load of a complete dict: allowed gaps keep the model's own (initial) tensors.
    full = {k: (ours[k].to(v.dtype) if k in ours else v) for k, v in own.items()}
    model.load_state_dict(full, strict=True)
    log.info("%s", report.summary())
    return report


def to_official(model: nn.Module, layout: Layout, official_keys: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Our state dict under the layout's official names (inverse of the key table; legacy renames are
    not re-applied, since the official loader accepts both spellings).

    Args:
        official_keys: If given, keep only these official keys (e.g. the layout's key list).
    """
    inverse = {v: k for k, v in layout.key_map.items() if v is not None}
    out = {}
    for key, value in model.state_dict().items():
        off = _map_key(key, inverse)
        if off is not None and (official_keys is None or off in official_keys):
            out[off] = value
    return out
