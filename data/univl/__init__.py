"""UniVL's data: S3D-feature readers of YouCook2, MSR-VTT and CMU-MOSI in their official layouts.

* :mod:`data.univl.dataset`: the sample contract (:data:`SAMPLE_KEYS`, shapes and dtypes) and the plumbing the
  readers share (:class:`ClipRecord`, :class:`FeatureTextDataset`, feature pickles, clip slicing);
* :mod:`data.univl.youcook2`, :mod:`data.univl.msrvtt`, :mod:`data.univl.mosi`: one reader each, with the
  ``build(cfg, tokenizer)`` that knows its official file names;
* :mod:`data.univl.config`: :class:`UniVLDataConfig`, the ``data:`` section of a UniVL run;
* :mod:`data.univl.build`: :func:`build_univl_data` and the registry :data:`DATASETS`.
"""

from data.univl.build import DATASETS, build_univl_data
from data.univl.config import UniVLDataConfig
from data.univl.dataset import SAMPLE_KEYS, ClipRecord, FeatureTextDataset
from data.univl.mosi import MosiDataset, load_mosi
from data.univl.msrvtt import MSRVTT
from data.univl.youcook2 import YouCook2

__all__ = ["SAMPLE_KEYS", "ClipRecord", "FeatureTextDataset", "UniVLDataConfig", "DATASETS", "build_univl_data",
           "YouCook2", "MSRVTT", "MosiDataset", "load_mosi"]
