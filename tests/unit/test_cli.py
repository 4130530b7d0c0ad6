"""The ``meltr`` command line (meltr/cli.py), in process, on a run written by a tiny meltr.Trainer run.

Outputs are checked against the run's own records (read back independently with json), never
against numbers typed in here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import fmean

import pytest
import torch

import meltr
from meltr import LossTransformerConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
from meltr.cli import COMMANDS, Command, main
from meltr.plot import FIG3, FIG4
from meltr.summary import DEFAULT_WINDOW
from tests.toy_models import ToyRegression, regression_batches

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs of MELTR on the toy regression (two steps each), with an eval per epoch selecting best by neg_mse."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("cli") / "run"
    batches = regression_batches(2, 8)  # 2 steps per epoch: 6 train records, one more than DEFAULT_WINDOW
    (held_out,) = regression_batches(1, 32, seed=1)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        mse = float(model(held_out)["main"])
        return {"neg_mse": -mse, "mse": mse}

    small = LossTransformerConfig(scale_hidden_dim=8, hidden_dim=16, ffn_dim=16, num_heads=4, dropout=0.0)
    cfg = TrainerConfig(epochs=3, log_every=1, tensorboard=False, best_metric="neg_mse", best_mode="max",
                        optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"),
                        meta=MetaConfig(every=1, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant")))
    cfg.combiner.meltr = small
    Trainer(ToyRegression(), cfg, batches, eval_fn=evaluate, run_dir=run, device="cpu").fit()
    return run


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_summary_json_matches_the_records(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(run_dir), "--json"]) == 0
    (s,) = json.loads(capsys.readouterr().out)
    train, evals, epochs = _records(run_dir, "train"), _records(run_dir, "eval"), _records(run_dir, "epoch")
    assert len(evals) == 3 and len(epochs) == 3 and len(train) > DEFAULT_WINDOW  # the run is what the fixture asked for

    assert s["steps"] == train[-1]["step"] + 1 == _records(run_dir, "summary")[-1]["step"]
    assert s["epochs"] == 3 and s["finished"]
    best_value = max(e["metrics"]["neg_mse"] for e in evals)
    assert s["best"]["metric"] == "neg_mse" and s["best"]["value"] == best_value
    assert s["best"]["metrics"] == next(e["metrics"] for e in evals if e["metrics"]["neg_mse"] == best_value)
    assert s["last_eval"]["metrics"] == evals[-1]["metrics"]
    assert s["train_time_s"] == pytest.approx(sum(e["epoch_time_s"] for e in epochs), rel=1e-12)
    last = train[-DEFAULT_WINDOW:]
    assert s["task_weights"] == pytest.approx({n: fmean(r["task_weights"][n] for r in last) for n in ToyRegression.loss_names})
    assert set(s["peak_memory_mib"]) == {"peak_rss_mib"}  # CPU run


def test_summary_markdown_of_several_runs(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(run_dir), str(run_dir), "--window", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"| | {run_dir} | {run_dir} |"
    weights = _records(run_dir, "train")[-2:]
    main_weight = fmean(r["task_weights"]["main"] for r in weights)
    assert f"| task weight main | {main_weight:.4g} | {main_weight:.4g} |" in out


def test_plot_writes_pngs_and_prints_their_paths(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "figs" / f"{name}.png") for name in (FIG3, FIG4)]
    for path in map(Path, printed):
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)


@pytest.mark.parametrize("command", ["plot", "summary"])
def test_missing_run_dir_or_metrics_file_exits_2_naming_the_path(command: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "no_metrics").mkdir()
    for run in (tmp_path / "absent", tmp_path / "no_metrics"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err
        assert str(run / "metrics.jsonl") in err and err.startswith(f"meltr {command}: error:")
        assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "absent" / "plots").exists()


def test_summary_prints_nothing_when_a_later_run_is_missing(run_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(run_dir), str(tmp_path / "gone")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(tmp_path / "gone") in captured.err


def test_plot_without_matplotlib_says_what_to_install(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # makes the import fail
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "figs")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'meltr[plot]'" in err and "Traceback" not in err
    assert not (tmp_path / "figs").exists()


def test_version_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"meltr {meltr.__version__}"
    assert main([]) == 2  # a subcommand is required
    assert main(["summary", "x", "--window", "0"]) == 2
    assert main(["frobnicate"]) == 2
    capsys.readouterr()
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in COMMANDS)


def test_a_new_subcommand_is_one_table_entry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("words", nargs="+")

    def run(args: argparse.Namespace) -> int:
        print(" ".join(reversed(args.words)))
        return 0

    monkeypatch.setitem(COMMANDS, "reverse", Command("print the words backwards", add_arguments, run))
    assert main(["reverse", "a", "b"]) == 0
    assert capsys.readouterr().out == "b a\n"


def test_export_writes_the_model_weights_loadable_into_the_bare_model(run_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_model

    from meltr.checkpoint import load_checkpoint

    out = tmp_path / "model.safetensors"
    assert main(["export", str(run_dir / "last.pt"), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    bare = ToyRegression()
    load_model(bare, out)  # strict: exactly the model's keys
    for k, v in load_checkpoint(run_dir / "last.pt")["model"].items():
        assert torch.equal(bare.state_dict()[k], v)
    assert main(["export", str(tmp_path / "missing.pt"), str(out)]) == 2
    assert "missing.pt" in capsys.readouterr().err
