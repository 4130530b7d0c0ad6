"""meltr: fine-tune a model with many losses at once, combined by a learned meta loss transformer.

Plug-in usage::

    from meltr import Trainer, TrainerConfig
    trainer = Trainer(model, TrainerConfig(), train_loader)   # model(batch) -> {"task": l0, "aux": l1, ...}
    trainer.fit()
"""

from meltr.baselines import COMBINERS, CombinerConfig, FixedCombiner, LinearCombiner, SingleTask, SumCombiner, build_combiner
from meltr.hypergrad import HYPERGRADS, CombinedObjective, HypergradConfig, SumObjective, build_hypergrad
from meltr.interface import Combiner, LossContractError, MultiLossModel, check_losses
from meltr.loss_transformer import PRESETS, LossTransformer, LossTransformerConfig, load_official_meltr, preset
from meltr.optim import OptimConfig
from meltr.registry import Registry, RegistryError
from meltr.sampler import EpochSampler
from meltr.trainer import MetaConfig, Trainer, TrainerConfig

__version__ = "0.1.0"

__all__ = [
    "COMBINERS",
    "HYPERGRADS",
    "PRESETS",
    "CombinedObjective",
    "Combiner",
    "CombinerConfig",
    "EpochSampler",
    "FixedCombiner",
    "HypergradConfig",
    "LinearCombiner",
    "LossContractError",
    "LossTransformer",
    "LossTransformerConfig",
    "MetaConfig",
    "MultiLossModel",
    "OptimConfig",
    "Registry",
    "RegistryError",
    "SingleTask",
    "SumCombiner",
    "SumObjective",
    "Trainer",
    "TrainerConfig",
    "build_combiner",
    "build_hypergrad",
    "check_losses",
    "load_official_meltr",
    "preset",
]
