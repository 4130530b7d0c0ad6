"""meltr: fine-tune a model with many losses at once, combined by a learned meta loss transformer.

In your own loop (any ``nn.Module`` whose forward returns a dict of named losses)::

    meta = meltr.MetaLearner.for_model(model)        # MELTR, AID-FP-Lite, K=3, gamma=0.1
    loss = meta.combine(model(batch))                # combined loss for the backbone step
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    meta.maybe_step(model, batch)                    # the meta step every K steps

or hand the loop over::

    meltr.Trainer(model, meltr.TrainerConfig(), train_loader).fit()

Integrations: :mod:`meltr.integrations.hf` (Hugging Face ``Trainer``) and
:mod:`meltr.integrations.lightning` (PyTorch Lightning). Building blocks live in the submodules:
:mod:`meltr.loss_transformer`, :mod:`meltr.combiners`, :mod:`meltr.hypergrad`, :mod:`meltr.checkpoint`.
"""

from meltr.combiners import COMBINERS, CombinerConfig, build_combiner
from meltr.hypergrad import HYPERGRADS, HypergradConfig
from meltr.interface import LossContractError, MultiLossModel
from meltr.loss_transformer import PRESETS, LossTransformerConfig
from meltr.meta_learner import CombinerTrainingError, MetaConfig, MetaLearner, NonFiniteError
from meltr.optim import OptimConfig
from meltr.sampler import EpochSampler
from meltr.trainer import Trainer, TrainerConfig

__version__ = "0.1.0"

# The public API. nn.Module classes (LossTransformer, the baseline combiners) are reached through their
# modules (meltr.loss_transformer, meltr.combiners) so that help(meltr) stays short.
__all__ = [
    "COMBINERS",
    "HYPERGRADS",
    "PRESETS",
    "CombinerConfig",
    "CombinerTrainingError",
    "EpochSampler",
    "HypergradConfig",
    "LossContractError",
    "LossTransformerConfig",
    "MetaConfig",
    "MetaLearner",
    "MultiLossModel",
    "NonFiniteError",
    "OptimConfig",
    "Trainer",
    "TrainerConfig",
    "build_combiner",
]
