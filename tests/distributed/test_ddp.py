"""The meta step under DDP: 2 gloo processes equal one process on the concatenated batch.

Each rank trains on its half of every global batch. Because every loss is a per-sample mean and the
halves have equal size, the global batch's losses are the mean of the ranks' losses; the trainer
averages the loss vector before the (nonlinear) combiner and the meta step averages ``v``, the loss
vector and its directional derivatives explicitly (``source: current`` takes ``v`` from each rank's own
training graph and averages it the same way), so both ranks must end with identical parameters
equal to a single-process run on the full batches.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from meltr import CombinerConfig, HypergradConfig, LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
from tests.toy_models import ToyRegression, regression_batches

WORLD = 2


def _cfg(mode: str, combiner: str) -> TrainerConfig:
    source, _, mode = mode.rpartition(":")  # "current:vjp": meta.source current, mode vjp
    return TrainerConfig(
        combiner=CombinerConfig(name=combiner, meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.0)),
        optim=OptimConfig(name="adam", lr=1e-2, schedule="linear", warmup_steps=1),
        meta=MetaConfig(every=2, gamma=0.1, buffer_size=3, source=source or "buffer", hypergrad=HypergradConfig(mode=mode),
                        optim=OptimConfig(name="adam", lr=1e-2)),
        epochs=2,
        tensorboard=False,
    )


def _global_batches() -> list[dict]:
    return regression_batches(5, 8, dtype=torch.float64)


def _train(batches: list[dict], mode: str, combiner: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = ToyRegression().double()
    trainer = Trainer(model, _cfg(mode, combiner), batches, device="cpu")
    trainer.combiner.double()  # float64 end to end, so only summation order can differ
    trainer.fit()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"combiner.{k}": v for k, v in trainer.combiner.state_dict().items()})
    return state


def _worker(rank: int, init_file: str, out_dir: str, mode: str, combiner: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        half = 8 // WORLD
        local = [{k: v[rank * half : (rank + 1) * half] for k, v in b.items()} for b in _global_batches()]
        torch.save(_train(local, mode, combiner), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # no rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("mode,combiner", [("jvp", "meltr"), ("fd", "meltr"), ("current:vjp", "meltr"), ("jvp", "sum")])
def test_two_gloo_ranks_equal_single_process_on_concatenated_batch(tmp_path, mode: str, combiner: str) -> None:
    ctx_env = {"OMP_NUM_THREADS": "1"}
    os.environ.update(ctx_env)
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), mode, combiner), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    single = _train(_global_batches(), mode, combiner)
    # fd chooses its steps from (rank-averaged) loss differences, whose float64 rounding differs between the
    # two runs by the summation order: its estimate (error ~1e-8 relative) may then differ by about that much.
    rtol = 1e-7 if mode.endswith("fd") else 1e-9
    torch.manual_seed(0)
    init = ToyRegression().double()
    assert set(r0) == set(single)
    for k in single:
        assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
        torch.testing.assert_close(r0[k], single[k], rtol=rtol, atol=rtol / 100, msg=f"DDP differs from single process at {k}")
    # training did move the weights (the comparison is not between two untouched models)
    assert not torch.allclose(single["model.net.0.weight"], init.net[0].weight.double())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
