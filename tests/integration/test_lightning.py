"""MeltrCallback end to end on CPU: accumulation, max_steps, logging, exact resume (epoch boundary and
mid-epoch), equality with meltr.Trainer, DDP over two gloo ranks, and the errors a user meets."""

from __future__ import annotations

import copy
import csv
import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.multiprocessing as mp
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, DistributedSampler

from meltr import CombinerConfig, LossContractError, LossTransformerConfig, MetaConfig, MetaLearner, OptimConfig, Trainer, TrainerConfig
from meltr.integrations.lightning import MeltrCallback, meltr_loss
from meltr.optim import build_optimizer, build_scheduler
from tests.toy_models import ToyRegression, regression_batches

BACKBONE_OPTIM = OptimConfig(name="adam", lr=1e-2, schedule="linear", warmup_steps=2)


class LitToy(ToyRegression, pl.LightningModule):
    """ToyRegression as a LightningModule: the MELTR loss in training_step, meltr's own optimiser and
    schedule in configure_optimizers (so the backbone step equals meltr.Trainer's)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__(dropout=dropout)
        self.seen: list[tuple[int, dict]] = []  # (global step before the update, batch) per training_step

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.trainer.global_step, batch))
        return meltr_loss(self, self(batch))

    def configure_optimizers(self) -> dict:
        opt = build_optimizer(self.named_parameters(), BACKBONE_OPTIM)
        sched = build_scheduler(opt, BACKBONE_OPTIM, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _combiner(dropout: float = 0.0) -> CombinerConfig:
    small = LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=dropout)
    return CombinerConfig(name="meltr", meltr=small)


def _meta_cfg(**kw: Any) -> MetaConfig:
    # a linear meta schedule: a wrong total_steps (max_steps) would change the meta learning rate
    base: dict[str, Any] = dict(every=2, gamma=0.1, buffer_size=3, optim=OptimConfig(name="adam", lr=1e-2, schedule="linear"))
    return MetaConfig(**{**base, **kw})


def _trainer(tmp_path: Path, *callbacks: pl.Callback, **kw: Any) -> pl.Trainer:
    base: dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                                enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    base.update(kw)
    return pl.Trainer(callbacks=list(callbacks), **base)


def _state(model: torch.nn.Module, meta: MetaLearner) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items() if k.startswith("net.")}
    out.update({f"combiner.{k}": v.detach().clone() for k, v in meta.combiner.state_dict().items()})
    return out


def _collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _samples(n: int) -> list[dict]:
    (b,) = regression_batches(1, n)
    return [{k: v[i] for k, v in b.items()} for i in range(n)]


# --------------------------------------------------------------------------------------------- end to end


def test_end_to_end_accumulation_max_steps_and_logging(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LitToy()
    meta = MetaLearner.for_model(model, _combiner(), _meta_cfg(buffer_size=100))
    calls: list[tuple[Any, ...]] = []  # the micro-batches of each maybe_step call
    losses: list[torch.Tensor] = []  # the loss vector of each combine
    maybe_step, combine = meta.maybe_step, meta.combine
    meta.maybe_step = lambda m, *b, lr=None: calls.append(b) or maybe_step(m, *b, lr=lr)  # type: ignore[method-assign]
    meta.combine = lambda out, m=None: (combine(out, m), losses.append(meta.last_losses))[0]  # type: ignore[method-assign]
    before = copy.deepcopy(meta.combiner.state_dict())
    # 7 batches an epoch with accumulation 2: each epoch ends with a one-batch step
    trainer = _trainer(tmp_path, MeltrCallback(meta), max_steps=6, accumulate_grad_batches=2, log_every_n_steps=2,
                       logger=CSVLogger(tmp_path, name="csv"))
    trainer.fit(model, DataLoader(regression_batches(7, 8), batch_size=None))

    # max_steps: Lightning stopped after its 6th step, and the meta-learner saw each step once
    assert trainer.global_step == meta.steps == 6
    # accumulation: maybe_step got each step's micro-batches, grouped as Lightning stepped them
    groups = [tuple(b for _, b in grp) for _, grp in itertools.groupby(model.seen, key=lambda sb: sb[0])]
    assert 1 in {len(g) for g in groups} and len(groups) == len(calls)
    assert all(len(c) == len(g) and all(a is b for a, b in zip(c, g)) for c, g in zip(calls, groups))
    assert len(meta.buffer) == len(model.seen)
    # the meta step trained the combiner, and the combiner stayed out of the backbone optimiser
    assert any(not torch.equal(before[k], v) for k, v in meta.combiner.state_dict().items())
    combiner_ids = {id(p) for p in meta.combiner.parameters()}
    assert not any(id(p) in combiner_ids for g in trainer.optimizers[0].param_groups for p in g["params"])

    # logging: through Lightning's CSV logger at log_every_n_steps, each value the mean since the last
    names = meta.loss_names
    assert set(trainer.callback_metrics) >= {f"loss/{n}" for n in names} | {f"weight/{n}" for n in names}
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:  # type: ignore[union-attr]
        rows = [r for r in csv.DictReader(f) if r.get("loss/main")]
    assert {f"weight/{n}" for n in names} | {"loss/combined", "meta/hypergrad_norm", "meta/lr"} <= set(rows[0])
    every = trainer.log_every_n_steps
    assert len(rows) == trainer.global_step // every
    steps = [s for s, _ in model.seen]
    for k, row in enumerate(rows):
        window = torch.stack([v for s, v in zip(steps, losses) if k * every <= s < (k + 1) * every]).mean(0)
        assert [float(row[f"loss/{n}"]) for n in names] == pytest.approx(window.tolist(), rel=1e-6)


# --------------------------------------------------------------------------------------------- resume


class _StopAt(pl.Callback):
    """Stops the fit after optimiser step ``step`` (an interruption)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class _ResumableLoader(DataLoader):
    """A DataLoader that Lightning can checkpoint mid-epoch (``state_dict``/``load_state_dict``, as
    torchdata's StatefulDataLoader has): it counts the batches served and skips them after a load.
    Opening it draws a seed from the global RNG, as every DataLoader does."""

    def __init__(self, batches: list[dict]) -> None:
        super().__init__(batches, batch_size=None)
        self.served = self.skip = 0

    def __iter__(self) -> Iterator[dict]:  # type: ignore[override]
        skip, self.skip = self.skip, 0
        return self._serve(super().__iter__(), skip)  # the DataLoader iterator opens (and draws) now

    def _serve(self, batches: Iterator[dict], skip: int) -> Iterator[dict]:
        for i, batch in enumerate(batches):
            if i >= skip:
                self.served = i + 1
                yield batch

    def state_dict(self) -> dict[str, int]:
        return {"served": self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.skip = state["served"]


def _resume_run(tmp_path: Path, loader: Any, stop: int | None = None, ckpt: str | None = None) -> tuple[LitToy, MetaLearner, str]:
    """9 steps with accumulation 2; ``stop``: interrupted after that step and checkpointed there."""
    torch.manual_seed(1)
    model = LitToy(dropout=0.2)  # dropout in the model and the combiner: resume must restore the RNG
    meta = MetaLearner.for_model(model, _combiner(dropout=0.1), _meta_cfg(buffer_evict="weighted"), seed=3)
    callbacks: list[pl.Callback] = [MeltrCallback(meta)]
    if stop:
        # Saved after the step (on_train_batch_end). Lightning 2.6 does not resume exactly from the
        # checkpoint ModelCheckpoint writes at on_train_epoch_end: it runs one extra optimiser step
        # (Lightning-AI/pytorch-lightning#19403), with or without MELTR.
        callbacks += [_StopAt(stop), ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=stop, save_top_k=-1)]
    if ckpt:
        torch.manual_seed(12345)  # scramble the global RNG: resume must restore it
    trainer = _trainer(tmp_path, *callbacks, max_steps=9, accumulate_grad_batches=2, enable_checkpointing=bool(stop))
    trainer.fit(model, loader, ckpt_path=ckpt, weights_only=True if ckpt else None)
    assert trainer.global_step == (stop or 9)
    return model, meta, trainer.checkpoint_callback.best_model_path if stop else ""


