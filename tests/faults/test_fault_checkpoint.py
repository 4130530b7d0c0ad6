"""Fault injection on meltr's own checkpoints: truncation at many cut points of ``last.pt`` and ``best.pt`` of a
real ``meltr.Trainer`` run, SIGKILL during ``save_checkpoint`` (the previous file must stay loadable and whole),
stale temp files of torn saves, and the save-time ``weights_only`` check.

Fast by default (CI); ``MELTR_SLOW_TESTS=1`` runs many more cut points and kills.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from meltr import CombinerConfig, LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
from meltr.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.toy_models import ToyRegression, regression_batches

SLOW = os.environ.get("MELTR_SLOW_TESTS") == "1"
N_CUTS = 400 if SLOW else 40
N_KILLS = 36 if SLOW else 3
REPO = Path(__file__).resolve().parents[2]


def _cut_points(size: int, n: int) -> list[int]:
    """``n`` offsets spread over [0, size), always with 0, 1 and size - 1 (the edges)."""
    points = {0, 1, size - 1} | {int(i * size / n) for i in range(n)}
    return sorted(p for p in points if 0 <= p < size)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.pt`` and ``best.pt`` of a short MELTR run on the toy regression model."""
    out = tmp_path_factory.mktemp("run")
    cfg = TrainerConfig(
        combiner=CombinerConfig(name="meltr", meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16,
                                                                          num_heads=4, dropout=0.0)),
        optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"),
        meta=MetaConfig(every=2, gamma=0.1, buffer_size=3, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant")),
        tensorboard=False, log_every=1, max_steps=4, best_metric="score")
    Trainer(ToyRegression(), copy.deepcopy(cfg), regression_batches(4, 8), device="cpu", run_dir=out,
            eval_fn=lambda m: {"score": 1.0}).fit()
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    return out


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_every_cut_point_raises_checkpoint_error_naming_the_file(run_dir: Path, tmp_path: Path, name: str) -> None:
    data = (run_dir / name).read_bytes()
    load_checkpoint(run_dir / name)  # the whole file is fine
    cuts = _cut_points(len(data), N_CUTS)
    held = 0
    for cut in cuts:
        bad = tmp_path / f"cut{cut}_{name}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(bad)
        assert str(bad) in str(info.value), f"cut at {cut}: {info.value}"
        held += 1
        bad.unlink()
    assert held == len(cuts) >= min(N_CUTS, len(data))
    print(f"{name}: {held}/{len(cuts)} cut points of {len(data)} bytes raised CheckpointError naming the file")


_CHILD = textwrap.dedent("""
    import sys, torch
    from meltr.checkpoint import save_checkpoint
    path = sys.argv[1]
    step = 0
    while True:
        step += 1
        # ~4 MB: torch.save takes long enough that a kill usually lands mid-write.
        save_checkpoint({"step": step, "w": torch.full((1 << 20,), float(step))}, path)
        if step == 1:
            print("ready", flush=True)
""")


def _kill_during_save(target: Path, delay: float) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(target)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()


def _assert_whole(path: Path) -> int:
    state = load_checkpoint(path)
    step = state["step"]
    assert torch.equal(state["w"], torch.full((1 << 20,), float(step))), "a torn checkpoint was loaded"
    return step


def test_sigkill_during_save_leaves_a_whole_loadable_file_and_the_next_save_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    rng = np.random.default_rng(0)
    held = mid_write = 0
    for _ in range(N_KILLS):
        _kill_during_save(target, float(rng.uniform(0.0, 0.4)))
        _assert_whole(target)  # whatever step the kill hit, the file is one complete earlier save
        held += 1
        # A temp file now means the kill landed inside save_checkpoint (the next child's first save removes it).
        mid_write += bool(list(tmp_path.glob(f".{target.name}.*.tmp")))
    torn = sorted(p.name for p in tmp_path.glob(f".{target.name}.*.tmp"))
    # The next save in this process removes the dead writers' leftovers.
    save_checkpoint({"step": -1, "w": torch.full((1 << 20,), -1.0)}, target)
    assert _assert_whole(target) == -1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"], f"torn temps left: {torn}"
    print(f"SIGKILL during save: {held}/{N_KILLS} kills left a whole loadable file ({mid_write} landed mid-write and "
          f"left a torn temp file, each removed by the next save)")


def test_save_time_check_refuses_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"state\['meta'\]\['buffer'\]\[0\]\['x'\] is a numpy"):
        save_checkpoint({"step": 2, "meta": {"buffer": [{"x": np.zeros(3)}]}}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_resuming_a_sum_checkpoint_as_meltr_names_the_file_and_both_combiners(tmp_path: Path) -> None:
    def cfg(name: str) -> TrainerConfig:
        return TrainerConfig(
            combiner=CombinerConfig(name=name, meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16,
                                                                           ffn_dim=16, num_heads=4, dropout=0.0)),
            optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"),
            meta=MetaConfig(every=2, gamma=0.1, buffer_size=3, optim=OptimConfig(name="adam", lr=1e-2,
                                                                                  schedule="constant")),
            tensorboard=False, log_every=1, max_steps=2)

    Trainer(ToyRegression(), cfg("sum"), regression_batches(2, 8), device="cpu", run_dir=tmp_path / "a").fit()
    trainer = Trainer(ToyRegression(), cfg("meltr"), regression_batches(2, 8), device="cpu", run_dir=tmp_path / "b")
    with pytest.raises((CheckpointError, ValueError)) as info:
        trainer.resume(tmp_path / "a" / "last.pt")
    message = str(info.value)
    assert str(tmp_path / "a" / "last.pt") in message and "'sum'" in message and "'meltr'" in message
