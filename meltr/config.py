"""Strict YAML configs backed by dataclasses.

Each component owns a ``@dataclass XConfig``; a run is a dataclass of those. :func:`load` reads a YAML
file, applies ``--set dotted.key=value`` overrides and builds the dataclass with :func:`from_dict`,
which rejects unknown keys, wrong types and missing required fields with an error that names the file
and the dotted key. :func:`to_dict` is the inverse and yields only builtins, so a resolved config can
be written with :func:`dump` and stored in a checkpoint loadable with ``torch.load(weights_only=True)``.

A config dataclass may declare the keys it renamed, ``RENAMED: ClassVar[dict[str, str]] = {"old": "new"}``
(dotted paths relative to the dataclass, so a run config can also move a key between its sections:
``{"data.batch_size": "loader.batch_size"}``). :func:`from_dict` reads an old key as the new one with a
``FutureWarning`` (files and checkpoints written before the rename keep loading) and refuses both at once.

Example::

    cfg = load("configs/demo/cpu_tiny.yaml", RunConfig, overrides=["optim.lr=1e-4"])
    dump(cfg, run_dir / "config.yaml")
    assert from_dict(to_dict(cfg), RunConfig) == cfg
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import os
import re
import types
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from meltr.checkpoint import atomic_write
from meltr.deprecation import renamed_message

__all__ = [
    "ConfigError",
    "add_override_args",
    "apply_overrides",
    "dump",
    "from_dict",
    "load",
    "read_yaml",
    "to_dict",
]


class _Dataclass(Protocol):
    """Any dataclass (typeshed's ``DataclassInstance``, which meltr may not import: stdlib and torch only)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


T = TypeVar("T", bound=_Dataclass)  # a config is a dataclass

_NoneType = type(None)
_UNION_ORIGINS = (Union, types.UnionType)
_SUPPORTED = (
    "int, float, bool, str, Any, X | None, Literal[...], list[X], tuple[X, ...], tuple[X, Y], "
    "dict[str, X], nested dataclasses"
)


class ConfigError(ValueError):
    """A config that does not match its dataclass, or a malformed file or override.

    The message reads ``<source>: <dotted.key>: <detail>``; the parts are also kept as attributes.

    Args:
        detail: What is wrong.
        source: The file (or ``"<dict>"``) the config came from.
        key: Dotted path of the offending key, e.g. ``trainer.optim.lr`` or ``layers[2].dim``.
        override: The ``KEY=VALUE`` override that set the key, when known.
    """

    def __init__(
        self, detail: str, *, source: str | None = None, key: str = "", override: str | None = None
    ) -> None:
        self.detail = detail
        self.source = source
        self.key = key
        self.override = override
        # Set for "value has the wrong type at this exact key", so unions can report their full type.
        self.type_mismatch = False
        parts = [p for p in (source, key) if p]
        if override and parts:
            parts[-1] += f" (from override {override!r})"
        super().__init__(": ".join([*parts, detail]))


# --------------------------------------------------------------------------------------------------
# YAML dialect: YAML 1.1 reads `1e-4` and `3E5` as strings (it wants a dot and a signed exponent).
# Users write `lr: 1e-4`, so the loader also resolves those as floats; the dumper knows the same rule,
# so a *string* such as "1e5" is quoted on dump and survives the round trip.
_EXP_FLOAT = re.compile(
    r"""^[-+]?(?:
        [0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+     # 1e-4, 3E5, 2.5e3, 1.e5
      | \.[0-9][0-9_]*[eE][-+]?[0-9]+                 # .5e-3
    )$""",
    re.X,
)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """Safe loader that reads exponent floats and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys without a word; a strict config refuses them.
        # Merge keys (`<<`) may legitimately be shadowed, so only explicit keys are compared.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class raises the proper error
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that quotes strings the loader would read as exponent floats."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+.0123456789"))


# --------------------------------------------------------------------------------------------------
# Paths and names used in messages.
def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "Any"
    if tp is _NoneType:
        return "None"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin in _UNION_ORIGINS:
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp)


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _type_error(value: Any, tp: Any, key: str, source: str) -> ConfigError:
    err = ConfigError(f"expected {_type_name(tp)}, got {_show(value)}", source=source, key=key)
    err.type_mismatch = True
    return err


# --------------------------------------------------------------------------------------------------
# Annotation checks: done once per dataclass, before any value is read, so a bad annotation fails
# loudly even when the field keeps its default.
_CHECKED: set[type] = set()


def _hints(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except NameError as e:
        raise TypeError(
            f"cannot resolve the annotations of {cls.__qualname__} ({e}); config dataclasses must be "
            "defined at module level with importable annotation names"
        ) from e


def _check_dataclass(cls: type, seen: set[type]) -> None:
    if cls in _CHECKED or cls in seen:
        return
    seen.add(cls)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.init:
            _check_annotation(hints[f.name], f"{cls.__qualname__}.{f.name}", seen)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for old, new in _renames(cls).items():
        if new.split(".")[0] not in names:
            raise TypeError(f"{cls.__qualname__}.RENAMED: {old!r} -> {new!r}, but {cls.__qualname__} has no field {new.split('.')[0]!r}")
    _CHECKED.add(cls)


def _check_annotation(tp: Any, where: str, seen: set[type]) -> None:
    origin, args = get_origin(tp), get_args(tp)
    if tp in (Any, int, float, bool, str, _NoneType, list, tuple, dict) or origin is Literal:
        return
    if origin in _UNION_ORIGINS or origin in (list, tuple):
        for a in args:
            if a is not Ellipsis:
                _check_annotation(a, where, seen)
        return
    if origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"{where}: unsupported annotation {_type_name(tp)}; dict keys must be str")
        if args:
            _check_annotation(args[1], where, seen)
        return
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _check_dataclass(tp, seen)
        return
    raise TypeError(f"{where}: unsupported annotation {_type_name(tp)}; supported: {_SUPPORTED}")


# --------------------------------------------------------------------------------------------------
# Conversion of plain values into annotated types.
def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    if tp is Any:
        return copy.deepcopy(value)  # never alias the caller's containers
    origin, args = get_origin(tp), get_args(tp)

    if origin is Literal:
        # Compare types too: `True == 1`, but True is not a valid choice for Literal[0, 1].
        for allowed in args:
            if type(value) is type(allowed) and value == allowed:
                return value
        err = ConfigError(
            f"expected one of {', '.join(repr(a) for a in args)}; got {_show(value)}", source=source, key=key
        )
        err.type_mismatch = True
        raise err

    if origin in _UNION_ORIGINS:
        if value is None:
            if _NoneType in args:
                return None
            raise _type_error(value, tp, key, source)
        errors: list[ConfigError] = []
        for member in (a for a in args if a is not _NoneType):
            try:  # first member that accepts the value wins, in the order written
                return _convert(value, member, key, source)
            except ConfigError as e:
                errors.append(e)
        # A deeper error (inside a nested dataclass, a validate() failure) is more useful than
        # "expected X | None"; a plain mismatch at this key reports the whole union.
        for err in errors:
            if not (err.type_mismatch and err.key == key):
                raise err
        raise _type_error(value, tp, key, source)

    if tp is _NoneType:
        if value is None:
            return None
        raise _type_error(value, tp, key, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(value, tp, key, source)
    if tp is int:
        # bool is an int subclass; `epochs: true` is a mistake, not 1.
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _type_error(value, tp, key, source)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _type_error(value, tp, key, source)
    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise _type_error(value, tp, key, source)

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(value, tp, key, source)
        raise _type_error(value, tp, key, source)

    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, tp, key, source)
        item_tp = args[0] if args else Any
        return [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]

    if tp is tuple or origin is tuple:
        # YAML has no tuples; a list is the on-disk form.
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, tp, key, source)
        if tp is tuple or (len(args) == 2 and args[1] is Ellipsis):
            item_tp = args[0] if args else Any
            return tuple(_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            err = ConfigError(
                f"expected {_type_name(tp)} ({len(args)} items), got {len(value)} items: {_show(value)}",
                source=source, key=key,
            )
            err.type_mismatch = True
            raise err
        return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))

    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise _type_error(value, tp, key, source)
        item_tp = args[1] if args else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"mapping keys must be str, got {_show(k)}", source=source, key=key)
            out[k] = _convert(v, item_tp, _join(key, k), source)
        return out

    raise TypeError(f"{_join(source, key)}: unsupported annotation {_type_name(tp)}; supported: {_SUPPORTED}")


# --------------------------------------------------------------------------------------------------
# Renamed keys: a dataclass's RENAMED table, applied to its data before the strict checks.
def _renames(cls: type) -> dict[str, str]:
    renames = getattr(cls, "RENAMED", None) or {}
    if not isinstance(renames, Mapping):
        raise TypeError(f"{cls.__qualname__}.RENAMED must be a dict of old -> new dotted keys, got {type(renames).__name__}")
    return dict(renames)


def _pop_path(data: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    """Removes ``data[p0][p1]...`` when every level is a mapping holding it: ``(found, value)``."""
    node: Any = data
    for part in parts[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return False, None
    if parts[-1] not in node:
        return False, None
    return True, node.pop(parts[-1])


def _apply_renames(data: Mapping[str, Any], cls: type, key: str, source: str) -> Mapping[str, Any]:
    """``data`` with each old key of ``cls.RENAMED`` moved to its new place (a copy; ``data`` is not
    changed), each with a ``FutureWarning``; an old key beside its new one is a :class:`ConfigError`."""
    renames = _renames(cls)
    if not renames or not any(old.split(".")[0] in data for old in renames):
        return data
    out = copy.deepcopy(dict(data))
    for old, new in renames.items():
        found, value = _pop_path(out, old.split("."))
        if not found:
            continue
        *parents, last = new.split(".")
        node = out
        for depth, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{old!r} is renamed {new!r}, but {'.'.join(parents[:depth + 1])!r} is not a mapping",
                                  source=source, key=_join(key, old))
            node = child
        if last in node:
            raise ConfigError(f"both {old!r} (its old name) and {new!r} are set: keep {new!r} only",
                              source=source, key=_join(key, old))
        node[last] = value
        warnings.warn(renamed_message(_join(key, old), _join(key, new), source), FutureWarning, stacklevel=2)
    return out


def _build(data: Mapping[str, Any], cls: type[T], key: str, source: str) -> T:
    if not isinstance(data, Mapping):
        raise _type_error(data, cls, key, source)
    data = _apply_renames(data, cls, key, source)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}

    for k in data:
        if k not in fields:
            allowed = sorted(fields)
            hint = difflib.get_close_matches(str(k), allowed, n=1)
            did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
            raise ConfigError(
                f"unknown key; {did_you_mean}allowed keys: {', '.join(allowed)}",
                source=source, key=_join(key, str(k)),
            )

    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(key, name)
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], sub, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"missing required field (type {_type_name(hints[name])})", source=source, key=sub
            )

    # A ValueError from __post_init__ or validate() is a config error at this dataclass's path.
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ValueError as e:
        detail = e.detail if isinstance(e, ConfigError) else str(e)
        raise ConfigError(detail or type(e).__name__, source=source, key=key) from e
    return obj


def from_dict(data: Mapping[str, Any], cls: type[T], source: str = "<dict>") -> T:
    """Builds the dataclass ``cls`` from plain (YAML-like) data, strictly.

    Unknown keys, missing required fields and values of the wrong type raise :class:`ConfigError`
    naming ``source`` and the dotted key; a key the dataclass renamed (its ``RENAMED`` table) is read
    as the new one, with a ``FutureWarning``. ``int`` is accepted for ``float`` fields (and converted);
    ``bool`` is never accepted for ``int``/``float``. Lists are accepted for tuple fields. After
    construction the dataclass's ``validate()`` method, if any, is called; a ``ValueError`` from it
    becomes a :class:`ConfigError` at that dataclass's path.

    Args:
        data: Mapping of field names to plain values (nested mappings for nested dataclasses).
        cls: The dataclass type to build.
        source: Where ``data`` came from (a file path), used in error messages.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: If ``data`` does not fit ``cls`` or ``validate()`` rejects it.
        TypeError: If ``cls`` is not a dataclass or uses an unsupported annotation.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    _check_dataclass(cls, set())
    return _build(data, cls, "", source)


# --------------------------------------------------------------------------------------------------
def _plain(value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # init=False fields are derived; writing them out would make from_dict reject the result.
        return {f.name: _plain(getattr(value, f.name), _join(key, f.name))
                for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"to_dict: {key or '<root>'} has a non-str key {k!r}")
            out[k] = _plain(v, _join(key, k))
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    # Exact builtins only: subclasses (numpy scalars, IntEnum) break safe_dump and weights_only loads.
    if value is None:
        return None
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    raise TypeError(
        f"to_dict: {key or '<root>'} holds a value of type {type(value).__name__}, "
        "which is not a plain YAML value"
    )


def to_dict(obj: Any) -> dict[str, Any]:
    """Converts a config dataclass into a plain dict of builtins (the inverse of :func:`from_dict`).

    Nested dataclasses become dicts and tuples become lists, so the result can be written with
    ``yaml.safe_dump`` and stored in a checkpoint read with ``torch.load(weights_only=True)``.
    ``from_dict(to_dict(x), type(x)) == x`` holds for every supported field type (for ``Any`` fields
    it holds when the value is already made of lists, dicts and scalars).

    Args:
        obj: A dataclass instance.

    Returns:
        A new dict; mutating it does not touch ``obj``.

    Raises:
        TypeError: If ``obj`` is not a dataclass instance or holds a value that is not a plain builtin.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {type(obj).__name__}")
    plain: dict[str, Any] = _plain(obj, "")  # a dataclass instance becomes a dict
    return plain


# --------------------------------------------------------------------------------------------------
def _split_override(override: str, source: str) -> tuple[list[str], str]:
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or any(not p.strip() for p in parts):
        raise ConfigError(
            f"malformed override {override!r}; expected KEY=VALUE, e.g. optim.lr=1e-4", source=source
        )
    return [p.strip() for p in parts], text


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """Applies ``dotted.key=value`` overrides to a config dict.

    Each value is parsed as YAML (with exponent floats such as ``1e-4`` read as floats), so
    ``optim.lr=1e-4`` gives a float, ``amp=true`` a bool, ``betas=[0.9,0.98]`` a list and
    ``name='123'`` a string. Missing intermediate mappings (or ``null`` ones) are created. A mapping
    value replaces the old value rather than merging into it. Later overrides win. Unknown keys are
    not checked here; :func:`from_dict` rejects them.

    Args:
        data: The config as loaded from YAML; not modified.
        overrides: Strings of the form ``dotted.key=value``.
        source: The config file, used in error messages.

    Returns:
        A new dict with the overrides applied.

    Raises:
        ConfigError: If an override is malformed, its value is not valid YAML, or it descends
            into a value that is not a mapping.
    """
    out = copy.deepcopy(dict(data))
    for override in overrides:
        parts, text = _split_override(override, source)
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {override!r}: value is not valid YAML ({e})", source=source) from e
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(
                    f"override {override!r} descends into a {type(child).__name__}, not a mapping",
                    source=source, key=".".join(parts[: depth + 1]),
                )
            node = child
        node[parts[-1]] = value
    return out


def _blame(key: str, overrides: Sequence[str], source: str) -> str | None:
    """The last override that set ``key``, a parent of it, or a child under an unknown key."""
    if not key:
        return None
    for override in reversed(overrides):
        okey = ".".join(_split_override(override, source)[0])
        if key == okey or key.startswith((okey + ".", okey + "[")) or okey.startswith(key + "."):
            return override
    return None


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a YAML config file, read strictly: exponent floats (``1e-4``) are floats, duplicate
    keys are refused, an empty file is an empty mapping. :func:`load` reads its file with it; a launcher
    that merges several files before :func:`from_dict` reads each with it.

    Raises:
        ConfigError: If the file is missing or unreadable, is not valid YAML (the message gives the line),
            has duplicate keys, or is not a mapping at the top level.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError("config file not found", source=source) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file ({e})", source=source) from e

    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = e.problem or e.context or "syntax error"
        raise ConfigError(f"invalid YAML at {where}: {problem}", source=source) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", source=source) from e

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"top level must be a mapping of keys to values, got a {type(data).__name__}", source=source
        )
    return data


def load(path: str | os.PathLike[str], cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Reads a YAML config file, applies overrides and builds ``cls`` strictly.

    An empty file means "all defaults". Errors name the file, and for bad values the dotted key;
    when the key was set by an override, the message quotes that override.

    Args:
        path: The YAML file.
        cls: The dataclass type to build (e.g. ``RunConfig``).
        overrides: ``dotted.key=value`` strings, applied in order (see :func:`apply_overrides`).

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: If the file is missing or unreadable, is not valid YAML (the message gives the
            line), has duplicate keys, is not a mapping at the top level, or does not fit ``cls``.
        TypeError: If ``cls`` uses an unsupported annotation.
    """
    source = str(path)
    data = read_yaml(path)
    data = apply_overrides(data, overrides, source)
    try:
        return from_dict(data, cls, source=source)
    except ConfigError as e:
        override = None if e.override else _blame(e.key, overrides, source)
        if override is None:
            raise
        blamed = ConfigError(e.detail, source=e.source, key=e.key, override=override)
        raise blamed.with_traceback(e.__traceback__) from e.__cause__


def dump(obj: Any, path: str | os.PathLike[str]) -> None:
    """Writes a config dataclass as YAML (field order kept), creating parent directories.

    The file is written to a temporary file in the same directory and then renamed over ``path``,
    so a crash never leaves a half-written config behind.

    Args:
        obj: A dataclass instance (see :func:`to_dict`).
        path: Destination file, typically ``run_dir/config.yaml``.
    """
    text = yaml.dump(
        to_dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def add_override_args(parser: argparse.ArgumentParser) -> None:
    """Adds ``--set KEY=VALUE`` (repeatable) to a CLI parser; the values land in ``args.overrides``.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument(
        "--set",
        action="append",
        dest="overrides",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable; the value is parsed as YAML)",
    )
