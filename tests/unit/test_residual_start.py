"""The loss transformer's residual start (issue 15): under the plug-in defaults MELTR starts as exactly the
multi-task sum (every task weight 1, never negative) for any losses, the meta step still trains every
layer, and the paper rows keep the paper's form."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from meltr import CombinerConfig, LossTransformerConfig, MetaConfig, MetaLearner, OptimConfig, Trainer, TrainerConfig
from meltr.combiners import build_combiner
from meltr.loss_transformer import PRESETS, LossTransformer, load_official_meltr, preset
from scripts.run_config import load_run
from tests.toy_models import ToyRegression, regression_batches

ROOT = Path(__file__).resolve().parents[2]
SMALL = LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.0)


def _random_losses(n: int, t: int) -> torch.Tensor:
    """``[n, t]`` positive losses spread over six orders of magnitude (1e-3 .. 1e3)."""
    return torch.rand(n, t) * 10 ** torch.empty(n, t).uniform_(-3, 3)


@pytest.mark.parametrize("seed", range(5))
def test_plug_in_default_is_the_sum_at_init_for_any_losses(seed: int) -> None:
    torch.manual_seed(seed)
    t = int(torch.randint(2, 7, ()))
    names = [f"l{i}" for i in range(t)]
    target = names[int(torch.randint(t, ()))]
    comb = build_combiner(CombinerConfig(), names, target)  # TrainerConfig() and MetaLearner.for_model use this
    assert isinstance(comb, LossTransformer) and comb.cfg.residual == "sum"
    losses = _random_losses(64, t)
    for mode in (comb.train, comb.eval):  # the default dropout (0.1) does not matter either
        mode()
        assert torch.equal(comb(losses), losses.sum(-1))
        assert torch.equal(comb.task_weights(losses), torch.ones(64, t))


def test_meta_learner_and_trainer_defaults_start_with_weight_one() -> None:
    model = ToyRegression()
    meta = MetaLearner.for_model(model)
    losses = _random_losses(8, 3)
    assert torch.equal(meta.task_weights(losses), torch.ones(8, 3))
    assert TrainerConfig().combiner.meltr.resolved_residual() == "sum"


def test_first_backbone_step_of_the_default_equals_the_sum() -> None:
    """The meta step runs after the backbone update, so step 0 trains exactly as the sum does."""
    batches = regression_batches(1, 8)
    states = {}
    for name in ("meltr", "sum"):
        cfg = TrainerConfig(max_steps=1, tensorboard=False)
        cfg.combiner.name = name
        torch.manual_seed(0)
        trainer = Trainer(ToyRegression(), cfg, batches, device="cpu")
        trainer.fit()
        states[name] = trainer.model.state_dict()
    for k, v in states["sum"].items():
        assert torch.equal(states["meltr"][k], v), k


def test_meta_step_moves_the_zero_head_first_then_every_layer() -> None:
    """The zero head blocks every other hypergradient at the first meta step only (no weight decay here,
    so a parameter moves only where its hypergradient is non-zero)."""
    torch.manual_seed(0)
    model = ToyRegression()
    meta = MetaLearner(model.loss_names, model.target_loss, CombinerConfig(meltr=copy.deepcopy(SMALL)),
                       MetaConfig(every=1, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant", clip_grad_norm=None)))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    start = {n: p.detach().clone() for n, p in meta.combiner.named_parameters()}
    moved: list[set[str]] = []
    for batch in regression_batches(3, 8):
        meta.combine(model(batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
        meta.maybe_step(model, batch)
        moved.append({n for n, p in meta.combiner.named_parameters() if not torch.equal(p, start[n])})
    assert moved[0] == {"head.weight"}
    # After three meta steps every parameter is learning, except the last LayerNorm's bias: it adds the
    # same vector to every token, so it shifts the output by a constant and no task weight depends on it
    # (its hypergradient is 0 in the paper's form too).
    assert moved[-1] == set(start) - {"layers.0.norm2.bias"}


def test_auto_resolves_to_sum_for_se_te_and_to_the_paper_form_otherwise() -> None:
    assert LossTransformer(LossTransformerConfig(num_tasks=3)).cfg.residual == "sum"
    assert LossTransformer(LossTransformerConfig(num_tasks=3, embedding="se")).cfg.residual == "none"
    assert LossTransformer(LossTransformerConfig(num_tasks=3, embedding="te")).cfg.residual == "none"
    assert {name: cfg.residual for name, cfg in PRESETS.items()} == dict.fromkeys(PRESETS, "none")
    with pytest.raises(ValueError, match="TE-only"):
        LossTransformer(LossTransformerConfig(num_tasks=3, embedding="te", residual="sum"))


def test_se_only_residual_also_starts_as_the_sum() -> None:
    comb = LossTransformer(LossTransformerConfig(num_tasks=3, embedding="se", residual="sum"))
    losses = _random_losses(16, 3)
    assert torch.equal(comb(losses), losses.sum(-1))


def test_official_state_dicts_load_in_the_paper_form_and_residual_ones_do_not_export() -> None:
    official = LossTransformer(preset("univl", num_tasks=4)).to_official()
    assert load_official_meltr(official).cfg.residual == "none"
    with pytest.raises(ValueError, match="no residual"):
        LossTransformer(LossTransformerConfig(num_tasks=4)).to_official()


TABLE10 = ["trainer.combiner.preset=null"]  # scripts/launch.py TABLES["10"]: SE / TE only, sizes set field by field


@pytest.mark.parametrize(
    "path,overrides",
    [(str(p.relative_to(ROOT)), []) for b in ("univl", "violet", "allinone") for p in sorted((ROOT / "configs" / b).glob("*.yaml"))]
    + [("configs/univl/msrvtt7k_retrieval.yaml", TABLE10 + [f"trainer.combiner.meltr.embedding={e}"]) for e in ("se", "te")],
)
def test_every_paper_row_builds_the_paper_form(path: str, overrides: list[str]) -> None:
    full = str(ROOT / path)
    cfg = load_run(full, (), overrides)[1].trainer.combiner
    assert cfg.name == "meltr"
    assert build_combiner(cfg, [f"l{i}" for i in range(4)], "l0").cfg.residual == "none"
