"""Errors raised by the dataset readers.

Every error names the file it is about, so a user with a 3 GB feature pickle and four annotation
files can tell at once which one is wrong (timm's bare ``FileNotFoundError()`` is the example not to
follow).
"""

from __future__ import annotations

import os

__all__ = ["DataFormatError", "MissingDataFileError", "UnsafePickleError"]


class DataFormatError(ValueError):
    """A dataset file is missing, unreadable, or not in the expected official format.

    Args:
        path: The file (or folder) the problem is in.
        problem: What is wrong, in words.

    Attributes:
        path: The offending file as a string.
        problem: The description without the path prefix.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep the two-argument constructor picklable (DataLoader workers re-raise)
        return (type(self), (self.path, self.problem))


class MissingDataFileError(DataFormatError, FileNotFoundError):
    """A required dataset file or folder does not exist.

    It is also a ``FileNotFoundError``, so callers that only know the standard library can catch it.
    """


class UnsafePickleError(DataFormatError):
    """A pickle asked for a global outside the allow-list of :mod:`data.safe_pickle`.

    Attributes:
        global_name: The refused ``module.name``.
    """

    def __init__(self, path: str | os.PathLike[str], global_name: str) -> None:
        self.global_name = global_name
        super().__init__(path, f"refused to load global {global_name!r}: it is not on the allow-list of "
                               "numpy-array and builtin-container globals (data.safe_pickle.ALLOWED_GLOBALS)")

    def __reduce__(self):
        return (type(self), (self.path, self.global_name))
