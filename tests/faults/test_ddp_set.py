"""Issue 14, item 3: the DDP checkpoint set is one commit, and collectives have a configurable timeout.

Two gloo ranks save: every rank file carries the step and the save id of the ``last.pt`` that commits
it, older sets are removed only after the commit, and ``resume`` refuses a mixed set (rank 1's file from
another save) on every rank, naming the files and their steps, instead of merging it silently.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from meltr import CombinerConfig, LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
from meltr import distributed as D
from meltr.checkpoint import CheckpointError, load_checkpoint
from tests.gloo import gloo_rank, read_reports
from tests.toy_models import ToyRegression, regression_batches

WORLD = 2


def _trainer(run: Path, rank: int) -> Trainer:
    cfg = TrainerConfig(
        combiner=CombinerConfig(name="meltr", meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4)),
        optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"),
        meta=MetaConfig(every=2, buffer_size=3, optim=OptimConfig(name="adam", lr=1e-2)),
        epochs=1, checkpoint_every=1, tensorboard=False, log_every=1,
    )
    torch.manual_seed(0)
    batches = [{k: v[rank * 4 : (rank + 1) * 4] for k, v in b.items()} for b in regression_batches(3, 8)]
    return Trainer(ToyRegression(), cfg, batches, device="cpu", run_dir=run)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    out, run = Path(out_dir), Path(out_dir) / "run"
    with gloo_rank(rank, WORLD, init_file, out_dir) as report:
        trainer = _trainer(run, rank)
        trainer.fit()  # last.pt after every step and at the epoch end
        dist.barrier()
        report["rank_files"] = sorted(p.name for p in run.glob("last.pt.rank*"))
        # Two saves at different steps, then rank 1's file of the first replaced by that of the second.
        trainer.save(run / "a.pt")
        batch = {k: v[rank * 4 : (rank + 1) * 4] for k, v in regression_batches(1, 8, seed=5)[0].items()}
        trainer.cfg.log_every = 1000  # fit() closed the run log
        trainer.train_step([batch])
        trainer.save(run / "b.pt")
        if rank == 1:
            (a_file,) = run.glob("a.pt.rank1.*")
            (b_file,) = run.glob("b.pt.rank1.*")
            report["a_file"], report["b_file"] = a_file.name, b_file.name
            shutil.copyfile(b_file, a_file)  # a mixed set: rank 1's state of step 4 under the name of step 3
            # A save that wrote its rank file but died before its commit leaves an extra file, ignored.
            shutil.copyfile(b_file, run / "b.pt.rank1.s00000099-deadbeef")
        dist.barrier()
        try:
            _trainer(out / f"resumed{rank}", rank).resume(run / "a.pt")
            report["mixed"] = "resumed"
        except CheckpointError as exc:
            report["mixed"] = str(exc)
        resumed = _trainer(out / f"resumed_b{rank}", rank)
        resumed.resume(run / "b.pt")
        report["b_step"] = resumed.step


def test_rank_files_are_one_commit_and_a_mixed_set_is_refused(tmp_path) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = read_reports(tmp_path, WORLD)
    run = tmp_path / "run"
    last = load_checkpoint(run / "last.pt")
    # one rank file per rank > 0, from the save last.pt commits (the older sets were removed)
    assert r0["rank_files"] == [f"last.pt.rank1.{last['save_id']}"]
    assert load_checkpoint(run / r0["rank_files"][0])["step"] == last["step"] == 3
    # the mixed set is refused on both ranks, naming each file with its step
    for r in (r0, r1):
        msg = r["mixed"]
        assert "not one checkpoint set" in msg, msg
        assert f"{run / 'a.pt'}: step 3" in msg and f"{run / r1['a_file']}: step 4" in msg
    # the set of b.pt still resumes (the uncommitted extra rank file is ignored)
    assert r0["b_step"] == r1["b_step"] == 4


def test_collective_timeout_from_the_config_or_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(D.TIMEOUT_ENV, raising=False)
    assert D.collective_timeout() is None
    assert D.collective_timeout(90) == datetime.timedelta(seconds=90)
    monkeypatch.setenv(D.TIMEOUT_ENV, "120")
    assert D.collective_timeout() == datetime.timedelta(seconds=120)
    assert D.collective_timeout(5) == datetime.timedelta(seconds=5)  # an explicit value wins
    monkeypatch.setenv(D.TIMEOUT_ENV, "ten")
    with pytest.raises(ValueError, match="MELTR_DIST_TIMEOUT='ten'"):
        D.collective_timeout()
    with pytest.raises(ValueError, match="> 0"):
        D.collective_timeout(0)


def test_init_from_env_passes_the_timeout_to_init_process_group(monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv(D.TIMEOUT_ENV, raising=False)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.init_from_env(timeout=42)
    assert seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=42)}
