"""Issue 14, item 4: small checkpoints that still resume exactly.

With ``meta.checkpoint_buffer: positions`` (the default) ``last.pt`` stores each buffered batch's
(epoch, batch index) and fingerprint instead of the batch; ``Trainer.resume`` reads the batches again
from the train loader and checks them. A run interrupted with a buffer that spans an epoch boundary must
end bit-identical to the uninterrupted run; the checkpoint must hold no batch; data that is not a
function of (epoch, index) must be refused by name; a loader that cannot be read by position falls
back to storing the batches, with one warning.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from meltr import EpochSampler, MetaConfig, MetaLearner, OptimConfig, Trainer, TrainerConfig
from meltr.buffer import BufferMismatchError, batch_fingerprint
from meltr.checkpoint import load_checkpoint, save_checkpoint
from meltr.config import ConfigError, from_dict
from tests.gloo import gloo_rank, read_reports
from tests.toy_models import ToyRegression, regression_batches, small_meltr, toy_trainer_config

STEPS_PER_EPOCH = 4


def _samples(n: int, dim: int = 8) -> list[dict[str, Tensor]]:
    (b,) = regression_batches(1, n, dim=dim)
    return [{k: v[i] for k, v in b.items()} for i in range(n)]


def _loader(data: Any, batch_size: int = 8) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, sampler=EpochSampler(len(data), seed=1), generator=torch.Generator())


def _cfg(mode: str, *, accum: int = 1, evict: str = "weighted", **kw: Any) -> TrainerConfig:
    meta = MetaConfig(every=2, buffer_size=3, buffer_evict=evict, checkpoint_buffer=mode,  # type: ignore[arg-type]
                      optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"))
    # combiner and model dropout: both the meta RNG and the global RNG matter for exactness
    base = toy_trainer_config(meta=meta, epochs=3, grad_accum=accum, checkpoint_every=1)
    base.combiner.meltr = small_meltr(dropout=0.1)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def _build(mode: str, data: Any = None, *, accum: int = 1, run_dir: Path | None = None, dim: int = 8, **kw: Any) -> Trainer:
    torch.manual_seed(0)
    data = _samples(8 * STEPS_PER_EPOCH * accum, dim) if data is None else data
    return Trainer(ToyRegression(dim=dim, dropout=0.2), _cfg(mode, accum=accum, **kw), _loader(data), device="cpu", run_dir=run_dir)


def _interrupt(trainer: Trainer, at_step: int) -> None:
    """Runs ``trainer`` until its first save at ``at_step``, then stops it as a kill would (after the save)."""
    save = trainer.save

    def save_then_die(path: Any, **kw: Any) -> None:
        save(path, **kw)
        if trainer.step == at_step:
            raise KeyboardInterrupt

    trainer.save = save_then_die  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


def _final(t: Trainer) -> list[Tensor]:
    """Weights, combiner, meta optimiser, meta RNG, global RNG and the buffered batches."""
    out = [*t.model.state_dict().values(), *t.combiner.state_dict().values(), t.meta.generator.get_state(), torch.get_rng_state()]
    for s in t.meta.optimizer.state_dict()["state"].values():
        out += [v for v in s.values() if isinstance(v, Tensor)]
    for b in t.meta.buffer:
        out += list(b.values())
    return out


def _assert_same(a: Trainer, b: Trainer) -> None:
    assert (a.step, a.epoch, a.meta.steps) == (b.step, b.epoch, b.meta.steps)
    assert a.meta.buffer_positions == b.meta.buffer_positions
    got, want = _final(a), _final(b)
    assert len(got) == len(want)
    for x, y in zip(got, want):
        assert torch.equal(x, y)  # atol 0


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


@pytest.mark.parametrize("accum,evict", [(1, "weighted"), (2, "fifo")])
def test_resume_from_positions_is_bit_exact_with_a_buffer_across_an_epoch_boundary(tmp_path, accum: int, evict: str) -> None:
    reference = _build("positions", accum=accum, evict=evict)
    reference.fit()
    first = _build("positions", accum=accum, evict=evict, run_dir=tmp_path)
    _interrupt(first, at_step=STEPS_PER_EPOCH + 1)  # one step into epoch 1
    state = load_checkpoint(tmp_path / "last.pt")
    meta = state["meta"]
    positions = [tuple(p) for p in meta["buffer_positions"]]
    assert len(positions) == len(meta["buffer_fingerprints"]) == 3
    assert {e for e, _ in positions} == {0, 1}  # the buffer spans the epoch boundary
    assert positions == first.meta.buffer_positions
    # No batch in the checkpoint: the buffer is empty and no tensor of a buffered batch is anywhere in it.
    assert meta["buffer"] == [] and meta["buffer_saved"] is False
    stored = {batch_fingerprint(t) for t in _tensors(state)}
    assert not stored & {batch_fingerprint(t) for b in first.meta.buffer for t in b.values()}

    resumed = _build("positions", accum=accum, evict=evict)
    resumed.resume(tmp_path / "last.pt")
    # the re-read batches are the ones the interrupted run had buffered
    assert [batch_fingerprint(b) for b in resumed.meta.buffer] == [batch_fingerprint(b) for b in first.meta.buffer]
    resumed.fit()
    _assert_same(resumed, reference)


def test_positions_checkpoints_hold_no_batches_and_are_smaller(tmp_path) -> None:
    sizes = {}
    for mode in ("batches", "positions", "none"):
        t = _build(mode, run_dir=tmp_path / mode, dim=64, epochs=1, checkpoint_every=None)
        t.fit()
        sizes[mode] = (tmp_path / mode / "last.pt").stat().st_size
    batch_bytes = sum(v.numel() * v.element_size() for v in t.meta.buffer[0].values())  # 8 x (64 + 1 + 64 + 1) floats
    # batches stores 3 batches; positions stores 3 x (2 ints + a 64-character fingerprint) beside what none stores
    assert sizes["batches"] - sizes["none"] >= 3 * batch_bytes
    assert sizes["positions"] - sizes["none"] < 3 * 200
    stored = load_checkpoint(tmp_path / "batches" / "last.pt")["meta"]
    assert len(stored["buffer"]) == 3 and stored["buffer_positions"] is None


class _Augmented(Dataset):
    """Adds noise drawn from the global RNG: the output is not a function of (epoch, index)."""

    def __init__(self, n: int) -> None:
        self.items = _samples(n)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = dict(self.items[i])
        item["x"] = item["x"] + 0.01 * torch.randn(item["x"].shape)
        return item


def test_data_that_is_not_a_function_of_the_position_is_refused_by_name_and_batches_mode_resumes_it(tmp_path, caplog) -> None:
    data = _Augmented(8 * STEPS_PER_EPOCH)
    _interrupt(_build("positions", data, run_dir=tmp_path / "pos"), at_step=3)
    with pytest.raises(BufferMismatchError) as info:
        _build("positions", data).resume(tmp_path / "pos" / "last.pt")
    msg = str(info.value)
    assert str(tmp_path / "pos" / "last.pt") in msg
    assert re.search(r"buffered batch [1-3] of 3 \(epoch 0, batch [0-2] of the epoch\)", msg), msg
    assert "not a function of (epoch, index)" in msg and "global RNG" in msg
    assert "meta.checkpoint_buffer: batches" in msg
    # The escape hatch the message names: resume without the buffer (it refills; not bit-exact).
    lenient = _build("none", data)
    with caplog.at_level(logging.WARNING, logger="meltr"):
        lenient.resume(tmp_path / "pos" / "last.pt")
    assert "not re-read" in caplog.text and lenient.meta.buffer == []
    lenient.fit()
    # The fix the message names: with the batches stored, the same data resumes bit-exact.
    reference = _build("batches", data)
    reference.fit()
    _interrupt(_build("batches", data, run_dir=tmp_path / "bat"), at_step=STEPS_PER_EPOCH + 1)
    resumed = _build("batches", data)
    resumed.resume(tmp_path / "bat" / "last.pt")
    resumed.fit()
    _assert_same(resumed, reference)


def test_a_loader_that_cannot_start_mid_epoch_falls_back_to_batches_with_one_warning(tmp_path, caplog) -> None:
    def build(run_dir: Path | None = None) -> Trainer:
        torch.manual_seed(0)
        return Trainer(ToyRegression(dropout=0.2), _cfg("positions"), regression_batches(STEPS_PER_EPOCH, 8), device="cpu",
                       run_dir=run_dir)

    reference = build()
    reference.fit()
    first = build(tmp_path)
    with caplog.at_level(logging.WARNING, logger="meltr"):
        _interrupt(first, at_step=STEPS_PER_EPOCH + 2)  # several saves, each with the buffer
    assert caplog.text.count("have no position") == 1
    assert "checkpoints store the batches themselves" in caplog.text
    meta = load_checkpoint(tmp_path / "last.pt")["meta"]
    assert len(meta["buffer"]) == 3 and meta["buffer_saved"] is True and meta["buffer_positions"] is None
    resumed = build()
    resumed.resume(tmp_path / "last.pt")
    resumed.fit()
    _assert_same(resumed, reference)


def test_a_checkpoint_of_the_old_layout_resumes_exactly_in_a_positions_run(tmp_path) -> None:
    """Written before positions: the batches under ``buffer``, ``buffer_saved: true``, no position keys."""
    reference = _build("positions")
    reference.fit()
    _interrupt(_build("batches", run_dir=tmp_path), at_step=STEPS_PER_EPOCH + 1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for k in ("buffer_positions", "buffer_fingerprints"):
        del state["meta"][k]
    state["meta"]["buffer_saved"] = True
    state["config"]["trainer"]["meta"]["checkpoint_buffer"] = True
    save_checkpoint(state, tmp_path / "old.pt")
    resumed = _build("positions")
    resumed.resume(tmp_path / "old.pt")
    resumed.fit()
    _assert_same(resumed, reference)


def test_checkpoint_buffer_reads_the_old_booleans_and_refuses_anything_else() -> None:
    assert from_dict({"meta": {"checkpoint_buffer": False}}, TrainerConfig).meta.checkpoint_buffer == "none"
    assert from_dict({"meta": {"checkpoint_buffer": True}}, TrainerConfig).meta.checkpoint_buffer == "batches"
    assert from_dict({}, TrainerConfig).meta.checkpoint_buffer == "positions"
    for bad in ("position", 1, None):
        with pytest.raises(ConfigError, match="meta.checkpoint_buffer"):
            from_dict({"meta": {"checkpoint_buffer": bad}}, TrainerConfig)
    cfg = MetaConfig()
    cfg.checkpoint_buffer = False  # set after construction
    cfg.validate()
    assert cfg.checkpoint_buffer == "none"
    cfg.checkpoint_buffer = "all"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="meta.checkpoint_buffer must be 'positions', 'batches' or 'none'.*'all'"):
        cfg.validate("meta")


def test_meta_learner_in_a_user_loop_restores_positions_through_fetch() -> None:
    batches = regression_batches(5, 8)
    where: dict[tuple[int, int], Any] = {(i // 2, i % 2): b for i, b in enumerate(batches)}
    model = ToyRegression()
    meta = MetaLearner.for_model(model, toy_trainer_config().combiner, MetaConfig(every=2, buffer_size=3))
    for pos, b in where.items():
        meta.maybe_step(model, b, positions=[pos])
    state = meta.state_dict()
    assert state["buffer"] == [] and [tuple(p) for p in state["buffer_positions"]] == list(where)[-3:]
    other = MetaLearner.for_model(model, toy_trainer_config().combiner, MetaConfig(every=2, buffer_size=3))
    with pytest.raises(ValueError, match="pass fetch="):
        other.load_state_dict(state)
    reads: list[tuple[int, int]] = []
    def fetch(p: tuple[int, int]) -> Any:
        reads.append(p)
        return where[p]

    other.load_state_dict(state, fetch=fetch)
    assert reads == list(where)[-3:] and all(a is b for a, b in zip(other.buffer, meta.buffer))
    with pytest.raises(BufferMismatchError, match=r"\(epoch 1, batch 0 of the epoch\).*not a function of"):
        other.load_state_dict(state, fetch=lambda p: where[(0, 0)])
    with pytest.raises(BufferMismatchError, match="cannot be read again"):
        other.load_state_dict(state, fetch=lambda p: where[(9, 9)])
    with pytest.raises(ValueError, match="2 batches and 1 positions"):
        meta.maybe_step(model, batches[0], batches[1], positions=[(0, 0)])


# ---------------------------------------------------------------------------------------------- 2 gloo ranks

WORLD = 2


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    out = Path(out_dir)
    with gloo_rank(rank, WORLD, init_file, out_dir) as report:
        data = _samples(WORLD * 8 * STEPS_PER_EPOCH)

        def build(run_dir: Path | None = None) -> Trainer:
            torch.manual_seed(0)
            loader = DataLoader(data, batch_size=8, sampler=EpochSampler(len(data), seed=1, rank=rank, world_size=WORLD),
                                generator=torch.Generator())
            return Trainer(ToyRegression(dropout=0.2), _cfg("positions", epochs=2), loader, device="cpu", run_dir=run_dir)

        reference = build()
        reference.fit()
        _interrupt(build(out / "run"), at_step=STEPS_PER_EPOCH + 1)
        dist.barrier()
        resumed = build()
        resumed.resume(out / "run" / "last.pt")
        report["buffer"] = [batch_fingerprint(b) for b in resumed.meta.buffer]
        resumed.fit()
        try:
            _assert_same(resumed, reference)
            report["same"] = True
        except AssertionError as exc:
            report["same"] = f"differs: {exc}"


def test_two_gloo_ranks_resume_their_own_buffers_from_positions_bit_exact(tmp_path) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    reports = read_reports(tmp_path, WORLD)
    assert [r["same"] for r in reports] == [True, True]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    (rank_file,) = (tmp_path / "run").glob("last.pt.rank1.*")
    mine = load_checkpoint(rank_file)["meta"]
    for meta, report in zip((last["meta"], mine), reports):
        assert meta["buffer"] == [] and len(meta["buffer_positions"]) == 3
        assert meta["buffer_fingerprints"] == report["buffer"]  # each rank re-read its own shard's batches
    assert last["meta"]["buffer_fingerprints"] != mine["buffer_fingerprints"]
