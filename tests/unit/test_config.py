"""Strict config loading: round trips, and errors that name the file and the dotted key."""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import pytest
import yaml

from meltr.config import (
    ConfigError,
    add_override_args,
    apply_overrides,
    dump,
    from_dict,
    load,
    to_dict,
)


# Annotations are strings here (`from __future__ import annotations`), as in the real config modules.
@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class SchedulerConfig:
    warmup_steps: int
    kind: Literal["cosine", "linear"] = "cosine"
    cycles: Literal[1, 2] = 1


@dataclass
class LayerConfig:
    dim: int
    dropout: float = 0.0


@dataclass
class TrainerConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 1
    amp: bool = False
    grad_clip: float | None = None
    milestones: tuple[int, ...] = ()


@dataclass
class RunConfig:
    name: str
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    layers: list[LayerConfig] = field(default_factory=list)
    loss_weights: dict[str, float] = field(default_factory=dict)
    # typing.Optional on purpose: the loader takes both union spellings (grad_clip above is the `X | None` one).
    scheduler: Optional[SchedulerConfig] = None  # noqa: UP045
    extra: Any = None


@dataclass
class BadConfig:
    ids: set[int] = field(default_factory=set)


FULL_YAML = """\
# python -m scripts.train --config this.yaml
name: tiny-run
trainer:
  optim:
    name: sgd
    lr: 1e-4
    betas: [0.8, 0.9]
    weight_decay: 0
  epochs: 3
  amp: true
  grad_clip: 1.5
  milestones: [2, 4]
layers:
  - {dim: 8}
  - {dim: 16, dropout: 0.1}
loss_weights: {mlm: 1, nce: 0.5}
scheduler: {warmup_steps: 10, kind: linear}
extra: {free: [1, two]}
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> tuple[str, str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, RunConfig, overrides)
    return str(info.value), str(path)


def _only_builtins(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and _only_builtins(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_only_builtins(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


# --------------------------------------------------------------------------------------------------
# Round trips
def test_load_reads_every_field_type(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, FULL_YAML), RunConfig)
    assert cfg.trainer.optim == OptimConfig(name="sgd", lr=1e-4, betas=(0.8, 0.9), weight_decay=0.0)
    assert type(cfg.trainer.optim.weight_decay) is float  # int 0 given for a float field
    assert type(cfg.loss_weights["mlm"]) is float
    assert cfg.trainer.milestones == (2, 4) and cfg.trainer.amp is True and cfg.trainer.grad_clip == 1.5
    assert cfg.layers == [LayerConfig(dim=8), LayerConfig(dim=16, dropout=0.1)]
    assert cfg.scheduler == SchedulerConfig(warmup_steps=10, kind="linear")
    assert cfg.extra == {"free": [1, "two"]}


def test_dump_load_and_dict_round_trips(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, FULL_YAML), RunConfig)
    out = tmp_path / "run" / "nested" / "config.yaml"  # parents do not exist yet
    dump(cfg, out)
    assert load(out, RunConfig) == cfg
    assert from_dict(to_dict(cfg), RunConfig) == cfg

    plain = to_dict(cfg)
    assert _only_builtins(plain)  # what torch.load(weights_only=True) and yaml.safe_dump accept
    assert plain["trainer"]["optim"]["betas"] == [0.8, 0.9]  # tuples become lists
    # The file is plain YAML that a stock loader reads back to the same dict, in field order.
    assert yaml.safe_load(out.read_text()) == plain
    order = ["name", "trainer", "layers", "loss_weights", "scheduler", "extra"]
    assert list(yaml.safe_load(out.read_text())) == order
    assert list(tmp_path.joinpath("run", "nested").iterdir()) == [out]  # no temp file left behind


def test_to_dict_is_a_copy(tmp_path: Path) -> None:
    cfg = RunConfig(name="a", extra={"k": [1]})
    plain = to_dict(cfg)
    plain["extra"]["k"].append(2)
    assert cfg.extra == {"k": [1]}


def test_defaults_and_empty_file(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, "name: x\n"), RunConfig)
    assert cfg == RunConfig(name="x")
    empty = _write(tmp_path, "", name="empty.yaml")
    with pytest.raises(ConfigError, match="missing required field"):
        load(empty, RunConfig)


def test_string_that_looks_like_a_float_survives_dump(tmp_path: Path) -> None:
    cfg = RunConfig(name="1e5", loss_weights={"3E5": 1.0})
    dump(cfg, tmp_path / "c.yaml")
    assert load(tmp_path / "c.yaml", RunConfig) == cfg


@pytest.mark.parametrize("text, value", [("1e-4", 1e-4), ("3E5", 3e5), ("-2.5e-3", -2.5e-3), (".5e-3", 5e-4)])
def test_exponent_floats_in_yaml_files(tmp_path: Path, text: str, value: float) -> None:
    cfg = load(_write(tmp_path, f"name: x\ntrainer: {{optim: {{eps: {text}}}}}\n"), RunConfig)
    assert type(cfg.trainer.optim.eps) is float and cfg.trainer.optim.eps == value


def test_dataclass_instance_is_accepted_as_is() -> None:
    trainer = TrainerConfig(epochs=7)
    cfg = from_dict({"name": "x", "trainer": trainer}, RunConfig)
    assert cfg.trainer is trainer


def test_any_field_is_copied_not_aliased() -> None:
    data = {"name": "x", "extra": {"k": [1]}}
    cfg = from_dict(data, RunConfig)
    data["extra"]["k"].append(2)
    assert cfg.extra == {"k": [1]}


# --------------------------------------------------------------------------------------------------
# Errors name the file and the dotted key
def test_unknown_nested_key(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer:\n  optim:\n    lrr: 0.1\n")
    assert msg.startswith(f"{path}: trainer.optim.lrr: unknown key")
    assert "allowed keys: betas, eps, lr, name, weight_decay" in msg
    assert "did you mean 'lr'" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainr: {}\n")
    assert msg.startswith(f"{path}: trainr: unknown key") and "allowed keys: extra, layers," in msg


@pytest.mark.parametrize(
    "text, key",
    [
        ("trainer: {}\n", "name"),
        ("name: x\nlayers: [{dim: 4}, {dropout: 0.1}]\n", "layers[1].dim"),
        ("name: x\nscheduler: {kind: linear}\n", "scheduler.warmup_steps"),
    ],
)
def test_missing_required_field(tmp_path: Path, text: str, key: str) -> None:
    msg, path = _error(tmp_path, text)
    assert msg.startswith(f"{path}: {key}: missing required field")


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("trainer: {epochs: ten}", "trainer.epochs", "expected int, got 'ten' (str)"),
        ("trainer: {epochs: true}", "trainer.epochs", "expected int, got True (bool)"),  # bool is not an int
        ("trainer: {epochs: 2.0}", "trainer.epochs", "expected int, got 2.0 (float)"),
        ("trainer: {optim: {lr: false}}", "trainer.optim.lr", "expected float, got False (bool)"),
        ("trainer: {optim: {lr: '0.1'}}", "trainer.optim.lr", "expected float, got '0.1' (str)"),
        ("trainer: {amp: 1}", "trainer.amp", "expected bool, got 1 (int)"),
        ("trainer: {amp: 'true'}", "trainer.amp", "expected bool, got 'true' (str)"),
        ("trainer: {grad_clip: big}", "trainer.grad_clip", "expected float | None, got 'big' (str)"),
        ("trainer: {milestones: [1, x]}", "trainer.milestones[1]", "expected int, got 'x' (str)"),
        ("trainer: {optim: {betas: [0.9]}}", "trainer.optim.betas", "expected tuple[float, float] (2 items)"),
        ("trainer: 3", "trainer", "expected TrainerConfig, got 3 (int)"),
        ("layers: {dim: 3}", "layers", "expected list[LayerConfig]"),
        ("layers: [{dim: 3}, {dim: 1.5}]", "layers[1].dim", "expected int, got 1.5 (float)"),
        ("loss_weights: {mlm: high}", "loss_weights.mlm", "expected float, got 'high' (str)"),
        ("loss_weights: [1, 2]", "loss_weights", "expected dict[str, float]"),
        ("scheduler: 5", "scheduler", "expected SchedulerConfig | None, got 5 (int)"),
        # True == 1 in Python, but a bool is not one of the int choices.
        ("scheduler: {warmup_steps: 1, cycles: true}", "scheduler.cycles", "expected one of 1, 2; got True"),
    ],
)
def test_wrong_type(tmp_path: Path, text: str, key: str, expected: str) -> None:
    msg, path = _error(tmp_path, f"name: x\n{text}\n")
    assert msg.startswith(f"{path}: {key}: ")
    assert expected in msg


def test_name_must_be_str(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: 123\n")
    assert msg == f"{path}: name: expected str, got 123 (int)"


def test_literal_error_lists_allowed_values(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer: {optim: {name: adam}}\n")
    assert msg == f"{path}: trainer.optim.name: expected one of 'adamw', 'sgd'; got 'adam' (str)"


def test_nested_error_inside_optional_keeps_its_key(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\nscheduler: {warmup_steps: 1, kind: step}\n")
    assert msg.startswith(f"{path}: scheduler.kind: expected one of 'cosine', 'linear'")


def test_validate_hook_error_carries_path(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer: {optim: {lr: -0.5}}\n")
    assert msg == f"{path}: trainer.optim: lr must be positive, got -0.5"


def test_from_dict_default_source_and_int_to_float() -> None:
    cfg = from_dict({"name": "x", "trainer": {"optim": {"lr": 2}}}, RunConfig)
    assert type(cfg.trainer.optim.lr) is float and cfg.trainer.optim.lr == 2.0
    with pytest.raises(ConfigError, match=r"^<dict>: trainer\.epochs: expected int"):
        from_dict({"name": "x", "trainer": {"epochs": True}}, RunConfig)
    with pytest.raises(ConfigError, match=r"^my\.yaml: expected RunConfig, got \[1\]"):
        from_dict([1], RunConfig, source="my.yaml")  # type: ignore[arg-type]


def test_unsupported_annotation_is_a_type_error() -> None:
    # Raised even though the field is not given: the annotation itself is the bug.
    with pytest.raises(TypeError, match=r"BadConfig\.ids: unsupported annotation set\[int\]"):
        from_dict({}, BadConfig)
    with pytest.raises(TypeError, match="needs a dataclass type"):
        from_dict({}, dict)


def test_to_dict_rejects_values_yaml_cannot_hold() -> None:
    with pytest.raises(TypeError, match=r"extra\.k holds a value of type object"):
        to_dict(RunConfig(name="x", extra={"k": object()}))
    with pytest.raises(TypeError, match="dataclass instance"):
        to_dict({"name": "x"})


# --------------------------------------------------------------------------------------------------
# File-level errors
def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "cfg.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load(path, RunConfig)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_path_and_line(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer:\n  epochs: [1, 2\n  amp: true\n")
    assert msg.startswith(f"{path}: invalid YAML at line 4")


def test_duplicate_key_is_rejected_with_line(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer:\n  epochs: 1\n  epochs: 2\n")
    assert msg.startswith(f"{path}: invalid YAML at line 4") and "duplicate key 'epochs'" in msg


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "- name\n- x\n")
    assert msg == f"{path}: top level must be a mapping of keys to values, got a list"


# --------------------------------------------------------------------------------------------------
# Overrides
def test_overrides_change_nested_values(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL_YAML)
    cfg = load(
        path,
        RunConfig,
        [
            "trainer.optim.lr=1e-4",
            "trainer.optim.eps=3E5",
            "trainer.amp=false",
            "trainer.epochs=9",
            "trainer.milestones=[5]",
            "layers=[{dim: 2}]",
            "name='123'",  # quoted: stays a string
            "trainer.epochs=10",  # later overrides win
        ],
    )
    optim = cfg.trainer.optim
    assert type(optim.lr) is float and optim.lr == 1e-4 and optim.eps == 3e5
    assert cfg.trainer.amp is False and cfg.trainer.epochs == 10 and cfg.trainer.milestones == (5,)
    assert cfg.layers == [LayerConfig(dim=2)] and cfg.name == "123"
    assert optim.betas == (0.8, 0.9)  # untouched siblings keep their file values


def test_overrides_create_intermediate_mappings(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nscheduler: null\n")
    cfg = load(path, RunConfig, ["scheduler.warmup_steps=5", "trainer.optim.lr=2.5e-3"])
    assert cfg.scheduler == SchedulerConfig(warmup_steps=5)
    assert cfg.trainer == TrainerConfig(optim=OptimConfig(lr=2.5e-3))
    # The validate() hook still runs on overridden values, and the error quotes the override.
    with pytest.raises(ConfigError) as info:
        load(path, RunConfig, ["trainer.optim.lr=-2.5e-3"])
    assert str(info.value) == (
        f"{path}: trainer.optim (from override 'trainer.optim.lr=-2.5e-3'): lr must be positive, got -0.0025"
    )


def test_apply_overrides_does_not_mutate_input() -> None:
    data = {"trainer": {"epochs": 1}}
    out = apply_overrides(data, ["trainer.epochs=2", "trainer.optim.lr=1e-4"], "cfg.yaml")
    assert data == {"trainer": {"epochs": 1}}
    assert out == {"trainer": {"epochs": 2, "optim": {"lr": 1e-4}}}


def test_override_of_unknown_key(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\n", ("trainer.optim.lrr=0.1",))
    assert msg.startswith(f"{path}: trainer.optim.lrr (from override 'trainer.optim.lrr=0.1'): unknown key")
    msg, path = _error(tmp_path, "name: x\n", ("trainerr.epochs=2",))
    assert msg.startswith(f"{path}: trainerr (from override 'trainerr.epochs=2'): unknown key")


def test_override_wrong_type_is_blamed(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\n", ("trainer.epochs=1e-4",))
    blamed = "trainer.epochs (from override 'trainer.epochs=1e-4')"
    assert msg == f"{path}: {blamed}: expected int, got 0.0001 (float)"


def test_file_errors_are_not_blamed_on_unrelated_overrides(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer: {epochs: true}\n", ("trainer.amp=true",))
    assert msg.startswith(f"{path}: trainer.epochs: expected int") and "override" not in msg


@pytest.mark.parametrize("override", ["trainer.epochs", "=3", "trainer..epochs=1", "trainer.=1", " =1"])
def test_malformed_override(tmp_path: Path, override: str) -> None:
    msg, path = _error(tmp_path, "name: x\n", (override,))
    assert msg.startswith(f"{path}: malformed override {override!r}")


def test_override_into_a_scalar(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\ntrainer: {epochs: 1}\n", ("trainer.epochs.x=1",))
    assert msg.startswith(f"{path}: trainer.epochs: override 'trainer.epochs.x=1' descends into a int")


def test_override_with_invalid_yaml_value(tmp_path: Path) -> None:
    msg, path = _error(tmp_path, "name: x\n", ("layers=[1, 2",))
    assert msg.startswith(f"{path}: override 'layers=[1, 2': value is not valid YAML")


def test_add_override_args() -> None:
    parser = argparse.ArgumentParser()
    add_override_args(parser)
    args = parser.parse_args(["--set", "trainer.epochs=2", "--set", "name=x"])
    assert args.overrides == ["trainer.epochs=2", "name=x"]
    assert parser.parse_args([]).overrides == []  # the default list is not shared between parses


# --------------------------------------------------------------------------------------------------
# Renamed keys (RENAMED tables)
@dataclass
class LoaderSection:
    batch_size: int = 8
    workers: int = 0


@dataclass
class DataSection:
    path: str = "x"
    max_words: int = 32


@dataclass
class ModelSection:
    RENAMED: ClassVar[dict[str, str]] = {"primary": "target_loss"}

    target_loss: str = "a"
    width: int = 4


@dataclass
class RenamingRun:
    # A run config moving keys between its sections, as a recipe declares its own renames.
    RENAMED: ClassVar[dict[str, str]] = {"data.batch_size": "loader.batch_size", "model.max_words": "data.max_words"}

    data: DataSection = field(default_factory=DataSection)
    loader: LoaderSection = field(default_factory=LoaderSection)
    model: ModelSection = field(default_factory=ModelSection)


def test_renamed_keys_load_in_their_new_place_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        data: {path: p, batch_size: 4}
        model: {primary: b, max_words: 12}
        """)
    with pytest.warns(FutureWarning) as caught:
        cfg = load(path, RenamingRun)
    assert cfg == RenamingRun(DataSection("p", 12), LoaderSection(batch_size=4), ModelSection(target_loss="b"))
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"{path}: 'data.batch_size' is renamed 'loader.batch_size' (the old name is accepted until the next release)",
        f"{path}: 'model.max_words' is renamed 'data.max_words' (the old name is accepted until the next release)",
        f"{path}: 'model.primary' is renamed 'model.target_loss' (the old name is accepted until the next release)",
    ]
    # The new names load silently, and the result is written with them.
    assert from_dict(to_dict(cfg), RenamingRun) == cfg
    assert "primary" not in to_dict(cfg)["model"] and "batch_size" not in to_dict(cfg)["data"]


