"""Tests for meltr.log: JSONL round trip, tensor conversion, rank-0 behaviour, TensorBoard, errors."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meltr.log import METRICS_FILE, TB_SUBDIR, RankZeroFilter, RunLogger, read_jsonl, setup_logging

TRAIN = {
    "kind": "train", "step": 12, "epoch": 0, "losses": {"cls": 1.2, "rot": 0.7}, "combined": 1.5,
    "task_weights": {"cls": 0.9, "rot": 0.2}, "lr": 1e-3, "meta_lr": 1e-4, "time": 3.2,
}
META = {"kind": "meta", "step": 12, "epoch": 0, "primary": 1.1, "reg": 0.05, "hypergrad_norm": 0.3}
EVAL = {"kind": "eval", "step": 50, "epoch": 1, "metrics": {"accuracy": 0.8}}


def test_jsonl_round_trip(tmp_path):
    with RunLogger(tmp_path / "run", tensorboard=False) as run:
        for record in (TRAIN, META, EVAL):
            run.log(record)
        # Flushed per line: readable before close.
        assert read_jsonl(tmp_path / "run" / METRICS_FILE) == [TRAIN, META, EVAL]
    assert read_jsonl(tmp_path / "run" / METRICS_FILE) == [TRAIN, META, EVAL]


def test_appends_across_loggers(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as run:
        run.log(META)
    with RunLogger(tmp_path, tensorboard=False) as run:
        run.log(EVAL)
    assert read_jsonl(tmp_path / METRICS_FILE) == [META, EVAL]


def test_tensors_converted(tmp_path):
    w = torch.tensor([0.25, 0.75], requires_grad=True)
    record = {
        "kind": "train", "step": torch.tensor(3), "combined": torch.tensor(1.5, requires_grad=True) * 2,
        "losses": {"cls": torch.tensor(0.5)}, "vec": w * 2, "mat": torch.arange(4).reshape(2, 2),
    }
    with RunLogger(tmp_path, tensorboard=False) as run:
        run.log(record)
    (line,) = (tmp_path / METRICS_FILE).read_text().splitlines()
    got = json.loads(line)
    assert got == {
        "kind": "train", "step": 3, "combined": 3.0, "losses": {"cls": 0.5}, "vec": [0.5, 1.5], "mat": [[0, 1], [2, 3]],
    }
    assert isinstance(got["combined"], float) and isinstance(got["step"], int)


def test_unserialisable_value_names_key(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as run:
        with pytest.raises(TypeError, match=r"losses\.bad"):
            run.log({"kind": "train", "step": 0, "losses": {"bad": object()}})


def test_rank_one_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    with RunLogger(run_dir, rank=1, tensorboard=True) as run:
        run.log(TRAIN)
        run.progress(1, loss=0.5)
    assert not run_dir.exists()


def test_closed_logger_refuses_records(tmp_path):
    run = RunLogger(tmp_path, tensorboard=False)
    run.close()
    run.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        run.log(TRAIN)


def test_tensorboard_scalars(tmp_path):
    with RunLogger(tmp_path, tensorboard=True) as run:
        run.log(TRAIN)
        run.log(META)
        run.log(EVAL)
    tb_dir = tmp_path / TB_SUBDIR
    assert list(tb_dir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "train/losses/cls", "train/losses/rot", "train/task_weights/rot", "train/combined", "train/lr",
        "meta/hypergrad_norm", "meta/primary", "eval/metrics/accuracy",
    } <= tags
    # Identifying keys are not measurements.
    assert not {t for t in tags if t.split("/")[1] in {"step", "epoch", "kind"}}
    (event,) = acc.Scalars("train/task_weights/rot")
    assert event.step == 12 and event.value == pytest.approx(0.2, rel=1e-6)
    (event,) = acc.Scalars("eval/metrics/accuracy")
    assert event.step == 50 and event.value == pytest.approx(0.8, rel=1e-6)


def test_missing_tensorboard_warns_once_and_continues(tmp_path, monkeypatch, caplog):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with caplog.at_level(logging.WARNING, logger="meltr"):
        with RunLogger(tmp_path, tensorboard=True) as run:
            run.log(TRAIN)
            run.log(META)
    warnings = [r for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1
    assert not (tmp_path / TB_SUBDIR).exists()
    assert read_jsonl(tmp_path / METRICS_FILE) == [TRAIN, META]


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_tty(tmp_path, monkeypatch):
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    with RunLogger(None, progress_total=4, progress_desc="fit") as run:
        run.progress(2, loss=0.123456789)
    out = tty.getvalue()
    assert "fit" in out and "2/4" in out and "loss=0.1235" in out and "it/s" in out

    plain = io.StringIO()  # isatty() is False
    monkeypatch.setattr(sys, "stderr", plain)
    with RunLogger(None, progress_total=4) as run:
        run.progress(2, loss=0.5)
    assert plain.getvalue() == ""


def _record(msg: str = "hello") -> logging.LogRecord:
    return logging.LogRecord("meltr.test", logging.INFO, __file__, 1, msg, None, None)


def test_filter_drops_non_zero_rank(monkeypatch):
    filt = RankZeroFilter()
    monkeypatch.setenv("RANK", "1")
    assert filt.filter(_record()) is False
    monkeypatch.setenv("RANK", "0")
    assert filt.filter(_record()) is True
    monkeypatch.delenv("RANK")
    assert filt.filter(_record()) is True


@pytest.fixture
def clean_meltr_logger():
    log = logging.getLogger("meltr")
    handlers, level = list(log.handlers), log.level
    log.handlers[:] = []  # start empty: another test (e.g. the demo) may have called setup_logging
    yield log
    log.handlers[:] = handlers
    log.setLevel(level)


def test_setup_logging_idempotent_and_filtered(clean_meltr_logger, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # StreamHandler() binds sys.stderr when created
    before = len(clean_meltr_logger.handlers)
    setup_logging()
    setup_logging(logging.DEBUG)
    added = clean_meltr_logger.handlers[before:]
    assert len(added) == 1 and clean_meltr_logger.level == logging.DEBUG
    assert any(isinstance(f, RankZeroFilter) for f in added[0].filters)

    child = logging.getLogger("meltr.some.module")
    monkeypatch.setenv("RANK", "1")
    child.info("from rank one")
    monkeypatch.setenv("RANK", "0")
    child.info("from rank zero")
    assert "from rank zero" in stream.getvalue()
    assert "from rank one" not in stream.getvalue()


def test_read_jsonl_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text(json.dumps(TRAIN) + "\n\n" + json.dumps(META) + "\n" + '{"kind": "eval", "step": \n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:4: malformed")):
        read_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: expected a JSON object")):
        read_jsonl(path)
