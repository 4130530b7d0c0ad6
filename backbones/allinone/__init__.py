"""All-in-one backbone with the MELTR fork's two losses (see :mod:`backbones.allinone.model`)."""

from backbones.allinone.config import LOSS_NAMES, AllInOneConfig
from backbones.allinone.inputs import BATCH_KEYS, AllInOneBatch, check_batch
from backbones.allinone.model import AllInOne
from backbones.allinone.pretrained import load_official, to_official

__all__ = ["AllInOne", "AllInOneConfig", "AllInOneBatch", "LOSS_NAMES", "BATCH_KEYS", "check_batch", "load_official",
           "to_official"]
