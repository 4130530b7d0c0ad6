"""``meta.source: current``: the meta step on the step's own batch, at the weights before its update, with
``v`` taken from the step's own graph.

Its reference is the official meta step (``mode: autograd``) run by :meth:`MetaLearner.step` on that same
batch at those same weights (an empty buffer makes the official draw the current batch for both sides),
in float64 with the combiner updated by plain SGD (lr 1, no clipping), so that the change of the combiner
*is* the hypergradient.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from meltr import CombinerConfig, HypergradConfig, MetaConfig, MetaLearner, OptimConfig, Trainer
from meltr.hypergrad import differentiable_attention
from meltr.loss_transformer import preset
from tests.toy_models import TinyTransformer, token_batches, toy_trainer_config

SGD = OptimConfig(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", clip_grad_norm=None)


def _meta(model: nn.Module, source: str, mode: str | None, gamma: float) -> MetaLearner:
    torch.manual_seed(1)
    meta = MetaLearner.for_model(model, CombinerConfig(name="meltr", meltr=preset("univl", residual="none")),
                                 MetaConfig(source=source, every=1, gamma=gamma, optim=SGD, hypergrad=HypergradConfig(mode=mode)))
    meta.combiner.double()
    return meta


def _combiner_change(meta: MetaLearner, before: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [before[k] - v for k, v in meta.combiner.state_dict().items()]


@pytest.mark.parametrize("gamma", [0.0, 0.1])
@pytest.mark.parametrize("mode", ["vjp", "jvp", "fd", "autograd"])
def test_current_source_equals_the_official_step_on_that_batch(mode: str, gamma: float) -> None:
    torch.manual_seed(0)
    model = TinyTransformer().double()
    batch = token_batches(1, 8, seed=4)[0]

    official = _meta(model, "buffer", "autograd", gamma)
    before = copy.deepcopy(official.combiner.state_dict())
    official.maybe_step(model, batch)  # empty buffer: both meta batches are `batch`, weights as they are
    expected = _combiner_change(official, before)

    current = _meta(model, "current", mode, gamma)
    assert current.combiner.state_dict().keys() == before.keys()
    with differentiable_attention():  # the autograd mode differentiates the step's own graph twice
        loss = current.combine(model(batch), model, batch=batch)
    loss.backward()  # the graph survives the meta step's use of it
    model.zero_grad()
    current.maybe_step(model, batch)
    got = _combiner_change(current, before)

    scale = max(float(e.abs().max()) for e in expected)
    assert scale > 0
    tol = 1e-6 if mode == "fd" else 1e-10
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=tol, atol=tol * scale)
    assert current.buffer == []  # the current source keeps no buffer


def test_current_source_in_the_trainer_keeps_no_buffer_and_trains() -> None:
    torch.manual_seed(0)
    batches = token_batches(6, 8)
    cfg = toy_trainer_config(max_steps=6, meta=MetaConfig(source="current", every=2))
    trainer = Trainer(TinyTransformer(), cfg, batches, device="cpu")
    before = copy.deepcopy(trainer.combiner.state_dict())
    trainer.fit()
    assert trainer.meta.buffer == [] and trainer.meta.steps == 6
    assert trainer.meta.optimizer.state_dict()["state"][0]["step"] == 3
    assert any(not torch.equal(before[k], v) for k, v in trainer.combiner.state_dict().items())


def test_current_source_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="source=current supports the aid_fp_lite"):
        MetaConfig(source="current", hypergrad=HypergradConfig(name="aid_cg")).validate()
    torch.manual_seed(0)
    model = TinyTransformer()
    batch = token_batches(1, 8)[0]
    meta = MetaLearner.for_model(model, meta=MetaConfig(source="current", hypergrad=HypergradConfig(mode="jvp")))
    with pytest.raises(TypeError, match="combine\\(output, model, batch=batch\\)"):
        meta.combine(model(batch), model)
    meta = MetaLearner.for_model(model, meta=MetaConfig(source="current"))
    with pytest.raises(TypeError, match="needs the model"):
        meta.combine(model(batch))
    with pytest.raises(RuntimeError, match="no hypergradient was computed for step 0"):
        meta.maybe_step(model, batch)