def test_renamed_keys_in_overrides_and_dicts_and_the_input_is_not_changed(tmp_path: Path) -> None:
    path = _write(tmp_path, "loader: {workers: 2}\n")
    with pytest.warns(FutureWarning, match="'data.batch_size' is renamed"):
        assert load(path, RenamingRun, ["data.batch_size=16"]).loader == LoaderSection(16, 2)
    stored = {"model": {"primary": "c"}}  # e.g. a checkpoint's stored run config, written before the rename
    with pytest.warns(FutureWarning, match="<dict>: 'model.primary'"):
        assert from_dict(stored, RenamingRun).model.target_loss == "c"
    assert stored == {"model": {"primary": "c"}}


def test_an_old_key_beside_its_new_name_is_refused(tmp_path: Path) -> None:
    message, path = _error_for(tmp_path, "model: {primary: a, target_loss: b}\n", RenamingRun)
    assert message == f"{path}: model.primary: both 'primary' (its old name) and 'target_loss' are set: keep 'target_loss' only"
    message, path = _error_for(tmp_path, "data: {batch_size: 2}\nloader: {batch_size: 3}\n", RenamingRun)
    assert "data.batch_size: both 'data.batch_size' (its old name) and 'loader.batch_size' are set" in message


def test_a_renames_table_must_point_at_a_field() -> None:
    @dataclass
    class Broken:
        RENAMED: ClassVar[dict[str, str]] = {"old": "nowhere.new"}
        x: int = 0

    with pytest.raises(TypeError, match=r"Broken.RENAMED: 'old' -> 'nowhere.new', but .*Broken has no field 'nowhere'"):
        from_dict({}, Broken)


def test_the_trainer_reads_its_old_primary_key(tmp_path: Path) -> None:
    from meltr import TrainerConfig as MeltrTrainerConfig

    path = _write(tmp_path, "primary: main\nepochs: 2\n")
    with pytest.warns(FutureWarning, match="'primary' is renamed 'target_loss'"):
        cfg = load(path, MeltrTrainerConfig)
    assert (cfg.target_loss, cfg.epochs) == ("main", 2)
    assert "primary" not in to_dict(cfg) and to_dict(cfg)["target_loss"] == "main"


def _error_for(tmp_path: Path, text: str, cls: type) -> tuple[str, str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, cls)
    return str(info.value), str(path)
