"""VIOLET backbone (Video Swin-S + BERT) with the MELTR fork's losses (see :mod:`backbones.violet.model`)."""

from backbones.violet.config import TASK_LOSSES, SwinConfig, VioletConfig
from backbones.violet.inputs import MASK_KEYS, VioletBatch, VioletMasks, check_batch
from backbones.violet.model import Violet
from backbones.violet.pretrained import load_official, to_official

__all__ = ["Violet", "VioletConfig", "SwinConfig", "TASK_LOSSES", "VioletBatch", "VioletMasks", "MASK_KEYS", "check_batch",
           "load_official", "to_official"]
