"""`pip install .` ships the plug-in alone, and it works outside the repository: training, the `meltr` command, typing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_only_meltr_and_trains_outside_the_repo(tmp_path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", str(ROOT), "--no-deps", "--no-build-isolation", "--target", str(target), "-q"],
        check=True, capture_output=True, cwd=tmp_path,
    )
    # bin/ holds the console script pip writes for [project.scripts]; no other top-level package ships.
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert top == ["meltr"]
    assert (target / "meltr" / "py.typed").is_file()  # PEP 561 marker: type checkers read the annotations
    (dist_info,) = target.glob("meltr-*.dist-info")
    assert "MIT License" in (dist_info / "licenses" / "LICENSE").read_text()
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
        "cfg = TrainerConfig(tensorboard=False, log_every=2, epochs=1); cfg.combiner.meltr.num_heads = 8\n"
        "out = Trainer(M(), cfg, data, device='cpu', run_dir='run').fit()\n"
        "import meltr; print(meltr.__file__, out['step'], cfg.epochs * len(data))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    path, steps, expected_steps = proc.stdout.split()
    assert path.startswith(str(target)) and steps == expected_steps

    # The console script of the installed copy summarises and plots that run (from a directory outside the clone).
    meltr_cmd = target / "bin" / "meltr"
    summary = subprocess.run([str(meltr_cmd), "summary", "run", "--json", "--window", "3"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=True)
    (s,) = json.loads(summary.stdout)
    train = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert s["finished"] and s["steps"] == int(steps) and s["window"] == min(3, len(train)) > 0
    last = train[-s["window"]:]
    assert s["task_weights"] == pytest.approx({n: sum(r["task_weights"][n] for r in last) / len(last) for n in ("task", "aux")})
    plot = subprocess.run([str(meltr_cmd), "plot", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    pngs = [tmp_path / p for p in plot.stdout.split()]
    assert len(pngs) == 2 and all(p.parent == tmp_path / "run" / "plots" and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
