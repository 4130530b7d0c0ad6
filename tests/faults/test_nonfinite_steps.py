"""Issue 14, item 2 (and the numeric bits of item 6): nothing poisoned reaches the weights or disk.

A NaN gradient with finite losses, a huge auxiliary loss that MELTR cannot embed, and a non-finite
hypergradient are each caught before the optimiser step: ``nonfinite="raise"`` (the default) names the
step, the losses and the combiner; ``nonfinite="skip"`` drops the update and counts it, as AMP's
GradScaler does. Also: a NaN evaluation does not freeze ``best.pt``, a meta loader without a generator
warns, and invalid optimiser / trainer / meta settings are refused naming the field.
"""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from torch.utils.data import DataLoader

from meltr import CombinerConfig, MetaConfig, MetaLearner, OptimConfig, Trainer
from meltr.checkpoint import load_checkpoint
from meltr.meta_learner import NonFiniteError
from tests.toy_models import ToyRegression, regression_batches, small_meltr, toy_trainer_config



_cfg = toy_trainer_config


class _Poisonable(ToyRegression):
    """The toy model; a batch with ``poison`` > 0 gets a NaN gradient (finite losses), one with
    ``huge`` > 0 an auxiliary loss of 1e30 (finite, but beyond what MELTR's value embedding takes)."""

    def forward(self, batch):
        out = super().forward(batch)
        if float(batch.get("poison", 0.0)) > 0:
            w = self.net[0].weight.sum()
            out["main"] = out["main"] + 0.0 * torch.sqrt(w - w.detach())  # value +0, gradient 0 * inf = NaN
        if float(batch.get("huge", 0.0)) > 0:
            out["harmful"] = out["harmful"] * 0 + 1e30
        return out


def _batches(n: int, at: int, key: str) -> list[dict]:
    batches = regression_batches(n, 8)
    for i, b in enumerate(batches):
        b[key] = torch.tensor(1.0 if i == at else 0.0)
    return batches


def _finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in module.state_dict().values())


def test_nan_gradient_with_finite_losses_raises_naming_the_step_and_applies_nothing(tmp_path) -> None:
    torch.manual_seed(0)
    model = _Poisonable()
    trainer = Trainer(model, _cfg(max_steps=4, checkpoint_every=1), _batches(4, 2, "poison"), device="cpu", run_dir=tmp_path)
    with pytest.raises(NonFiniteError, match=r"step 2 .*non-finite gradient norm nan.*main=[0-9.]+.*combiner 'meltr'"):
        trainer.fit()
    assert _finite(model) and _finite(trainer.combiner)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(saved["model"][k], v), k  # nothing of the poisoned step was applied


def test_skip_policy_drops_the_step_counts_it_and_finishes(tmp_path) -> None:
    torch.manual_seed(0)
    model = _Poisonable()
    trainer = Trainer(model, _cfg(max_steps=4, nonfinite="skip"), _batches(4, 2, "poison"), device="cpu", run_dir=tmp_path)
    lr_before = trainer.scheduler.last_epoch
    summary = trainer.fit()
    assert summary["step"] == 4 and summary["skipped_steps"] == 1
    assert trainer.scheduler.last_epoch - lr_before == 4  # the schedule counts the skipped step (GradScaler)
    assert _finite(model) and _finite(trainer.combiner)
    assert len(trainer.meta.buffer) == 3  # the poisoned batch never joined the meta buffer
    assert load_checkpoint(tmp_path / "last.pt")["skipped_steps"] == 1


def test_huge_auxiliary_loss_is_named_instead_of_a_silent_nan() -> None:
    meta = MetaLearner.for_model(ToyRegression(), CombinerConfig(name="meltr", meltr=small_meltr()))
    losses = {"main": torch.tensor(0.5, requires_grad=True), "helpful": torch.tensor(0.4, requires_grad=True),
              "harmful": torch.tensor(1e30, requires_grad=True)}
    with pytest.raises(NonFiniteError, match=r"'meltr' combiner.*non-finite combined loss.*'harmful'=1e\+30"):
        meta.combine(losses)
    # at an ordinary scale the same losses combine to a finite value
    assert math.isfinite(float(meta.combine({**losses, "harmful": torch.tensor(2.0, requires_grad=True)})))


