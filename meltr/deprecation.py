"""Renamed public names, kept working for one release with a warning that names the new one.

Python keywords go through :func:`renamed_kwargs` (a ``DeprecationWarning``, the convention for code);
config keys through ``RENAMED`` tables that :mod:`meltr.config` applies (a ``FutureWarning``, which
Python shows by default, since whoever runs a YAML file is a user, not a developer). Both word the
warning with :func:`renamed_message`, so every renamed name reads the same.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["renamed_message", "renamed_kwargs", "renamed_attribute", "renamed_fields"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def renamed_message(old: str, new: str, where: str) -> str:
    """``"<where>: 'old' is renamed 'new' (the old name is accepted until the next release)"``."""
    return f"{where}: {old!r} is renamed {new!r} (the old name is accepted until the next release)"


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accepts each old keyword ``old=`` as the new one (``@renamed_kwargs(primary="target_loss")``)
    with a ``DeprecationWarning`` at the caller; both at once is a ``TypeError``.

    Args:
        renames: ``old_keyword="new_keyword"``.
    """

    def wrap(fn: F) -> F:
        where = fn.__qualname__

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{where}() got both {old}= and its new name {new}=: pass {new}= only")
                    warnings.warn(renamed_message(f"{old}=", f"{new}=", where), DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap


class renamed_attribute:  # noqa: N801 - used like property
    """Class attribute: reading the old name ``old`` returns the attribute ``new`` with a ``DeprecationWarning``
    (``primary = renamed_attribute("target_loss")`` on a class whose instances have ``target_loss``).

    Args:
        new: The attribute's new name.
    """

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = new

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        where = type(obj).__qualname__
        warnings.warn(renamed_message(f".{self.old}", f".{self.new}", where), DeprecationWarning, stacklevel=2)
        return getattr(obj, self.new)


def renamed_fields(cls: C) -> C:
    """Class decorator for a config dataclass with a ``RENAMED`` table (``{"old": "new"}``, which
    :mod:`meltr.config` applies to files and dicts): each renamed field of the class itself (a key
    without a dot) also works as a Python keyword (``TrainerConfig(primary=...)``) and an attribute,
    with a ``DeprecationWarning``. Put it above ``@dataclass``."""
    flat = {old: new for old, new in getattr(cls, "RENAMED", {}).items() if "." not in old and "." not in new}
    cls.__init__ = renamed_kwargs(**flat)(cls.__init__)  # type: ignore[misc]
    for old, new in flat.items():
        alias = renamed_attribute(new)
        alias.old = old
        setattr(cls, old, alias)
    return cls
