"""Readers of the official dataset files, and writers of tiny stand-ins in the same formats.

``data`` imports neither ``backbones`` nor ``meltr.trainer``: a tokenizer is passed in. Every pickle is
read through :mod:`data.safe_pickle`. Each reader returns per-sample dicts of tensors with the keys of
:data:`SAMPLE_KEYS` (shapes in :mod:`data.common`) and keeps non-tensor metadata behind ``meta(i)``.
"""

from data.common import SAMPLE_KEYS, ClipRecord, collate
from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError
from data.msrvtt import MSRVTT
from data.safe_pickle import load_pickle
from data.text import SpecialIds, TextEncoder, load_tokenizer
from data.youcook2 import YouCook2

__all__ = ["SAMPLE_KEYS", "ClipRecord", "collate", "DataFormatError", "MissingDataFileError", "UnsafePickleError",
           "MSRVTT", "YouCook2", "load_pickle", "SpecialIds", "TextEncoder", "load_tokenizer"]
