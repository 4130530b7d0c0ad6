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
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "DEFAULT_MAX_ALLOC_BYTES", "SafeUnpickler", "load_pickle", "loads_pickle"]

#: Most bytes one allowed constructor may allocate from a *size argument* in the pickle
#: (``bytearray(n)``, ``bytes(n)``, ``numpy.ndarray(shape)``, ``_reconstruct(ndarray, shape, dtype)``). The
#: official files never do this (their arrays' data come from the file itself, so their size is bounded by
#: the file's), so the limit only stops a few-byte pickle from asking for terabytes. Change it per call with
#: ``load_pickle(path, max_alloc_bytes=...)`` or for the process with ``MELTR_PICKLE_MAX_ALLOC_BYTES``.
DEFAULT_MAX_ALLOC_BYTES: int = int(os.environ.get("MELTR_PICKLE_MAX_ALLOC_BYTES", 1 << 30))


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

    def __init__(self, file: BinaryIO, *, source: str | os.PathLike[str], max_alloc_bytes: int | None = None) -> None:
        super().__init__(file)
        self.source = os.fspath(source)
        self.max_alloc_bytes = DEFAULT_MAX_ALLOC_BYTES if max_alloc_bytes is None else int(max_alloc_bytes)

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name`` or raise :class:`UnsafePickleError`.

        Constructors that allocate from a size argument are returned wrapped, so that a size above
        ``max_alloc_bytes`` raises :class:`DataFormatError` naming the file instead of a bare ``MemoryError``.
        """
        key = (_MODULE_ALIASES.get(module, module), name)
        try:
            obj = ALLOWED_GLOBALS[key]
        except KeyError:
            raise UnsafePickleError(self.source, f"{module}.{name}") from None
        guard = _GUARDS.get(key)
        return obj if guard is None else guard(self)

    def _check_alloc(self, nbytes: int, what: str) -> None:
        if nbytes > self.max_alloc_bytes:
            raise DataFormatError(self.source, f"pickle asks {what} to allocate {nbytes} bytes, above the limit of "
                                               f"{self.max_alloc_bytes} (max_alloc_bytes / MELTR_PICKLE_MAX_ALLOC_BYTES); "
                                               "refused as a memory bomb")

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: the official files never use them."""
        raise DataFormatError(self.source, f"pickle uses a persistent id ({pid!r}), which is not supported")


def _nbytes(shape: Any, dtype: Any) -> int | None:
    """Bytes an array of ``shape`` and ``dtype`` needs, or None when the arguments are not a shape/dtype (numpy
    itself then raises)."""
    try:
        dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
        itemsize = np.dtype(dtype if dtype is not None else float).itemsize
    except (TypeError, ValueError, OverflowError):
        return None
    total = max(itemsize, 1)
    for d in dims:
        total *= max(d, 0)
    return total


def _size_arg(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None


def _guard_bytes(kind: type) -> Callable[[SafeUnpickler], Any]:
    def make(unpickler: SafeUnpickler) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            size = _size_arg(args[0]) if args else None
            if size is not None:
                unpickler._check_alloc(size, f"{kind.__name__}()")
            return kind(*args, **kwargs)
        return build
    return make


class _GuardedNdarray:
    """Stands for ``numpy.ndarray`` in one load: calling it checks the allocation; ``_reconstruct`` (guarded too)
    maps it back to the real class, so arrays come out as plain ``ndarray``."""

    def __init__(self, unpickler: SafeUnpickler) -> None:
        self.unpickler = unpickler

    def __call__(self, shape: Any, dtype: Any = float, buffer: Any = None, *args: Any, **kwargs: Any) -> Any:
        if buffer is None:
            nbytes = _nbytes(shape, dtype)
            if nbytes is not None:
                self.unpickler._check_alloc(nbytes, "numpy.ndarray()")
        return np.ndarray(shape, dtype, buffer, *args, **kwargs)


def _guard_reconstruct(real: Callable[..., Any]) -> Callable[[SafeUnpickler], Any]:
    def make(unpickler: SafeUnpickler) -> Any:
        def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
            if isinstance(subtype, _GuardedNdarray):
                subtype = np.ndarray
            nbytes = _nbytes(shape, dtype)
            if nbytes is not None:
                unpickler._check_alloc(nbytes, "numpy _reconstruct")
            return real(subtype, shape, dtype)
        return reconstruct
    return make


def _guard_encode(unpickler: SafeUnpickler) -> Any:
    # Protocols <= 2 only ever call encode(str, "latin1"); other codecs (hex, base64, ...) could grow data on
    # every call, so they are refused.
    def encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> Any:
        if codecs.lookup(encoding).name != "iso8859-1":
            raise DataFormatError(unpickler.source, f"pickle calls _codecs.encode with codec {encoding!r}; only "
                                                    "'latin1' (how old protocols write bytes) is allowed")
        return codecs.encode(obj, encoding, errors)
    return encode


def _build_guards() -> dict[tuple[str, str], Callable[[SafeUnpickler], Any]]:
    multiarray, _ = _numpy_core()
    guards: dict[tuple[str, str], Callable[[SafeUnpickler], Any]] = {
        ("builtins", "bytes"): _guard_bytes(bytes),
        ("builtins", "bytearray"): _guard_bytes(bytearray),
        ("numpy", "ndarray"): _GuardedNdarray,
        ("_codecs", "encode"): _guard_encode,
    }
    for prefix in ("numpy.core", "numpy._core"):
        guards[(f"{prefix}.multiarray", "_reconstruct")] = _guard_reconstruct(multiarray._reconstruct)
    return guards


_GUARDS = _build_guards()


# What a damaged pickle raises while loading: truncation gives EOFError or UnpicklingError, garbage
# bytes give UnpicklingError, and a stream cut inside a numpy reduce can surface as the others.
_CORRUPT_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                   AttributeError, OverflowError, UnicodeDecodeError)


def _load(stream: BinaryIO, source: str, max_alloc_bytes: int | None = None) -> object:
    try:
        return SafeUnpickler(stream, source=source, max_alloc_bytes=max_alloc_bytes).load()
    except DataFormatError:
        raise
    except _CORRUPT_ERRORS as exc:
        raise DataFormatError(source, f"corrupt or truncated pickle ({type(exc).__name__}: {exc})") from exc
    except MemoryError as exc:  # e.g. a length field of a cut or crafted opcode far beyond the file
        raise DataFormatError(source, "ran out of memory while unpickling: corrupt, or a memory bomb") from exc


def load_pickle(path: str | os.PathLike[str], *, max_alloc_bytes: int | None = None) -> object:
    """Load a pickle file through :class:`SafeUnpickler`.

    Args:
        path: The pickle file.
        max_alloc_bytes: Most bytes one constructor may allocate from a size argument
            (default :data:`DEFAULT_MAX_ALLOC_BYTES`).

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
        obj = _load(f, source, max_alloc_bytes)
        # A pickle followed by junk usually means two files were concatenated or a write went wrong.
        if f.read(1):
            raise DataFormatError(source, "trailing bytes after the end of the pickle")
    return obj


def loads_pickle(data: bytes, *, source: str = "<bytes>", max_alloc_bytes: int | None = None) -> object:
    """Like :func:`load_pickle` for an in-memory pickle; ``source`` names it in errors."""
    stream = io.BytesIO(data)
    obj = _load(stream, source, max_alloc_bytes)
    if stream.read(1):
        raise DataFormatError(source, "trailing bytes after the end of the pickle")
    return obj
