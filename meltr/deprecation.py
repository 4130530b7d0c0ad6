"""Renamed public names, kept working for one release with a warning that names the new one.

Python keywords go through :func:`renamed_kwargs` (a ``DeprecationWarning``, the convention for code);
config keys through ``RENAMED`` tables that :mod:`meltr.config` applies (a ``FutureWarning``, which
Python shows by default, since whoever runs a YAML file is a user, not a developer). Both word the
warning with :func:`renamed_message`, so every renamed name reads the same.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

__all__ = ["renamed_message", "renamed_kwargs"]

F = TypeVar("F", bound=Callable[..., Any])


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
