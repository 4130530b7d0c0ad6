"""The trainer end to end on tiny models: combiners, schemes, learning signal, resume, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader

from meltr import EpochSampler, HypergradConfig, MetaLearner, Trainer, TrainerConfig
from meltr.checkpoint import load_checkpoint
from meltr.interface import LossContractError
from meltr.trainer import CombinerTrainingError
from tests.toy_models import ToyRegression, regression_batches, toy_trainer_config


def _loader(samples: list, batch_size: int, seed: int = 0) -> DataLoader:
    return DataLoader(samples, batch_size=batch_size, sampler=EpochSampler(len(samples), seed=seed), generator=torch.Generator(), collate_fn=_collate)


def _collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _samples(n: int, seed: int = 0) -> list[dict]:
    (b,) = regression_batches(1, n, seed=seed)
    return [{k: v[i] for k, v in b.items()} for i in range(n)]


_cfg = toy_trainer_config


def _params(m: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("name", ["single", "sum", "fixed", "linear", "meltr"])
def test_every_combiner_trains_the_backbone_and_only_learnable_ones_change(name: str) -> None:
    torch.manual_seed(0)
    model = ToyRegression()
    cfg = _cfg(max_steps=4)
    cfg.combiner.name = name
    trainer = Trainer(model, cfg, _loader(_samples(32), 8), device="cpu")
    before_model, before_comb = _params(model), copy.deepcopy(trainer.combiner.state_dict())
    trainer.fit()
    assert trainer.step == 4
    assert any(not torch.equal(a, b) for a, b in zip(before_model, _params(model)))
    changed = any(not torch.equal(before_comb[k], v) for k, v in trainer.combiner.state_dict().items())
    assert changed == trainer.combiner.learnable


@pytest.mark.parametrize("scheme", ["aid_fp_lite", "aid_fp", "aid_cg", "itd", "stocbio"])
@pytest.mark.parametrize("mode", [None, "fd"])
def test_every_hypergradient_scheme_runs_in_the_trainer(scheme: str, mode: str | None) -> None:
    torch.manual_seed(0)
    model = ToyRegression()
    cfg = _cfg(max_steps=3)
    cfg.meta.hypergrad = HypergradConfig(name=scheme, mode=mode, alpha=0.1)
    trainer = Trainer(model, cfg, _loader(_samples(32), 8), device="cpu")
    before = copy.deepcopy(trainer.combiner.state_dict())
    out = trainer.fit()
    assert out["step"] == 3
    assert any(not torch.equal(before[k], v) for k, v in trainer.combiner.state_dict().items())


@pytest.mark.parametrize("combiner", ["meltr", "linear"])
def test_learns_to_weight_the_helpful_auxiliary_above_the_harmful_one(combiner: str) -> None:
    torch.manual_seed(0)
    model = ToyRegression()
    cfg = _cfg(epochs=6)
    cfg.combiner.name = combiner
    cfg.meta.gamma = 0.0
    trainer = Trainer(model, cfg, _loader(_samples(64), 8), device="cpu")
    probe = torch.tensor([1.0, 1.0, 1.0])
    w0 = trainer.combiner.task_weights(probe)
    trainer.fit()
    w = trainer.combiner.task_weights(probe)
    helpful, harmful = 1, 2
    # the learned weight of the helpful task rises relative to the harmful one, and ends above it
    assert (w[helpful] - w[harmful]) - (w0[helpful] - w0[harmful]) > 0.1
    assert w[helpful] > w[harmful]


def _resume_cfg(**kw) -> TrainerConfig:
    cfg = _cfg(epochs=2, **kw)
    cfg.combiner.meltr.dropout = 0.1  # exercises the RNG state of the combiner's dropout
    cfg.meta.every = 2
    cfg.meta.buffer_size = 3
    cfg.meta.buffer_evict = "weighted"
    cfg.meta.gamma = 0.1
    return cfg


def test_resume_is_bit_identical(tmp_path) -> None:
    samples = _samples(48)

    def build(run_dir) -> Trainer:
        torch.manual_seed(1)
        return Trainer(ToyRegression(dropout=0.2), _resume_cfg(), _loader(samples, 8, seed=3), device="cpu", run_dir=run_dir)

    full = build(tmp_path / "full")
    full.fit()  # 2 epochs x 6 steps = 12 steps

    first = build(tmp_path / "half")
    first.cfg.max_steps = first.total_steps = 9  # stop mid-epoch 2, keep the schedules of the full run
    first.fit()
    first.save(tmp_path / "half" / "mid.pt")
    torch.manual_seed(12345)  # scramble the global RNG: resume must restore it
    second = build(tmp_path / "resumed")
    second.resume(tmp_path / "half" / "mid.pt")
    assert (second.step, second.epoch, second.batch_in_epoch) == (9, 1, 3)
    second.fit()

    assert second.step == full.step == 12
    for a, b in zip(full.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.combiner.state_dict().values(), second.combiner.state_dict().values()):
        assert torch.equal(a, b)
    for ga, gb in zip(full.meta.optimizer.state_dict()["state"].values(), second.meta.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(ga[k], gb[k]) for k in ga)


def test_checkpoint_holds_plain_config_and_loads_with_weights_only(tmp_path) -> None:
    trainer = Trainer(ToyRegression(), _cfg(max_steps=2), _loader(_samples(16), 8), device="cpu", run_dir=tmp_path)
    trainer.fit()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["config"]["trainer"]["combiner"]["name"] == "meltr"
    # the loader has an EpochSampler: the buffer is stored by position (meta.checkpoint_buffer: positions)
    assert state["step"] == 2 and state["meta"]["buffer"] == [] and len(state["meta"]["buffer_positions"]) == 2
    assert {"model", "combiner", "optimizer", "scheduler", "meta", "rng"} <= set(state)
    assert {"optimizer", "scheduler", "generator", "buffer", "buffer_positions", "buffer_fingerprints", "steps"} <= set(state["meta"])


def test_eval_hook_keeps_the_best_checkpoint(tmp_path) -> None:
    scores = iter([0.3, 0.9, 0.5])
    trainer = Trainer(
        ToyRegression(), _cfg(epochs=3, best_metric="acc"), _loader(_samples(16), 8), device="cpu", run_dir=tmp_path,
        eval_fn=lambda m: {"acc": next(scores)},
    )
    trainer.fit()
    assert trainer.best["value"] == 0.9 and trainer.best["step"] == 4
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 4
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6


class _Broken(ToyRegression):
    def forward(self, batch):
        out = super().forward(batch)
        out["extra"] = out.pop("harmful")
        out["main"] = out["main"] * float("nan")
        return out


def test_contract_violations_name_the_model_and_the_losses() -> None:
    trainer = Trainer(_Broken(), _cfg(max_steps=1), _loader(_samples(16), 8), device="cpu")
    with pytest.raises(LossContractError, match=r"_Broken.*missing \['harmful'\].*extra \['extra'\].*non-finite \['main=nan'\]"):
        trainer.fit()


def test_te_only_meltr_cannot_train_and_says_so() -> None:
    cfg = _cfg(max_steps=1)
    cfg.combiner.meltr.embedding = "te"
    trainer = Trainer(ToyRegression(), cfg, _loader(_samples(16), 8), device="cpu")
    with pytest.raises(CombinerTrainingError, match="TE-only"):
        trainer.fit()


def test_held_out_meta_loader_is_used_for_the_target_loss_side() -> None:
    seen = []

    class Spy(ToyRegression):
        def forward(self, batch):
            seen.append(float(batch["x"].sum()))
            return super().forward(batch)

    meta = _loader(_samples(8, seed=9), 8)
    cfg = _cfg(max_steps=2)
    cfg.meta.source = "loader"
    trainer = Trainer(Spy(), cfg, _loader(_samples(16), 8), meta_loader=meta, device="cpu")
    trainer.fit()
    meta_sum = float(next(iter(meta))["x"].sum())
    assert any(abs(s - meta_sum) < 1e-4 for s in seen)


def test_target_loss_must_be_a_model_loss() -> None:
    with pytest.raises(ValueError, match="target loss 'nope'"):
        Trainer(ToyRegression(), _cfg(target_loss="nope"), _loader(_samples(16), 8), device="cpu")


def test_the_old_primary_name_still_picks_the_target_loss() -> None:
    # TrainerConfig(primary=...) and .primary, MetaLearner(primary=...): one release with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="'primary=' is renamed 'target_loss='"):
        cfg = _cfg(primary="helpful")
    assert cfg.target_loss == "helpful"
    with pytest.warns(DeprecationWarning, match="'.primary' is renamed '.target_loss'"):
        assert cfg.primary == "helpful"
    trainer = Trainer(ToyRegression(), cfg, _loader(_samples(16), 8), device="cpu")
    assert (trainer.target_loss, trainer.target_index) == ("helpful", ToyRegression.loss_names.index("helpful"))
    with pytest.warns(DeprecationWarning, match="MetaLearner.__init__: 'primary='"):
        meta = MetaLearner(ToyRegression.loss_names, primary="helpful")
    with pytest.warns(DeprecationWarning, match="'.primary_index' is renamed '.target_index'"):
        assert meta.primary_index == meta.target_index == trainer.target_index
    with pytest.raises(TypeError, match="both primary= and its new name target_loss="):
        MetaLearner(ToyRegression.loss_names, target_loss="helpful", primary="helpful")


class _EpochAware(list):
    """A list dataset that records the epochs the trainer announces (as readers with per-epoch masks need)."""

    def __init__(self, items: list) -> None:
        super().__init__(items)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def test_trainer_announces_each_epoch_to_the_dataset(tmp_path) -> None:
    data = _EpochAware(_samples(16))
    loader = DataLoader(data, batch_size=8, sampler=EpochSampler(len(data)), generator=torch.Generator(), collate_fn=_collate)
    trainer = Trainer(ToyRegression(), _cfg(epochs=3), loader, device="cpu", run_dir=tmp_path)
    trainer.fit()
    assert data.epochs == [0, 1, 2]
