"""UniVL backbone with MELTR's 8 losses (see :mod:`backbones.univl.model`)."""

from backbones.univl.config import LOSS_NAMES, UniVLConfig
from backbones.univl.inputs import BATCH_KEYS, UniVLBatch, check_batch
from backbones.univl.model import UniVL

__all__ = ["UniVL", "UniVLConfig", "UniVLBatch", "LOSS_NAMES", "BATCH_KEYS", "check_batch"]
