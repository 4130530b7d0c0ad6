"""scripts/launch.py (the launcher of every paper and ablation row) and the row.json that scripts/train.py records.

The launcher's checks are called in process with an explicit environment; the tiny overlay is checked against the
overlay file read independently (plain ``yaml.safe_load``); the cannot-train outcome comes from a real
:class:`meltr.CombinerTrainingError` (the TE-only MELTR of Table 10 on a tiny UniVL run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import scripts.train as train_mod
from meltr.config import to_dict
from scripts.launch import BACKBONES, TABLES, LaunchError, main, prepare
from scripts.paper_results import TABLE7_COEFFICIENTS, coefficients_yaml
from scripts.run_config import load_run
from scripts.summarize import read_run

ROOT = Path(__file__).resolve().parents[2]
EXEC = re.compile(r'^exec bash "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/\.\./launch\.sh" (\S+) (\S+) "\$@"$')


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the launcher passes paths relative to the working directory, as launch.sh runs it


def _train_args(launch_args: list[str]) -> tuple[str, list[str], list[str], dict]:
    """(config, overlays, overrides, row info) of a scripts.train argument list, read back independently."""
    config, overlays, overrides, info = "", [], [], {}
    it = iter(launch_args)
    for a in it:
        if a == "--config":
            config = next(it)
        elif a == "--overlay":
            overlays.append(next(it))
        elif a == "--set":
            overrides.append(next(it))
        elif a == "--row-info":
            info = json.loads(next(it))
    return config, overlays, overrides, info


def _leaves(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in data.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_every_paper_script_is_one_launch_of_a_row_config_and_every_row_config_has_one() -> None:
    launched = set()
    for script in sorted((ROOT / "scripts" / "paper").glob("*.sh")):
        code = [ln for ln in script.read_text().splitlines() if ln and not ln.startswith("#")]
        assert len(code) == 1, f"{script.name}: one exec line, got {code}"
        kind, name = EXEC.match(code[0]).groups()
        if kind == "ablation":
            assert script.name == f"ablation_table{name}.sh" and name in TABLES
        else:
            assert script.name == f"{kind}_{name}.sh" and name in BACKBONES[kind].synthetic
            launched.add((kind, name))
    configs = {(p.parent.name, p.stem) for b in BACKBONES for p in (ROOT / "configs" / b).glob("*.yaml")}
    table = {(b, r) for b, spec in BACKBONES.items() for r in spec.synthetic}
    assert launched == configs == table


@pytest.mark.parametrize("ngpu", ["abc", "0", "-1", "1.5", "01"])
def test_a_bad_ngpu_is_refused_before_anything_else(ngpu: str, capsys) -> None:
    assert main(["univl", "nosuchrow"], env={"NGPU": ngpu}) == 2
    assert f"error: NGPU must be a whole number of GPUs >= 1 (got '{ngpu}')" in capsys.readouterr().err


def test_missing_data_dir_and_checkpoints_are_named(tmp_path) -> None:
    with pytest.raises(LaunchError, match=r"^set DATA_DIR to the folder with the official files \(or TINY=1\)$"):
        prepare(["univl", "youcook_caption"], {})
    with pytest.raises(LaunchError, match=f"^DATA_DIR not found: {re.escape(str(tmp_path / 'x'))}$"):
        prepare(["univl", "youcook_caption"], {"DATA_DIR": str(tmp_path / "x")})
    with pytest.raises(LaunchError, match=r"^set INIT_MODEL to the official univl.pretrained.bin \(or TINY=1\)$"):
        prepare(["univl", "youcook_caption"], {"DATA_DIR": str(tmp_path)})
    with pytest.raises(LaunchError, match=f"^INIT_MODEL not found: {re.escape(str(tmp_path / 'a.ckpt'))}$"):
        prepare(["allinone", "msrvtt7k_retrieval"], {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "a.ckpt")})
    (tmp_path / "pre.pt").touch()
    env = {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "pre.pt")}
    _, _, overrides, _ = _train_args(prepare(["violet", "msvd_qa"], env).train_args)  # SWIN_INIT is optional
    assert f"init_model={tmp_path / 'pre.pt'}" in overrides and not any(o.startswith("swin_init=") for o in overrides)
    with pytest.raises(LaunchError, match=f"^SWIN_INIT not found: {re.escape(str(tmp_path / 'swin.pt'))}$"):
        prepare(["violet", "msvd_qa"], {**env, "SWIN_INIT": str(tmp_path / "swin.pt")})


def test_unknown_rows_and_variables_list_the_valid_ones() -> None:
    with pytest.raises(LaunchError, match="unknown univl row 'nope'; rows: youcook_caption, youcook_retrieval"):
        prepare(["univl", "nope"], {})
    with pytest.raises(LaunchError, match="known: univl, violet, allinone"):
        prepare(["bert", "x"], {})
    with pytest.raises(LaunchError, match=r"set ROW to one of A B C D E meltr \(paper Table 7\), got 'F'"):
        prepare(["ablation", "7"], {"ROW": "F"})
    with pytest.raises(LaunchError, match="METHOD must be sum or meltr for paper Table 11, got 'fixed'"):
        prepare(["ablation", "11"], {"ROW": "all", "METHOD": "fixed"})
    with pytest.raises(LaunchError, match="TASK must be retrieval .* or caption"):
        prepare(["ablation", "10"], {"ROW": "te", "TASK": "qa"})
    with pytest.raises(LaunchError, match="FORMAT must be mmsa, univl, csd, got 'hdf'"):
        prepare(["univl", "mosi"], {"FORMAT": "hdf"})
    with pytest.raises(LaunchError, match="TINY must be 1"):
        prepare(["univl", "mosi"], {"TINY": "yes"})


def test_full_run_arguments(tmp_path) -> None:
    (tmp_path / "univl.bin").touch()
    env = {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "univl.bin"), "METHOD": "fixed",
           "COEFFICIENTS": "{joint: 2}", "MODALITY": "video", "FORMAT": "csd", "NGPU": "4"}
    launch = prepare(["univl", "mosi", "--set", "trainer.epochs=3"], env)
    config, overlays, overrides, info = _train_args(launch.train_args)
    assert launch.ngpu == 4 and config == "configs/univl/mosi.yaml" and overlays == [] and not launch.synthetic
    assert overrides == ["output_dir=runs/univl_mosi_fixed", "trainer.combiner.name=fixed",
                         "trainer.combiner.coefficients={joint: 2}", f"data.root={tmp_path}",
                         f"init_model={tmp_path / 'univl.bin'}", "data.text_source=empty", "data.mosi_format=csd",
                         "data.feature_dim=35", "trainer.epochs=3"]  # the user's --set comes last: it wins
    assert info == {"backbone": "univl", "row": "mosi", "method": "fixed", "tiny": False,
                    "args": ["--set", "trainer.epochs=3"], "coefficients": "{joint: 2}"}
    _, cfg = load_run(config, overlays, overrides)
    assert (cfg.trainer.combiner.coefficients, cfg.data.feature_dim, cfg.trainer.epochs) == ({"joint": 2.0}, 35, 3)


@pytest.mark.parametrize("backbone,row", [("univl", "msrvtt7k_retrieval"), ("violet", "tgif_frame")])
def test_tiny_mode_writes_synthetic_data_and_applies_the_tiny_overlay(backbone: str, row: str, tmp_path) -> None:
    out = tmp_path / "run"
    launch = prepare([backbone, row], {"TINY": "1", "OUTPUT_DIR": str(out), "SYNTHETIC_ARGS": "--videos 8"})
    config, overlays, overrides, info = _train_args(launch.train_args)
    assert overlays == [f"configs/tiny/{backbone}.yaml"] and info["tiny"] is True
    assert f"data.root={out}/synthetic_data" in overrides and (out / "synthetic_data").is_dir()
    _, cfg = load_run(config, overlays, overrides)
    resolved = _leaves(to_dict(cfg))
    tiny = _leaves(yaml.safe_load((ROOT / overlays[0]).read_text()))
    assert tiny and {k: resolved[k] for k in tiny} == tiny
    if backbone == "univl":  # MSRVTT: the reader gets the split sizes the writer chose
        written = json.loads((out / "synthetic_data" / "synthetic_info.json").read_text())
        assert (cfg.data.n_train_videos, cfg.data.n_test_videos) == (written["n_train_videos"], written["n_test_videos"])
        assert written["n_train_videos"] + written["n_test_videos"] == 8  # SYNTHETIC_ARGS reached the writer


def test_ablation_rows_are_their_univl_row_with_the_table_settings(tmp_path) -> None:
    (tmp_path / "u.bin").touch()
    env = {"DATA_DIR": str(tmp_path), "INIT_MODEL": str(tmp_path / "u.bin"), "METHOD": "sum", "COEFFICIENTS": "{x: 1}"}
    config, _, overrides, info = _train_args(prepare(["ablation", "7"], {**env, "ROW": "E"}).train_args)
    assert config == "configs/univl/youcook_caption.yaml"
    assert overrides[:3] == ["output_dir=runs/ablation/table7_E", "trainer.combiner.name=fixed",
                             f"trainer.combiner.coefficients={coefficients_yaml('E')}"]  # the table's, not the env's
    _, cfg = load_run(config, [], overrides)
    assert cfg.trainer.combiner.coefficients == {k: float(v) for k, v in TABLE7_COEFFICIENTS["E"].items()}
    assert {k: info[k] for k in ("table", "row", "method", "univl_row")} == {"table": "7", "row": "E", "method": "fixed",
                                                                             "univl_row": "youcook_caption"}
    config, _, overrides, info = _train_args(prepare(["ablation", "10"], {**env, "ROW": "se", "TASK": "caption"}).train_args)
    assert config == "configs/univl/youcook_caption.yaml" and overrides[0] == "output_dir=runs/ablation/fig5_se"
    assert (info["table"], info["row"]) == ("fig5", "se") and "trainer.combiner.meltr.embedding=se" in overrides
    _, _, overrides, info = _train_args(prepare(["ablation", "11"], {**env, "ROW": "base", "METHOD": "sum"}).train_args)
    assert overrides[0] == "output_dir=runs/ablation/table11_base-sum" and info["row"] == "base-sum"
    assert "model.losses=[joint,alignment,mlm,mfm,decoder]" in overrides


def test_a_fresh_ablation_run_replaces_an_earlier_one_and_a_resume_keeps_it(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "last.pt").write_bytes(b"x")
    env = {"TINY": "1", "OUTPUT_DIR": str(out), "ROW": "0.1", "SYNTHETIC_ARGS": "--videos 8"}
    args = prepare(["ablation", "9", "--resume", "auto"], env).train_args
    assert "--overwrite" not in args and (out / "metrics.jsonl").is_file()
    args = prepare(["ablation", "9"], env).train_args
    assert "--overwrite" in args and not (out / "metrics.jsonl").exists()
    (moved,) = out.glob("metrics.*.jsonl")
    assert moved.read_text() == "{}\n"
    assert "--overwrite" not in _train_args(args)[3]["args"]  # row.json records the row's arguments, not ours


def test_row_json_says_started_while_training_then_finished(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    seen = []

    def fake_train(mod, cfg, run_dir, resume):
        seen.append(json.loads((run_dir / "row.json").read_text())["status"])
        return {"step": 0, "metrics": {}, "best": None}

    monkeypatch.setattr(train_mod, "_train", fake_train)
    info = {"table": "9", "row": "0.1", "method": "meltr"}
    assert train_mod.main(["--config", "configs/univl/mosi.yaml", "--set", f"output_dir={out}",
                           "--row-info", json.dumps(info)]) == 0
    row = json.loads((out / "row.json").read_text())
    assert seen == ["started"] and {k: row[k] for k in info} == info and (row["status"], row["exit_code"]) == ("finished", 0)
    assert f"RESULT table 9 row 0.1: finished in {out}" in capsys.readouterr().out


def test_a_failed_run_is_recorded_with_its_error(tmp_path) -> None:
    out = tmp_path / "run"
    empty = tmp_path / "no_data"
    empty.mkdir()
    args = ["--config", "configs/univl/youcook_caption.yaml", "--overlay", "configs/tiny/univl.yaml",
            "--set", f"output_dir={out}", "--set", f"data.root={empty}"]
    with pytest.raises(Exception) as raised:
        train_mod.main(args)
    row = json.loads((out / "row.json").read_text())
    assert (row["status"], row["exit_code"]) == ("failed", 1)
    assert row["message"] == f"{type(raised.value).__name__}: {raised.value}"


def test_a_combiner_that_cannot_train_is_a_result(tmp_path, capsys) -> None:
    """Table 10's TE-only MELTR raises a real CombinerTrainingError at its first step: status cannot_train, exit 0."""
    out = tmp_path / "te"
    launch = prepare(["ablation", "10"], {"TINY": "1", "ROW": "te", "OUTPUT_DIR": str(out), "SYNTHETIC_ARGS": "--videos 8"})
    assert train_mod.main(launch.train_args) == 0
    row = json.loads((out / "row.json").read_text())
    assert (row["table"], row["row"], row["status"]) == ("10", "te", "cannot_train")
    assert row["message"].startswith("CombinerTrainingError: ") and "does not depend on the losses" in row["message"]
    assert f"RESULT table 10 row te: cannot train, as the paper reports. {row['message']}" in capsys.readouterr().out
    res = read_run(out)
    assert (res.table, res.row, res.status, res.message) == ("10", "te", "cannot train", row["message"])


