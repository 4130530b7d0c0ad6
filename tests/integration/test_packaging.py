"""`pip install .` ships the plug-in alone, and it works outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_only_meltr_and_trains_outside_the_repo(tmp_path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", str(ROOT), "--no-deps", "--no-build-isolation", "--target", str(target), "-q"],
        check=True, capture_output=True, cwd=tmp_path,
    )
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert top == ["meltr"]
    # A user's own model, a few lines, run from a directory outside the clone.
    script = tmp_path / "user.py"
    script.write_text(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "from meltr import Trainer, TrainerConfig\n"
        "class M(nn.Module):\n"
        "    loss_names = ('task', 'aux'); target_loss = 'task'\n"
        "    def __init__(self):\n        super().__init__(); self.f = nn.Linear(4, 1)\n"
        "    def forward(self, b):\n"
        "        p = self.f(b['x']).squeeze(-1)\n"
        "        return {'task': F.mse_loss(p, b['y']), 'aux': p.pow(2).mean()}\n"
        "data = [{'x': torch.randn(8, 4), 'y': torch.randn(8)} for _ in range(6)]\n"
        "cfg = TrainerConfig(tensorboard=False); cfg.combiner.meltr.num_heads = 8\n"
        "out = Trainer(M(), cfg, data, device='cpu').fit()\n"
        "import meltr; print(meltr.__file__, out['step'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    path, steps = proc.stdout.split()
    assert path.startswith(str(target)) and steps == "6"
