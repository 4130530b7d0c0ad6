"""Run logging: a rank-0 log filter, per-run JSONL metrics, optional TensorBoard and a tqdm bar.

Only rank 0 writes anything, so a multi-process run leaves exactly one ``metrics.jsonl`` (and one
TensorBoard event file) per run directory. ``tqdm`` and ``tensorboard`` are optional extras
(``pip install meltr[log]``): they are imported lazily, and a missing one degrades to a warning.

The JSONL file is the source of truth (``scripts/plot_meltr.py`` reads it); TensorBoard is a view of
the same records. A record is a flat-ish dict such as::

    {"kind": "train", "step": 12, "epoch": 0, "losses": {"cls": 1.2, "rot": 0.7},
     "combined": 1.5, "task_weights": {"cls": 0.9, "rot": 0.2}, "lr": 1e-3, "time": 3.2}

A resumed run appends to the same file after a ``{"kind": "resume", "step": S, "from": path}`` marker;
the steps the earlier attempt logged after its checkpoint are replayed, and :func:`drop_replayed` keeps
only the records of the attempt that continued.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

__all__ = [
    "RankZeroFilter",
    "setup_logging",
    "RunLogger",
    "read_jsonl",
    "drop_replayed",
    "reset_peak_memory",
    "peak_memory",
    "METRICS_FILE",
    "TB_SUBDIR",
]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
"""Name of the per-run metrics file inside ``run_dir``."""

TB_SUBDIR = "tb"
"""Subdirectory of ``run_dir`` that holds TensorBoard event files."""

# Keys that identify a record rather than measure something; never turned into TensorBoard scalars.
_ID_KEYS = frozenset({"kind", "step", "epoch"})


def _process_rank() -> int:
    """The global rank of this process: the process group's if initialised, else ``$RANK``, else 0."""
    from meltr.distributed import is_initialized, rank  # lazy: distributed.py owns torch.distributed

    if is_initialized():
        return rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        # A logging filter must not raise (it would break every log call); a garbled RANK is
        # treated as a single-process run.
        return 0


class RankZeroFilter(logging.Filter):
    """Passes log records only on the rank-0 process.

    The rank is looked up per record rather than at construction, because handlers are usually
    installed before ``torch.distributed.init_process_group`` runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Returns True (keep the record) only on rank 0."""
        return _process_rank() == 0


# Marks the handler that setup_logging installed, so a second call can find it instead of adding another.
_HANDLER_ATTR = "_meltr_rank_zero_handler"


def setup_logging(level: int = logging.INFO) -> None:
    """Installs a rank-0-filtered stderr handler on the ``meltr`` logger.

    Idempotent: calling it again only updates the level and never adds a second handler.

    Args:
        level: Level for the ``meltr`` logger and its handler (e.g. ``logging.DEBUG``).
    """
    root = logging.getLogger("meltr")
    root.setLevel(level)
    for handler in root.handlers:
        if getattr(handler, _HANDLER_ATTR, False):
            handler.setLevel(level)
            return
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # On the handler, not the logger: logger filters do not see records from child loggers
    # such as ``meltr.trainer``, handler filters do.
    handler.addFilter(RankZeroFilter())
    setattr(handler, _HANDLER_ATTR, True)
    root.addHandler(handler)


def _jsonable(value: Any, key: str = "") -> Any:
    """Converts ``value`` into plain JSON types.

    Tensors and numpy values (anything with ``tolist``) become Python numbers (0-dim) or nested
    lists. ``key`` is the dotted path used in the error message for unconvertible values.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return value.item() if value.dim() == 0 else value.tolist()
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy arrays and numpy scalars, without importing numpy
        return _jsonable(value.tolist(), key)
    raise TypeError(f"metrics record value {key!r} of type {type(value).__name__} is not JSON-serialisable")


def _scalar_leaves(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """Yields ``(tag, value)`` for every numeric leaf, tagged ``<kind>/<key>[/<subkey>...]``."""
    kind = str(record.get("kind", "misc"))

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(f"{prefix}/{k}", v)
        # bool is an int subclass but a flag, not a measurement; lists (tensor values) are skipped.
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield prefix, float(value)

    for key, value in record.items():
        if key not in _ID_KEYS:
            yield from walk(f"{kind}/{key}", value)


def _short(value: Any) -> Any:
    """Formats a progress-bar postfix value compactly (4 significant digits for floats)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


