"""``MeltrTrainer`` under DDP: 2 gloo processes equal one process on the concatenated batches.

The Hugging Face Trainer (through accelerate) wraps the model in DDP and deals consecutive batches of the
in-order dataset to the ranks in turn, so each optimiser step sees the same samples as a single process
with a batch twice as large. Every loss is a per-sample mean, the meta-learner averages the loss vector
and the meta step's gradients over ranks, and the meta step runs on the unwrapped model, so both ranks
must end with identical parameters equal to the single-process run (float64: only summation order differs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor
from transformers import TrainingArguments

from meltr import CombinerConfig, LossTransformerConfig, MetaConfig, OptimConfig
from meltr.checkpoint import load_checkpoint
from meltr.integrations.hf import META_STATE_NAME
from tests.hf_models import InOrderTrainer, collate
from tests.toy_models import ToyRegression, regression_batches

WORLD = 2
GLOBAL_BATCH = 8
STEPS = 4


class _KwargsToy(ToyRegression):
    """:class:`ToyRegression` called as Hugging Face calls models, ``model(**batch)``."""

    def forward(self, **batch: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        return super().forward(batch)


def _samples() -> list[dict[str, Tensor]]:
    (b,) = regression_batches(1, GLOBAL_BATCH * STEPS, dtype=torch.float64)
    return [{k: v[i] for k, v in b.items()} for i in range(GLOBAL_BATCH * STEPS)]


def _train(out: Path, per_device_batch: int) -> dict[str, Tensor]:
    torch.manual_seed(0)
    args = TrainingArguments(
        str(out), use_cpu=True, report_to=[], disable_tqdm=True, seed=0, optim="adamw_torch",
        per_device_train_batch_size=per_device_batch, max_steps=STEPS, learning_rate=1e-2, lr_scheduler_type="linear",
        max_grad_norm=1.0, logging_steps=1, save_strategy="steps", save_steps=STEPS,
        remove_unused_columns=False,  # forward(**batch) names no columns for the Trainer to keep
    )
    combiner = CombinerConfig(name="meltr", meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.0))
    meta = MetaConfig(every=2, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"))
    trainer = InOrderTrainer(model=_KwargsToy().double(), args=args, combiner=combiner, meta=meta, train_dataset=_samples(),
                             data_collator=collate)
    trainer.meta.combiner.double()  # float64 end to end (in place: the meta optimiser keeps its parameters)
    trainer.train()
    state = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    state.update({f"combiner.{k}": v for k, v in trainer.meta.combiner.state_dict().items()})
    return state


def _worker(rank: int, init_file: str, out: str) -> None:
    # What torchrun would set; the process group is made here (a file rendezvous needs no free port)
    # and accelerate adopts it.
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_WORLD_SIZE": str(WORLD),
                       "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(_train(Path(out), GLOBAL_BATCH // WORLD), os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # no rank tears the group down while the other still talks to it
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process_on_the_concatenated_batches(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = _train(tmp_path / "single", GLOBAL_BATCH)
    torch.manual_seed(0)
    initial = _KwargsToy().double().state_dict()
    assert set(ranks[0]) == set(single)
    for key, value in single.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks differ at {key}"
        # Not 1e-11: the key bias of the loss transformer's attention has a zero gradient up to rounding,
        # which Adam's normalisation turns into updates of ~1e-10 that differ with the summation order.
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-7, atol=1e-9, msg=f"DDP differs from one process at {key}")
    assert not torch.equal(single["model.net.0.weight"], initial["net.0.weight"])  # training moved the weights

    # Each process saved its own meta state: the buffers hold each rank's own batches.
    folder = tmp_path / f"checkpoint-{STEPS}"
    saved = [load_checkpoint(folder / name) for name in (META_STATE_NAME, "meltr_rank1.pt")]
    assert all(s["world_size"] == WORLD for s in saved)
    assert not torch.equal(saved[0]["meta"]["buffer"][-1]["x"], saved[1]["meta"]["buffer"][-1]["x"])