def test_two_runs_of_one_config_give_the_same_numbers(tmp_path) -> None:
    """The fresh heads, the combiner and dropout start from trainer.seed: a second run of the same tiny row repeats the
    first bit for bit (it did not before scripts.train seeded them); another seed gives other numbers."""
    def run(name: str, *extra: str) -> tuple[list[dict], dict]:
        out = tmp_path / name
        launch = prepare(["violet", "msvd_qa"], {"TINY": "1", "OUTPUT_DIR": str(out)})
        assert train_mod.main([*launch.train_args, *extra]) == 0
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: r[k] for k in ("losses", "task_weights") if k in r} for r in records if r["kind"] == "train"], \
            torch.load(out / "last.pt", weights_only=True)["model"]

    # One intra-op thread: with several, torch's CPU kernels that accumulate by index in parallel (the Swin
    # relative-position table's gradient) round differently from run to run (seen: 1e-10 in the weights, then
    # 1e-8 in the task weights two steps later), which is torch's, not the seeding's.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (losses_a, weights_a), (losses_b, weights_b) = run("a"), run("b")
        losses_c, _ = run("c", "--set", "trainer.seed=1")
    finally:
        torch.set_num_threads(threads)
    assert losses_a == losses_b and weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert losses_c[0] != losses_a[0]
