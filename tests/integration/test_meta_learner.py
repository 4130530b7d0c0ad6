"""MetaLearner in a user's own loop, and the plug-in's first-try behaviour of meltr.Trainer.

The own loop and meltr.Trainer share one meta-step implementation; the equality test pins that they
produce the same parameters from the same batches. The rest checks what a new user meets first:
max_steps, the final evaluation and last.pt, contract errors that say what to do, extra outputs beside
the losses, gradient checkpointing, weights-only best.pt, the safetensors export, old checkpoints.
"""

from __future__ import annotations

import copy
import math
import pydoc
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader

import meltr
from meltr import LossContractError, MetaConfig, MetaLearner, OptimConfig, Trainer, TrainerConfig
from meltr.checkpoint import CheckpointError, export_safetensors, load_checkpoint, save_checkpoint
from meltr.optim import build_optimizer
from tests.toy_models import ToyRegression, regression_batches, toy_trainer_config

def _cfg(**kw) -> TrainerConfig:
    """The tests' trainer with a meta step every 2 steps over a 3-batch buffer (K and the buffer matter here)."""
    meta = MetaConfig(every=2, gamma=0.1, buffer_size=3, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"))
    return toy_trainer_config(**{"meta": meta, **kw})


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_own_loop_equals_meltr_trainer_on_the_same_batches() -> None:
    batches = regression_batches(7, 8)
    cfg = _cfg(max_steps=7)

    torch.manual_seed(0)
    reference = Trainer(ToyRegression(), copy.deepcopy(cfg), batches, device="cpu")
    reference.fit()

    torch.manual_seed(0)
    model = ToyRegression()
    meta = MetaLearner.for_model(model, cfg.combiner, cfg.meta, seed=cfg.seed, total_steps=7)
    optimizer = build_optimizer(model.named_parameters(), cfg.optim)
    for batch in batches:
        meta.combine(model(batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
        meta.maybe_step(model, batch)

    for k, v in _params(reference.model).items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0, msg=f"backbone {k}")
    for k, v in _params(reference.combiner).items():
        torch.testing.assert_close(meta.combiner.state_dict()[k], v, rtol=0, atol=0, msg=f"MELTR {k}")
    assert meta.steps == reference.step == 7
    # 7 steps with K=2: meta steps at 0, 2, 4, 6
    assert meta.optimizer.state_dict()["state"][0]["step"] == math.ceil(7 / cfg.meta.every)


def test_meta_learner_state_dict_resumes_exactly() -> None:
    batches = regression_batches(8, 8)
    cfg = _cfg()

    def run(model: nn.Module, meta: MetaLearner, opt: torch.optim.Optimizer, part: list) -> None:
        for batch in part:
            meta.combine(model(batch)).backward()
            opt.step()
            opt.zero_grad()
            meta.maybe_step(model, batch)

    def build() -> tuple[nn.Module, MetaLearner, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = ToyRegression()
        return model, MetaLearner.for_model(model, cfg.combiner, cfg.meta), build_optimizer(model.named_parameters(), cfg.optim)

    full = build()
    run(*full, batches)
    first = build()
    run(*first, batches[:5])
    state = {"model": first[0].state_dict(), "opt": first[2].state_dict(), "meta": first[1].state_dict()}
    second = build()
    second[0].load_state_dict(state["model"])
    second[2].load_state_dict(state["opt"])
    second[1].load_state_dict(state["meta"])
    run(*second, batches[5:])
    for a, b in zip(full[1].combiner.state_dict().values(), second[1].combiner.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full[0].state_dict().values(), second[0].state_dict().values()):
        assert torch.equal(a, b)


def test_readme_own_loop_snippet_runs(tmp_path, monkeypatch) -> None:
    """The README's own-loop snippet, executed as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    marker = "<!-- snippet: own-loop -->"
    assert marker in text, "README lost its own-loop snippet marker"
    block = text.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__readme__"}
    exec(compile(block, "README.md:own-loop", "exec"), scope)
    meta, batches = scope["meta"], scope["batches"]
    assert meta.steps == len(batches)
    assert meta.optimizer.state_dict()["state"][0]["step"] == math.ceil(len(batches) / meta.cfg.every)
    saved = torch.load(tmp_path / "own_loop.pt", weights_only=True)
    assert set(saved) == {"model", "meta"}


# ---------------------------------------------------------------------------------------------- Trainer


def _loader(n_batches: int, batch_size: int = 8) -> DataLoader:
    (b,) = regression_batches(1, n_batches * batch_size)
    samples = [{k: v[i] for k, v in b.items()} for i in range(n_batches * batch_size)]
    return DataLoader(samples, batch_size=batch_size, shuffle=False)


def test_max_steps_wins_over_epochs_and_the_run_ends_with_eval_and_last_pt(tmp_path) -> None:
    evals: list[int] = []
    trainer = Trainer(ToyRegression(), _cfg(epochs=1, max_steps=12, best_metric="score"), _loader(10), device="cpu",
                      run_dir=tmp_path, eval_fn=lambda m: evals.append(1) or {"score": float(len(evals))})
    trainer.fit()
    assert trainer.step == 12 and trainer.epoch == 1 and trainer.batch_in_epoch == 2
    # one evaluation at the end of epoch 1 (step 10), one at the end of the run (step 12)
    assert len(evals) == 2
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 12
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 12


def test_eval_every_still_evaluates_at_the_end(tmp_path) -> None:
    steps: list[int] = []
    trainer = Trainer(ToyRegression(), _cfg(epochs=1, eval_every=4), _loader(10), device="cpu", run_dir=tmp_path,
                      eval_fn=lambda m: steps.append(trainer.step) or {"x": 0.0})
    trainer.fit()
    assert steps == [4, 8, 10]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 10


def test_best_pt_holds_weights_for_evaluation_only_and_cannot_be_resumed(tmp_path) -> None:
    trainer = Trainer(ToyRegression(), _cfg(epochs=2, best_metric="score"), _loader(4), device="cpu", run_dir=tmp_path,
                      eval_fn=lambda m: {"score": 1.0})
    trainer.fit()
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert {"model", "combiner", "config", "loss_names", "metrics", "best"} <= set(best)
    assert not {"optimizer", "meta", "rng"} & set(best)
    assert {"optimizer", "scheduler", "meta", "rng", "model", "combiner"} <= set(last)
    assert (tmp_path / "best.pt").stat().st_size < (tmp_path / "last.pt").stat().st_size
    fresh = Trainer(ToyRegression(), _cfg(epochs=2), _loader(4), device="cpu")
    with pytest.raises(CheckpointError, match="weights only.*last.pt"):
        fresh.resume(tmp_path / "best.pt")


class _Tied(nn.Module):
    loss_names = ("main", "aux")
    target_loss = "main"

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight  # tied, as language models tie input and output embeddings

    def forward(self, batch):
        logits = self.out(self.emb(batch["tok"]))
        return {"main": F.cross_entropy(logits, batch["tok"]), "aux": logits.pow(2).mean()}


def test_safetensors_export_loads_strictly_into_the_bare_model(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_model

    batches = [{"tok": torch.randint(0, 10, (6,))} for _ in range(3)]
    trainer = Trainer(_Tied(), _cfg(epochs=1), batches, device="cpu", run_dir=tmp_path)
    trainer.fit()
    out = export_safetensors(tmp_path / "last.pt", tmp_path / "model.safetensors")
    bare = _Tied()
    load_model(bare, out)  # strict: every key of the model is in the file or tied to one that is
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(bare.state_dict()[k], v)
    assert bare.out.weight is bare.emb.weight  # the tie survives loading
    with safe_open(out, "pt") as f:  # the tied tensor is stored once
        assert sorted(f.keys()) == ["emb.weight"] and f.metadata()["tied"] == '{"out.weight": "emb.weight"}'
    assert trainer.export(tmp_path / "direct.safetensors").stat().st_size == out.stat().st_size
    with pytest.raises(CheckpointError, match="no 'nothing' weights"):
        export_safetensors(tmp_path / "last.pt", tmp_path / "x.safetensors", key="nothing")


def test_version_1_checkpoints_resume_exactly(tmp_path) -> None:
    """A last.pt in the layout before the MetaLearner (format 1) resumes as its format-2 twin does."""
    def build() -> Trainer:
        torch.manual_seed(0)
        cfg = _cfg(epochs=2)
        cfg.combiner.meltr.residual = "none"  # format 1 predates the residual start: its MELTR was the paper's form
        return Trainer(ToyRegression(), cfg, _loader(4), device="cpu")

    first = build()
    first.cfg.max_steps, first.total_steps = 5, 5
    first.fit()
    state = first.state_dict()
    meta = state.pop("meta")
    v1 = {**state, "format_version": 1, "meta_rng": meta["generator"], "buffer": meta["buffer"], "meta_pos": meta["meta_pos"],
          "meta_optimizer": meta["optimizer"], "meta_scheduler": meta["scheduler"]}
    save_checkpoint(v1, tmp_path / "v1.pt")
    save_checkpoint(first.state_dict(), tmp_path / "v2.pt")
    results = []
    for name in ("v1.pt", "v2.pt"):
        t = build()
        t.resume(tmp_path / name)
        t.fit()
        results.append(t)
    for a, b in zip(results[0].combiner.state_dict().values(), results[1].combiner.state_dict().values()):
        assert torch.equal(a, b)
    assert results[0].step == results[1].step == 8


# ---------------------------------------------------------------------------------------------- contract


class _NoNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(2, 1)

    def forward(self, batch):
        return {"a": self.f(batch).mean()}


def test_a_model_without_loss_names_gets_a_contract_error_that_says_what_to_declare() -> None:
    with pytest.raises(LossContractError, match="_NoNames has no loss_names.*declare"):
        Trainer(_NoNames(), _cfg(), [torch.randn(3, 2)], device="cpu")
    with pytest.raises(LossContractError, match="_NoNames has no loss_names"):
        MetaLearner.for_model(_NoNames())


class _WithLogits(ToyRegression):
    def forward(self, batch):
        return {"losses": super().forward(batch), "logits": self.net(batch["x"])}


class _ExtraAtTop(ToyRegression):
    def forward(self, batch):
        return {**super().forward(batch), "logits": self.net(batch["x"])}


def _combiner_after(model_cls: Callable[[], nn.Module], batches: list) -> list[torch.Tensor]:
    """MELTR's parameters after a 3-step run from seed 0 on ``batches``."""
    torch.manual_seed(0)
    trainer = Trainer(model_cls(), _cfg(max_steps=3), batches, device="cpu")
    trainer.fit()
    return list(trainer.combiner.state_dict().values())


def test_extra_outputs_go_beside_the_losses_and_the_error_says_so() -> None:
    batches = regression_batches(3, 8)
    for x, y in zip(_combiner_after(_WithLogits, batches), _combiner_after(ToyRegression, batches)):
        assert torch.equal(x, y)
    with pytest.raises(LossContractError, match=r"extra \['logits'\].*'losses' entry"):
        Trainer(_ExtraAtTop(), _cfg(max_steps=1), batches, device="cpu").fit()


class _Checkpointed(ToyRegression):
    def __init__(self, use_reentrant: bool) -> None:
        super().__init__()
        self.use_reentrant = use_reentrant

    def forward(self, batch):
        pred = checkpoint(self.net, batch["x"], use_reentrant=self.use_reentrant).squeeze(-1)
        pred_a = self.net(batch["xa"]).squeeze(-1)
        return {"main": F.mse_loss(pred, batch["y"]), "helpful": F.mse_loss(pred_a, batch["ya"]),
                "harmful": F.mse_loss(pred_a, -batch["ya"])}


def test_gradient_checkpointing_non_reentrant_works_reentrant_is_named() -> None:
    batches = regression_batches(3, 8)
    plain = _combiner_after(ToyRegression, batches)
    for x, y in zip(plain, _combiner_after(lambda: _Checkpointed(use_reentrant=False), batches)):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    with pytest.raises(LossContractError, match="reentrant gradient checkpointing.*use_reentrant=False"):
        Trainer(_Checkpointed(use_reentrant=True), _cfg(max_steps=1), batches, device="cpu").fit()


def test_help_of_the_package_lists_the_api_not_module_internals() -> None:
    text = pydoc.render_doc(meltr, renderer=pydoc.plaintext)
    assert "MetaLearner" in text and "Trainer" in text
    # nn.Module's inherited methods (register_forward_hook and ~70 others) are not in the package help
    assert "register_forward_hook" not in text


def test_a_loss_transformer_state_resumes_only_in_the_form_it_was_trained_in(tmp_path) -> None:
    """The paper's form and the residual start share their keys but compute different losses."""
    paper = _cfg(max_steps=2)
    paper.combiner.meltr.residual = "none"
    first = Trainer(ToyRegression(), paper, regression_batches(2, 8), device="cpu", run_dir=tmp_path)
    first.fit()
    state = first.meta.state_dict()
    assert state["residual"] == "none"
    default = MetaLearner.for_model(ToyRegression(), _cfg().combiner)
    with pytest.raises(ValueError, match="residual='none' form.*residual='sum'"):
        default.load_state_dict(state)
    legacy = {k: v for k, v in state.items() if k != "residual"}  # written before the residual start existed
    with pytest.raises(ValueError, match="residual='none'"):
        default.load_state_dict(legacy)
    resumed = Trainer(ToyRegression(), _cfg(max_steps=4), regression_batches(2, 8), device="cpu")
    with pytest.raises(CheckpointError, match="last.pt.*residual"):
        resumed.resume(tmp_path / "last.pt")


def test_checkpoints_without_the_meta_buffer_are_smaller_and_resume_says_it_is_not_exact(tmp_path, caplog) -> None:
    def run(keep: bool, out) -> Trainer:
        cfg = _cfg(max_steps=4)
        cfg.meta.checkpoint_buffer = keep
        trainer = Trainer(ToyRegression(), cfg, regression_batches(4, 64), device="cpu", run_dir=out)
        trainer.fit()
        return trainer

    run(True, tmp_path / "with")
    run(False, tmp_path / "without")
    assert len(load_checkpoint(tmp_path / "with" / "last.pt")["meta"]["buffer"]) == 3  # buffer_size 3
    assert load_checkpoint(tmp_path / "without" / "last.pt")["meta"]["buffer"] == []
    assert (tmp_path / "without" / "last.pt").stat().st_size < (tmp_path / "with" / "last.pt").stat().st_size
    cfg = _cfg(max_steps=6)
    cfg.meta.checkpoint_buffer = False
    resumed = Trainer(ToyRegression(), cfg, regression_batches(4, 64), device="cpu")
    with caplog.at_level("WARNING", logger="meltr"):
        resumed.resume(tmp_path / "without" / "last.pt")
    assert "not bit-identical" in caplog.text
    resumed.fit()
    assert resumed.step == 6


def test_a_checkpoint_written_after_an_epochs_last_step_resumes_into_the_next_epoch(tmp_path) -> None:
    """The step checkpoint of an epoch's last step comes before the epoch-end one; a run killed between
    the two resumes with no batch left in that epoch and must go on with the next (it once stopped)."""
    def build(run_dir=None) -> Trainer:
        torch.manual_seed(0)
        return Trainer(ToyRegression(), _cfg(epochs=2, checkpoint_every=1), _loader(4), device="cpu", run_dir=run_dir)

    full = build()
    full.fit()
    first = build(tmp_path)

    def killed(*args, **kwargs):  # the process dies right after the step checkpoint of step 4
        raise KeyboardInterrupt

    first._log_epoch = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 0, 4)  # between the two saves
    second = build()
    second.resume(tmp_path / "last.pt")
    second.fit()
    assert second.step == full.step == 8
    for a, b in zip(_params(second.model).values(), _params(full.model).values()):
        assert torch.equal(a, b)