class RunLogger:
    """Writes one run's metrics to ``run_dir/metrics.jsonl`` and, optionally, TensorBoard and a tqdm bar.

    On ranks other than 0, and with ``run_dir=None`` for the file outputs, every method is a no-op,
    so the trainer can call it unconditionally.

    Args:
        run_dir: Directory of the run (created if missing), or None to write no files.
        rank: Global rank of this process; only rank 0 writes.
        tensorboard: Also write each record's numeric leaves as TensorBoard scalars under
            ``run_dir/tb``. If ``torch.utils.tensorboard`` cannot be imported, one warning is logged
            and the run continues without it.
        progress_total: Total number of steps for the progress bar (None: unknown).
        progress_desc: Label of the progress bar.
    """

    def __init__(
        self,
        run_dir: str | Path | None,
        rank: int = 0,
        tensorboard: bool = True,
        progress_total: int | None = None,
        progress_desc: str = "train",
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rank = rank
        self.progress_total = progress_total
        self.progress_desc = progress_desc
        self._closed = False
        self._file: Any = None
        self._writer: Any = None
        self._bar: Any = None
        self._bar_tried = False  # the bar is created at most once, on the first progress() call
        if rank != 0 or self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Append, so a resumed run continues the same file instead of erasing its history.
        self._file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                logger.warning("TensorBoard logging disabled: cannot import torch.utils.tensorboard (%s)", err)
            else:
                self._writer = SummaryWriter(log_dir=str(self.run_dir / TB_SUBDIR))

    @property
    def metrics_path(self) -> Path | None:
        """Path of the JSONL file, or None when this logger writes no files."""
        return self.run_dir / METRICS_FILE if self.run_dir is not None else None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("RunLogger is closed")

    def log(self, record: dict[str, Any]) -> None:
        """Appends ``record`` as one JSON line (flushed) and writes its scalars to TensorBoard.

        Args:
            record: Dict with ``kind`` and ``step`` keys plus measurements; values may be numbers,
                strings, nested dicts/lists, or tensors (0-dim tensors become numbers, larger ones lists).

        Raises:
            TypeError: A value cannot be converted to JSON (the message names its key).
            RuntimeError: The logger has been closed.
        """
        self._check_open()
        if self._file is None:
            return
        clean = _jsonable(record)
        self._file.write(json.dumps(clean) + "\n")
        # Flush per line: a crashed or killed run still leaves every record it logged.
        self._file.flush()
        if self._writer is not None:
            step = clean.get("step")
            for tag, value in _scalar_leaves(clean):
                self._writer.add_scalar(tag, value, global_step=step)

    def progress(self, n: int = 1, **postfix: Any) -> None:
        """Advances the progress bar by ``n`` steps and shows ``postfix`` (e.g. ``loss=0.1234``).

        The bar exists only on rank 0 and only when stderr is a terminal, so CI logs and
        redirected output stay free of carriage-return noise.
        """
        self._check_open()
        if not self._bar_tried:
            self._bar_tried = True
            if self.rank == 0 and sys.stderr.isatty():
                try:
                    from tqdm import tqdm
                except ImportError:
                    logger.warning("progress bar disabled: tqdm is not installed")
                else:
                    self._bar = tqdm(
                        total=self.progress_total, desc=self.progress_desc, file=sys.stderr, dynamic_ncols=True
                    )
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        """Closes the bar, the TensorBoard writer and the JSONL file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def reset_peak_memory(device: torch.device) -> None:
    """Starts a new peak-memory window on CUDA; a no-op elsewhere (a process's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak memory for the run log (paper Table 8 puts it beside the epoch time), in MiB.

    Args:
        device: The device the model trains on.

    Returns:
        On CUDA ``{"peak_cuda_allocated_mib": ...}``: ``torch.cuda.max_memory_allocated`` since the last
        :func:`reset_peak_memory` (tensors only, not the caching allocator's reserve). Elsewhere
        ``{"peak_rss_mib": ...}``: the process's peak resident set size since it started
        (``getrusage(RUSAGE_SELF).ru_maxrss``; never reset, so it only grows). The two keys differ on
        purpose: the numbers measure different things and must not be compared. ``{}`` where
        :mod:`resource` does not exist (Windows).
    """
    if device.type == "cuda":
        return {"peak_cuda_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20}
    try:
        import resource
    except ImportError:
        return {}
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS and in KiB on Linux and the BSDs.
    return {"peak_rss_mib": maxrss / (2**20 if sys.platform == "darwin" else 2**10)}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Reads a JSONL metrics file written by :class:`RunLogger`.

    Blank lines are skipped.

    Args:
        path: Path of the ``.jsonl`` file.

    Returns:
        The records, in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line is not valid JSON or not a JSON object; the message is ``<path>:<line>: ...``.
    """
    path = Path(path)
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from err
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            records.append(obj)
    return records


# Records a training step logs while the step counter reads ``step``, i.e. after a checkpoint of that step:
# a resume from that checkpoint logs them again. (An ``epoch`` record of step S is logged before the save.)
_AFTER_SAVE_KINDS = frozenset({"train", "meta", "skip"})


def drop_replayed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` without those a resume superseded.

    For each ``resume`` marker at step ``S``, an earlier record is dropped when the resumed run replays
    it or it belongs to the abandoned continuation: its step is above ``S``; or it is a
    ``train``/``meta``/``skip`` record of step ``S``; or an ``eval`` of step ``S`` logged again after the
    marker (a resume from a checkpoint written before its evaluation repeats it). The markers stay.

    Args:
        records: All records in file order (e.g. from :func:`read_jsonl`).

    Returns:
        The kept records, in file order (the input when there is no marker).
    """
    markers = [i for i, r in enumerate(records) if r.get("kind") == "resume" and isinstance(r.get("step"), int)]
    if not markers:
        return records
    dropped: set[int] = set()
    for i in markers:
        s = records[i]["step"]
        evals_after = {r.get("step") for r in records[i + 1:] if r.get("kind") == "eval"}
        for j in range(i):
            r, step = records[j], records[j].get("step")
            if r.get("kind") == "resume" or not isinstance(step, int):
                continue
            if step > s or (step == s and (r.get("kind") in _AFTER_SAVE_KINDS or (r.get("kind") == "eval" and s in evals_after))):
                dropped.add(j)
    return [r for j, r in enumerate(records) if j not in dropped]
