"""Issue 14, item 1 (and the launcher bits of item 6): a run is never overwritten or lost by accident.

``scripts/train.py`` refuses an output directory that holds a run unless asked to resume or overwrite;
the epoch-end ``last.pt`` is on disk before the evaluation starts, so a crash inside the evaluation loses
no training and the resumed run equals the uninterrupted one; a resume leaves a marker in
``metrics.jsonl`` and the summary counts replayed steps once; the paper rows checkpoint by steps;
``config.yaml`` gets the umask's mode; the launcher (scripts/launch.py) refuses ``NGPU=abc``.
"""

from __future__ import annotations

import copy
import logging
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml

from meltr import CombinerConfig, LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
from meltr.checkpoint import load_checkpoint
from meltr.config import dump
from meltr.log import drop_replayed, read_jsonl
from meltr.summary import summarize_run
from scripts.launch import main as launch
from scripts.train import RunDirError, main, resolve_resume
from tests.toy_models import ToyRegression, regression_batches

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ scripts/train.py and the output directory


@pytest.mark.parametrize("existing", ["last.pt", "metrics.jsonl", "best.pt"])
def test_train_refuses_an_output_directory_that_holds_a_run(tmp_path, capsys, existing: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / existing).write_bytes(b"previous run")
    assert main(["--config", str(ROOT / "configs/univl/mosi.yaml"), "--set", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and existing in err
    assert "--resume auto" in err and "--overwrite" in err
    assert (out / existing).read_bytes() == b"previous run" and not (out / "config.yaml").exists()
    assert not (out / "row.json").exists()  # a refused launch records nothing over the run it refused to touch


def test_resume_auto_picks_up_last_pt_or_starts_fresh(tmp_path) -> None:
    assert resolve_resume(tmp_path, "auto", overwrite=False) is None  # empty directory: a fresh start
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "last.pt").write_bytes(b"x")
    assert resolve_resume(tmp_path, "auto", overwrite=False) == str(tmp_path / "last.pt")
    assert resolve_resume(tmp_path, str(tmp_path / "last.pt"), overwrite=False) == str(tmp_path / "last.pt")


def test_resume_auto_without_last_pt_refuses_a_directory_with_other_run_files(tmp_path) -> None:
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunDirError, match=rf"{tmp_path}.*metrics.jsonl.*no last.pt.*--overwrite"):
        resolve_resume(tmp_path, "auto", overwrite=False)


def test_resume_path_must_exist_and_excludes_overwrite(tmp_path) -> None:
    with pytest.raises(RunDirError, match="no such checkpoint file"):
        resolve_resume(tmp_path, str(tmp_path / "nope.pt"), overwrite=False)
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(RunDirError, match="contradict"):
        resolve_resume(tmp_path, str(tmp_path / "last.pt"), overwrite=True)


def test_overwrite_removes_the_previous_run_and_names_each_file(tmp_path, caplog) -> None:
    for name in ("metrics.jsonl", "last.pt", "last.pt.rank1.s00000003-abcd", "best.pt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "tb").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with caplog.at_level(logging.WARNING):
        assert resolve_resume(tmp_path, None, overwrite=True) is None
    said = " ".join(r.getMessage() for r in caplog.records)
    for name in ("metrics.jsonl", "last.pt", "last.pt.rank1.s00000003-abcd", "best.pt", "tb/"):
        assert name in said and not (tmp_path / name.rstrip("/")).exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files go


# ------------------------------------------------------------------ the trainer: order of save and evaluation


SMALL = LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.1)


