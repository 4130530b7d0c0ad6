"""scripts/run_config.py: one parse of a run's YAML, overlays and --set overrides; errors name what set the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meltr.config import ConfigError, load
from scripts.recipes import recipe
from scripts.run_config import load_run, merge, resolve

ROOT = Path(__file__).resolve().parents[2]
MOSI = str(ROOT / "configs/univl/mosi.yaml")


def test_merge_changes_only_the_keys_the_overlay_names() -> None:
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": [1, 2], "g": None}
    overlay = {"a": {"c": {"d": 20}}, "f": [9], "g": {"h": 1}, "new": "x"}
    merged = merge(base, overlay)
    assert merged == {"a": {"b": 1, "c": {"d": 20, "e": 3}}, "f": [9], "g": {"h": 1}, "new": "x"}
    assert base == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": [1, 2], "g": None}  # neither argument is modified
    merged["f"].append(0)
    assert overlay["f"] == [9]


def test_an_overlay_equals_the_same_settings_as_overrides(tmp_path) -> None:
    """An overlay of leaves is the --set list of the same leaves, through the strict loader of meltr.config."""
    overlay = {"model": {"size": "tiny"}, "data": {"max_words": 12}, "trainer": {"epochs": 1, "optim": {"lr": 1e-4}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(overlay))
    mod, cfg = load_run(MOSI, [path], ["trainer.log_every=3"])
    expected = load(MOSI, recipe("univl").RunConfig, ["model.size=tiny", "data.max_words=12", "trainer.epochs=1",
                                                      "trainer.optim.lr=1e-4", "trainer.log_every=3"])
    assert mod is recipe("univl") and cfg == expected
    assert cfg.trainer.optim.schedule == "linear"  # merged key by key: the rest of trainer.optim stays


def test_later_layers_win_and_exponent_floats_are_floats(tmp_path) -> None:
    (tmp_path / "one.yaml").write_text("trainer: {epochs: 2, optim: {lr: 1e-3}}\n")
    (tmp_path / "two.yaml").write_text("trainer: {epochs: 3}\n")
    data = resolve(MOSI, [tmp_path / "one.yaml", tmp_path / "two.yaml"], ["trainer.epochs=4"])
    assert data["trainer"]["epochs"] == 4 and data["trainer"]["optim"]["lr"] == 1e-3
    assert resolve(MOSI, [tmp_path / "one.yaml", tmp_path / "two.yaml"])["trainer"]["epochs"] == 3


def test_errors_name_the_file_or_override_that_set_the_key(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {sizee: tiny}\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: model.sizee: unknown key; did you mean 'size'"):
        load_run(MOSI, [bad])
    with pytest.raises(ConfigError, match=rf"^{MOSI}: model.sizee \(from override 'model.sizee=null'\): unknown key"):
        load_run(MOSI, [bad], ["model.sizee=null"])  # the override came after the overlay: it set the key last
    with pytest.raises(ConfigError, match=rf"^{MOSI}: trainer.epochs \(from override 'trainer.epochs=x'\)"):
        load_run(MOSI, [], ["trainer.epochs=x"])
    with pytest.raises(ConfigError, match=rf"^{MOSI}: backbone \(from override 'backbone=bert'\): unknown value 'bert' \(known: allinone, univl, violet\)"):
        load_run(MOSI, [], ["backbone=bert"])
    (tmp_path / "dup.yaml").write_text("model: {size: tiny}\nmodel: {size: base}\n")
    with pytest.raises(ConfigError, match="duplicate key"):
        load_run(MOSI, [tmp_path / "dup.yaml"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_run(MOSI, [tmp_path / "none.yaml"])


def test_a_univl_config_of_the_previous_release_loads_with_a_warning_per_renamed_key(tmp_path) -> None:
    """UniVL's batching moved to loader., its lengths to data. (as VIOLET and All-in-one), trainer.primary became
    trainer.target_loss: an old YAML (or the run config stored in an old checkpoint) loads to the same config."""
    old = {"backbone": "univl", "model": {"size": "tiny", "max_words": 12, "max_frames": 10},
           "data": {"dataset": "youcook2", "batch_size": 4, "eval_batch_size": 3, "num_workers": 1, "tokenizer": "tok"},
           "trainer": {"primary": "decoder"}}
    new = {"backbone": "univl", "model": {"size": "tiny"}, "data": {"dataset": "youcook2", "max_words": 12, "max_frames": 10},
           "loader": {"batch_size": 4, "eval_batch_size": 3, "num_workers": 1, "tokenizer": "tok"},
           "trainer": {"target_loss": "decoder"}}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(new))
    with pytest.warns(FutureWarning) as caught:
        _, from_old = load_run(tmp_path / "old.yaml")
    renamed = {str(w.message).split("'")[1] for w in caught}
    assert renamed == {"model.max_words", "model.max_frames", "data.batch_size", "data.eval_batch_size",
                       "data.num_workers", "data.tokenizer", "trainer.primary"}
    assert from_old == load_run(tmp_path / "new.yaml")[1]