def test_huge_auxiliary_loss_in_the_trainer_is_skipped_under_the_skip_policy() -> None:
    torch.manual_seed(0)
    trainer = Trainer(_Poisonable(), _cfg(max_steps=3, nonfinite="skip"), _batches(3, 1, "huge"), device="cpu")
    assert trainer.fit()["skipped_steps"] == 1
    assert _finite(trainer.model) and _finite(trainer.combiner)


def _nan_hypergrad(meta: MetaLearner):
    return lambda *a, **k: [torch.full_like(p, float("nan")) for p in meta.meta_params]


def test_nonfinite_hypergradient_raises_naming_the_meta_step() -> None:
    torch.manual_seed(0)
    trainer = Trainer(ToyRegression(), _cfg(max_steps=2), regression_batches(2, 8), device="cpu")
    trainer.meta.hypergrad = _nan_hypergrad(trainer.meta)
    before = copy.deepcopy(trainer.combiner.state_dict())
    with pytest.raises(NonFiniteError, match=r"meta step at step 0: non-finite hypergradient.*'meltr' combiner.*main="):
        trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in trainer.combiner.state_dict().items())


def test_nonfinite_hypergradient_is_skipped_and_counted_under_the_skip_policy() -> None:
    torch.manual_seed(0)
    trainer = Trainer(ToyRegression(), _cfg(max_steps=2, nonfinite="skip"), regression_batches(2, 8), device="cpu")
    trainer.meta.hypergrad = _nan_hypergrad(trainer.meta)
    before = copy.deepcopy(trainer.combiner.state_dict())
    summary = trainer.fit()
    assert summary["skipped_meta_steps"] == 2 and trainer.meta.scheduler.last_epoch == 2
    assert all(torch.equal(before[k], v) for k, v in trainer.combiner.state_dict().items())


def test_a_nan_evaluation_does_not_freeze_best_pt(tmp_path, caplog) -> None:
    scores = iter([float("nan"), 0.3, 0.9, 0.5])
    trainer = Trainer(ToyRegression(), _cfg(epochs=4, best_metric="acc"), regression_batches(2, 8), device="cpu",
                      run_dir=tmp_path, eval_fn=lambda m: {"acc": next(scores)})
    with caplog.at_level(logging.WARNING, logger="meltr"):
        trainer.fit()
    assert trainer.best["value"] == 0.9 and trainer.best["step"] == 6
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 6
    assert any("acc is nan" in r.getMessage() for r in caplog.records)


def test_meta_loader_without_generator_warns(caplog) -> None:
    cfg = _cfg(max_steps=1)
    cfg.meta.source = "loader"
    meta_loader = DataLoader(regression_batches(2, 8), batch_size=None, shuffle=True)  # no generator
    with caplog.at_level(logging.WARNING, logger="meltr"):
        Trainer(ToyRegression(), cfg, regression_batches(1, 8), meta_loader=meta_loader, device="cpu")
    assert any("meta_loader has no generator" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("change,field", [
    (dict(optim=OptimConfig(weight_decay=-0.1)), "optim.weight_decay"),
    (dict(optim=OptimConfig(warmup_steps=-1)), "optim.warmup_steps"),
    (dict(optim=OptimConfig(lr=float("inf"))), "optim.lr"),
    (dict(optim=OptimConfig(lr=float("nan"))), "optim.lr"),
    (dict(optim=OptimConfig(lr=0.0)), "optim.lr"),
    (dict(checkpoint_every=0), "checkpoint_every"),
    (dict(eval_every=0), "eval_every"),
    (dict(eval_every=-1), "eval_every"),
    (dict(meta=MetaConfig(gamma=float("nan"))), "meta.gamma"),
    (dict(meta=MetaConfig(optim=OptimConfig(lr=-1.0))), "meta.optim.lr"),
    (dict(nonfinite="ignore"), "nonfinite"),
    (dict(dist_timeout_s=0.0), "dist_timeout_s"),
])
def test_invalid_settings_are_refused_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field.replace('.', r'[.]')} must"):
        _cfg(**change).validate()