@pytest.mark.parametrize("where", ["epoch_boundary", "mid_epoch"])
def test_resume_is_exact(tmp_path: Path, where: str) -> None:
    if where == "epoch_boundary":
        # 6 shuffled batches an epoch (the global RNG shuffles them): the 3rd step ends the epoch
        samples = _samples(48)
        loader_fn = lambda: DataLoader(samples, batch_size=8, shuffle=True, collate_fn=_collate)  # noqa: E731
        stop = 3
    else:
        batches = regression_batches(12, 8)
        loader_fn = lambda: _ResumableLoader(batches)  # noqa: E731
        stop = 4
    full_model, full_meta, _ = _resume_run(tmp_path / "full", loader_fn())
    _, _, path = _resume_run(tmp_path / "half", loader_fn(), stop=stop)
    state = torch.load(path, weights_only=True)  # the Lightning checkpoint holds plain containers only
    assert state["global_step"] == state["callbacks"]["MeltrCallback"]["meta"]["steps"] == stop
    model, meta, _ = _resume_run(tmp_path / "resumed", loader_fn(), ckpt=path)
    full, resumed = _state(full_model, full_meta), _state(model, meta)
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    for a, b in zip(full_meta.optimizer.state_dict()["state"].values(), meta.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------- meltr.Trainer


class _ManualLitToy(LitToy):
    """LitToy with manual optimisation, accumulating 2 micro-batches by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.manual_backward(meltr_loss(self, self(batch)) / 2)
        if batch_idx % 2:
            self.optimizers().step()  # type: ignore[union-attr]
            self.optimizers().zero_grad()  # type: ignore[union-attr]
            self.lr_schedulers().step()  # type: ignore[union-attr]


@pytest.mark.parametrize("optimisation", ["automatic", "manual"])
def test_equals_meltr_trainer_on_the_same_batches(tmp_path: Path, optimisation: str) -> None:
    """Same initial weights, batches, backbone optimiser and schedule, MetaConfig, combiner and seed."""
    batches = regression_batches(8, 8)
    cfg = TrainerConfig(combiner=_combiner(), optim=BACKBONE_OPTIM, meta=_meta_cfg(), max_steps=6, grad_accum=2, seed=5,
                        tensorboard=False, log_every=1000)
    torch.manual_seed(0)
    reference = Trainer(ToyRegression(), cfg, batches, device="cpu")
    init = _state(reference.model, reference.meta)
    model = LitToy() if optimisation == "automatic" else _ManualLitToy()
    meta = MetaLearner.for_model(model, cfg.combiner, cfg.meta, seed=cfg.seed)
    model.load_state_dict({k[len("model."):]: v for k, v in init.items() if k.startswith("model.")})
    meta.combiner.load_state_dict({k[len("combiner."):]: v for k, v in init.items() if k.startswith("combiner.")})
    reference.fit()
    accumulate = {"accumulate_grad_batches": 2} if optimisation == "automatic" else {}
    trainer = _trainer(tmp_path, MeltrCallback(meta), max_steps=6, **accumulate)
    trainer.fit(model, DataLoader(batches, batch_size=None))

    assert trainer.global_step == reference.step == meta.steps == reference.meta.steps
    want, got = _state(reference.model, reference.meta), _state(model, meta)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-7, msg=k)
    assert all(not torch.equal(init[k], want[k]) for k in ("model.net.0.weight", "combiner.scale_embedding.fc1.weight"))


# --------------------------------------------------------------------------------------------- DDP

WORLD = 2


def _ddp_fit(root: Path, sampler: Any = None, **kw: Any) -> tuple[LitToy, MetaLearner, pl.Trainer]:
    """4 steps of 2 micro-batches in float64 (only summation order may differ between the runs)."""
    torch.manual_seed(0)
    model = LitToy()
    meta = MetaLearner.for_model(model, _combiner(), _meta_cfg(), seed=7)
    trainer = _trainer(root, MeltrCallback(meta), max_steps=4, accumulate_grad_batches=2, precision="64-true", **kw)
    trainer.fit(model, DataLoader(_samples(32), batch_size=8 // trainer.world_size, sampler=sampler, collate_fn=_collate))
    return model, meta, trainer


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    # Launched as torchrun would: Lightning joins these processes instead of spawning its own.
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(WORLD), "NODE_RANK": "0",
                       "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    # Lightning gives each rank a DistributedSampler (shuffled, seed 0): rank r reads positions r, r + 2,
    # ... of the epoch's permutation, so the ranks' batches of 4 are halves of the permutation's batches of 8
    model, meta, trainer = _ddp_fit(Path(out_dir), devices=WORLD, strategy="ddp")
    trainer.save_checkpoint(os.path.join(out_dir, "ddp.ckpt"))  # every rank: the MELTR state gathers over ranks
    torch.save(_state(model, meta), os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ddp_ranks_equal_one_process_on_the_concatenated_batches(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    model, meta, _ = _ddp_fit(tmp_path, DistributedSampler(range(32), num_replicas=1, rank=0, shuffle=True, seed=0))
    single = _state(model, meta)
    torch.manual_seed(0)
    init = LitToy().double().state_dict()
    for k in single:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"ranks differ at {k}"
        torch.testing.assert_close(ranks[0][k], single[k], rtol=1e-9, atol=1e-11, msg=f"DDP differs from one process at {k}")
    assert not torch.allclose(init["net.0.weight"], single["model.net.0.weight"])  # training moved the weights
    # the checkpoint keeps each rank's own meta buffer (its halves of the batches) and RNG
    state = torch.load(tmp_path / "ddp.ckpt", weights_only=True)["callbacks"]["MeltrCallback"]
    assert len(state["ranks"]) == WORLD
    x = [[b["x"] for b in r["buffer"]] for r in state["ranks"]]
    assert len(x[0]) == len(x[1]) == meta.cfg.buffer_size and not torch.equal(x[0][0], x[1][0])
    assert torch.equal(x[0][-1], meta.buffer[-1]["x"][0::2]) and torch.equal(x[1][-1], meta.buffer[-1]["x"][1::2])


# --------------------------------------------------------------------------------------------- errors


def _one_step(tmp_path: Path, model: LitToy, meta: MetaLearner | None) -> None:
    callbacks = [MeltrCallback(meta)] if meta is not None else []
    _trainer(tmp_path, *callbacks, max_steps=1).fit(model, DataLoader(regression_batches(2, 4), batch_size=None))


def test_meltr_loss_without_the_callback_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no MeltrCallback"):
        _one_step(tmp_path, LitToy(), None)


class _Broken(LitToy):
    def forward(self, batch: dict) -> dict:
        out = super().forward(batch)
        out["extra"] = out.pop("harmful")
        return out


def test_bad_losses_raise_the_loss_contract_error(tmp_path: Path) -> None:
    model = _Broken()
    with pytest.raises(LossContractError, match=r"_Broken.*missing \['harmful'\].*extra \['extra'\]"):
        _one_step(tmp_path, model, MetaLearner.for_model(model, _combiner(), _meta_cfg()))
    with pytest.raises(LossContractError, match="loss_names"):
        _one_step(tmp_path, model, MetaLearner(("main", "helpful"), "main", _combiner(), _meta_cfg()))


class _Summed(LitToy):
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return sum(self(batch).values())


class _HoldsCombiner(LitToy):
    def __init__(self) -> None:
        super().__init__()
        self.meta = MetaLearner.for_model(self, _combiner(), _meta_cfg())  # fine: a MetaLearner is no nn.Module
        self.combiner = self.meta.combiner  # a submodule: configure_optimizers would train it with the backbone


def test_misuse_is_refused(tmp_path: Path) -> None:
    model = _Summed()
    with pytest.raises(RuntimeError, match="did not use the MELTR loss"):
        _one_step(tmp_path, model, MetaLearner.for_model(model, _combiner(), _meta_cfg()))
    holder = _HoldsCombiner()
    with pytest.raises(ValueError, match="only the meta step may train them"):
        _one_step(tmp_path, holder, holder.meta)
