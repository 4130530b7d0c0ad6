"""Restricted unpickling of the official dataset pickles.

UniVL's feature and annotation files are plain pickles. ``pickle.load`` on them would run whatever
callable a tampered file names, so every read in ``data`` goes through :func:`load_pickle`, which only
resolves the globals those files need:

* numpy array reconstruction: ``_reconstruct`` + ``ndarray`` + ``dtype`` (protocols 0-4) and
  ``_frombuffer`` (protocol 5, the default of Python >= 3.14), each under both module spellings,
  because pickles written under numpy 1.x say ``numpy.core.*`` and numpy >= 2 writes ``numpy._core.*``;
* numpy scalars (``multiarray.scalar``), e.g. a ``np.float64`` start time;
* builtin containers and numbers that older protocols reach through a global (``set``, ``complex``,
  ``bytes`` via ``_codecs.encode``), plus ``collections.OrderedDict``.

Object arrays of ``str`` (the YouCook2 data pickle) need nothing more: numpy pickles their elements as
ordinary Python objects.

The allowed objects are looked up in a fixed table instead of being imported by name, so a refused name
never even triggers an import, and the deprecated ``numpy.core`` alias is never touched (no warning).
"""

from __future__ import annotations

import builtins
import codecs
import collections
import io
import os
import pickle
from typing import Any, BinaryIO

import numpy as np

from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "SafeUnpickler", "load_pickle", "loads_pickle"]


def _numpy_core() -> tuple[Any, Any]:
    """Return the (multiarray, numeric) modules of this numpy, whichever way it spells them."""
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


def _build_allowed() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _numpy_core()
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # Protocols <= 2 write bytes as _codecs.encode(latin-1 str, 'latin1'); numpy's raw array buffer
        # is such a bytes object. encode() only transforms data, it cannot reach code.
        ("_codecs", "encode"): codecs.encode,
    }
    for prefix in ("numpy.core", "numpy._core"):
        table[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                 "complex", "bool"):
        table[("builtins", name)] = getattr(builtins, name)
    return table


#: ``(module, name)`` → object. Anything else is refused with :class:`UnsafePickleError`.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _build_allowed()

# Protocol 0-2 pickles written by Python 2 (or with fix_imports) name the builtins module "__builtin__".
_MODULE_ALIASES = {"__builtin__": "builtins"}


class SafeUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`.

    Args:
        file: Binary file object positioned at the start of a pickle.
        source: Name of the file, used in error messages.
    """

    def __init__(self, file: BinaryIO, *, source: str | os.PathLike[str]) -> None:
        super().__init__(file)
        self.source = os.fspath(source)

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name`` or raise :class:`UnsafePickleError`."""
        key = (_MODULE_ALIASES.get(module, module), name)
        try:
            return ALLOWED_GLOBALS[key]
        except KeyError:
            raise UnsafePickleError(self.source, f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: the official files never use them."""
        raise DataFormatError(self.source, f"pickle uses a persistent id ({pid!r}), which is not supported")


# What a damaged pickle raises while loading: truncation gives EOFError or UnpicklingError, garbage
# bytes give UnpicklingError, and a stream cut inside a numpy reduce can surface as the others.
_CORRUPT_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                   AttributeError, OverflowError, UnicodeDecodeError)


def _load(stream: BinaryIO, source: str) -> object:
    try:
        return SafeUnpickler(stream, source=source).load()
    except DataFormatError:
        raise
    except _CORRUPT_ERRORS as exc:
        raise DataFormatError(source, f"corrupt or truncated pickle ({type(exc).__name__}: {exc})") from exc


def load_pickle(path: str | os.PathLike[str]) -> object:
    """Load a pickle file through :class:`SafeUnpickler`.

    Args:
        path: The pickle file.

    Returns:
        The unpickled object (dicts, lists, strings, numbers, numpy arrays and scalars only).

    Raises:
        MissingDataFileError: ``path`` does not exist or is not a file.
        UnsafePickleError: The pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing it refers to
            is called.
        DataFormatError: The file is truncated, corrupt, empty, or has trailing garbage.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise MissingDataFileError(source, "file not found")
    with open(source, "rb") as f:
        obj = _load(f, source)
        # A pickle followed by junk usually means two files were concatenated or a write went wrong.
        if f.read(1):
            raise DataFormatError(source, "trailing bytes after the end of the pickle")
    return obj


def loads_pickle(data: bytes, *, source: str = "<bytes>") -> object:
    """Like :func:`load_pickle` for an in-memory pickle; ``source`` names it in errors."""
    stream = io.BytesIO(data)
    obj = _load(stream, source)
    if stream.read(1):
        raise DataFormatError(source, "trailing bytes after the end of the pickle")
    return obj