def _cfg() -> TrainerConfig:
    return TrainerConfig(
        combiner=CombinerConfig(name="meltr", meltr=copy.deepcopy(SMALL)),
        optim=OptimConfig(name="adam", lr=1e-2, schedule="linear"),
        meta=MetaConfig(every=2, buffer_size=3, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant")),
        epochs=3, tensorboard=False, log_every=1, best_metric="neg_mse",
    )


class _EvalCrash(RuntimeError):
    pass


def _eval_fn(fail_at: int | None = None):
    (held_out,) = regression_batches(1, 16, seed=7)
    calls = []

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        calls.append(1)
        if len(calls) == fail_at:
            raise _EvalCrash("evaluation died")
        torch.rand(3)  # an evaluation that draws from the global RNG: resume must replay it exactly
        return {"neg_mse": -float(model(held_out)["main"])}

    return evaluate


def _trainer(run_dir: Path, eval_fn) -> Trainer:
    torch.manual_seed(0)
    return Trainer(ToyRegression(dropout=0.2), _cfg(), regression_batches(3, 8), device="cpu", run_dir=run_dir, eval_fn=eval_fn)


def test_a_crash_inside_the_epoch_end_evaluation_loses_no_training_and_resumes_exactly(tmp_path) -> None:
    full = _trainer(tmp_path / "full", _eval_fn())
    full.fit()

    crashed = _trainer(tmp_path / "run", _eval_fn(fail_at=2))  # the evaluation at the end of epoch 2 dies
    with pytest.raises(_EvalCrash):
        crashed.fit()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["step"], state["epoch"], state["pending_eval"]) == (6, 2, True)  # epoch 2 is on disk

    torch.manual_seed(999)  # resume restores every RNG
    resumed = _trainer(tmp_path / "run", _eval_fn())
    resumed.resume(tmp_path / "run" / "last.pt")
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.combiner.state_dict().values(), resumed.combiner.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.best == full.best and resumed.last_metrics == full.last_metrics
    final = load_checkpoint(tmp_path / "run" / "last.pt")
    assert final["metrics"] == full.last_metrics and not final["pending_eval"]  # evaluate.py reads these

    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    markers = [r for r in records if r["kind"] == "resume"]
    assert markers == [{"kind": "resume", "step": 6, "epoch": 2, "from": str(tmp_path / "run" / "last.pt")}]
    kept = drop_replayed(records)
    expected = [(r["kind"], r["step"]) for r in read_jsonl(tmp_path / "full" / "metrics.jsonl") if r["kind"] in ("eval", "train")]
    assert [(r["kind"], r["step"]) for r in kept if r["kind"] in ("eval", "train")] == expected


def test_replayed_steps_after_a_resume_count_once_in_the_summary(tmp_path) -> None:
    run = tmp_path / "run"
    first = _trainer(run, _eval_fn())
    first.cfg.max_steps = first.total_steps = 4
    first.fit()
    (run / "at4.pt").write_bytes((run / "last.pt").read_bytes())
    first.logger = type(first.logger)(run, tensorboard=False)  # fit() closed it: the same run goes on
    first.cfg.max_steps = first.total_steps = 6
    first.fit()  # steps 4 and 5 are logged, then the job "dies"; the requeued job resumes from step 4
    second = _trainer(run, _eval_fn())
    second.resume(run / "at4.pt")
    second.fit()
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"].count(4) == 2  # logged, then replayed
    summary = summarize_run(run)
    assert summary["resumes"] == 1 and summary["replayed"] > 0 and summary["steps"] == 9
    kept = [r["step"] for r in drop_replayed(records) if r["kind"] == "train"]
    assert kept == list(range(9))


# ------------------------------------------------------------------ rows, config.yaml, launcher


def test_paper_rows_checkpoint_by_steps() -> None:
    rows = sorted((ROOT / "configs").glob("*/*.yaml"))
    rows = [p for p in rows if p.parent.name in ("univl", "violet", "allinone")]
    assert rows
    for path in rows:
        every = yaml.safe_load(path.read_text())["trainer"].get("checkpoint_every")
        assert isinstance(every, int) and every >= 1, f"{path}: trainer.checkpoint_every not set"


def test_config_yaml_gets_the_umask_mode(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        dump(_cfg(), tmp_path / "config.yaml")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o644


@pytest.mark.parametrize("ngpu", ["abc", "0", "-1", "1.5"])
def test_row_launcher_refuses_a_bad_ngpu(ngpu: str, capsys) -> None:
    assert launch(["univl", "mosi"], env={"NGPU": ngpu}) == 2
    assert f"NGPU must be a whole number of GPUs >= 1 (got '{ngpu}')" in capsys.readouterr().err
