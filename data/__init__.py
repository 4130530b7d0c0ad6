"""Readers of the official dataset files, and writers of tiny stand-ins in the same formats.

Layout: shared pieces at the top, then one folder per backbone, as ``backbones/`` has.

* :mod:`data.errors`, :mod:`data.safe_pickle` (every pickle is read through it), :mod:`data.files` (text, json,
  csv annotation files), :mod:`data.text` (tokenizer and BERT inputs), :mod:`data.masking` (MLM/MFM masks),
  :mod:`data.video` (mp4 decoding behind one function), :mod:`data.batch` (``collate``, per-sample seeds);
* :mod:`data.univl`: YouCook2 / MSR-VTT / CMU-MOSI feature readers, ``UniVLDataConfig`` and
  ``build_univl_data``;
* :mod:`data.violet`: frame / VQ pickles and retrieval / QA json, with the frame extractor and QA converter;
* :mod:`data.allinone`: MSR-VTT from raw mp4 videos;
* :mod:`data.synthetic`: tiny datasets of every backbone in the official formats
  (``python -m data.synthetic``).

Each backbone's datasets return per-sample dicts of tensors whose keys are that backbone's batch
``TypedDict`` (``backbones/<name>/inputs.py``; ``tests/unit/test_data_batch_contract.py`` checks that they
agree) and keep non-tensor metadata behind ``meta(i)``.

``data`` imports neither ``backbones`` nor ``meltr.trainer``: a tokenizer is passed in. Of ``meltr`` it uses
only :func:`meltr.checkpoint.atomic_write`, the project's one atomic file writer.
"""

from data.batch import collate
from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError
from data.safe_pickle import load_pickle
from data.text import SpecialIds, TextEncoder, load_tokenizer

__all__ = ["collate", "DataFormatError", "MissingDataFileError", "UnsafePickleError", "load_pickle", "SpecialIds",
           "TextEncoder", "load_tokenizer"]
