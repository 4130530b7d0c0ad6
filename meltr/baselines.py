"""Deprecated alias of :mod:`meltr.combiners` (renamed: it holds every combiner, MELTR included);
removed in the next release."""

import warnings

from meltr.combiners import (COMBINERS, CombinerConfig, FixedCombiner, LinearCombiner, SingleTask, SumCombiner,
                             build_combiner)
from meltr.deprecation import renamed_message

__all__ = ["CombinerConfig", "COMBINERS", "build_combiner", "SingleTask", "SumCombiner", "FixedCombiner", "LinearCombiner"]

warnings.warn(renamed_message("meltr.baselines", "meltr.combiners", "import"), DeprecationWarning, stacklevel=2)
