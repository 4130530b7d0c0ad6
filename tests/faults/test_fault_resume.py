"""A training run SIGKILLed at a random moment (inside a save or between saves) resumes from its
``last.pt`` and ends bit-identical to the same run never interrupted.

``MELTR_SLOW_TESTS=1`` runs 20 kills instead of 3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from meltr.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
N_KILLS = 20 if os.environ.get("MELTR_SLOW_TESTS") == "1" else 3

# The run: MELTR (with combiner dropout, so the meta RNG and the global RNG both matter) on the toy
# regression, an EpochSampler with a generator, last.pt after every step. Run in a child (killed) or here.
_RUN = textwrap.dedent("""
    import sys, torch
    from torch.utils.data import DataLoader
    from meltr import CombinerConfig, EpochSampler, LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
    from tests.toy_models import ToyRegression, regression_batches

    def build(run_dir):
        torch.manual_seed(0)
        (b,) = regression_batches(1, 96)
        samples = [{k: v[i] for k, v in b.items()} for i in range(96)]
        collate = lambda items: {k: torch.stack([it[k] for it in items]) for k in items[0]}
        loader = DataLoader(samples, batch_size=8, sampler=EpochSampler(96, seed=1), generator=torch.Generator(), collate_fn=collate)
        cfg = TrainerConfig(
            combiner=CombinerConfig(meltr=LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.1)),
            optim=OptimConfig(name="adam", lr=1e-2, schedule="linear", warmup_steps=2),
            meta=MetaConfig(every=2, buffer_size=3, buffer_evict="weighted", optim=OptimConfig(name="adam", lr=1e-2)),
            epochs=2, checkpoint_every=1, log_every=1, tensorboard=False)
        return Trainer(ToyRegression(hidden=256, dropout=0.2), cfg, loader, device="cpu", run_dir=run_dir)

    if __name__ == "__main__":
        build(sys.argv[1]).fit()
""")


def _final(trainer) -> list[torch.Tensor]:
    return [*trainer.model.state_dict().values(), *trainer.combiner.state_dict().values()]


def test_a_run_killed_at_any_moment_resumes_bit_identical(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    scope: dict = {"__name__": "run"}
    exec(compile(_RUN, str(script), "exec"), scope)
    reference = scope["build"](tmp_path / "reference")
    reference.fit()
    want = _final(reference)

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    rng = np.random.default_rng(0)
    resumed_from = []
    for k in range(N_KILLS):
        run_dir = tmp_path / f"killed{k}"
        child = subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the first save: from here on a kill can land anywhere in the run
        time.sleep(float(rng.uniform(0.0, 0.2)))  # the run takes ~0.3 s after its first save
        child.send_signal(signal.SIGKILL)
        child.wait()
        trainer = scope["build"](run_dir)
        step = load_checkpoint(run_dir / "last.pt")["step"]
        trainer.resume(run_dir / "last.pt")
        trainer.fit()
        resumed_from.append(step)
        for a, b in zip(_final(trainer), want):
            assert torch.equal(a, b), f"kill {k}: resumed from step {step}, the result differs from the uninterrupted run"
    print(f"SIGKILL anywhere in a run: {N_KILLS}/{N_KILLS} resumed bit-identical (from steps {resumed_from} of {reference.step})")
