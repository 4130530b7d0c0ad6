"""One entry point from a run's ``data:`` section to UniVL datasets, and the registry of UniVL datasets.

A dataset is a reader module in ``data/univl/`` with a ``build(cfg, tokenizer) -> (train, {split: eval})``
function beside its reader (the official file names live there), plus one entry in :data:`DATASETS` and
its name in :attr:`UniVLDataConfig.dataset`'s ``Literal`` (a test checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch.utils.data import Dataset

from data.text import PieceFn, TextTokenizer
from data.univl import mosi, msrvtt, youcook2
from data.univl.config import UniVLDataConfig

__all__ = ["DATASETS", "Builder", "build_univl_data"]

#: ``build(cfg, tokenizer) -> (train set, {evaluation split name: set})`` of one dataset.
Builder = Callable[[UniVLDataConfig, "TextTokenizer | PieceFn"], "tuple[Dataset, Mapping[str, Dataset]]"]

#: The UniVL datasets by ``data.dataset`` name.
DATASETS: dict[str, Builder] = {"youcook2": youcook2.build, "msrvtt": msrvtt.build, "mosi": mosi.build}


def build_univl_data(cfg: UniVLDataConfig, tokenizer: TextTokenizer | PieceFn) -> tuple[Dataset, dict[str, Dataset]]:
    """The training set and the evaluation sets of ``cfg.dataset``.

    Returns:
        ``(train, evals)``: ``evals`` is ``{"test": ...}``, and for CMU-MOSI ``{"valid": ..., "test": ...}``
        (valid selects the checkpoint, test is the reported table).

    Raises:
        ValueError: ``cfg.dataset`` is not in :data:`DATASETS` (the message lists the known names).
        MissingDataFileError / DataFormatError: From the reader, naming the file.
    """
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown UniVL dataset {cfg.dataset!r}; known: {', '.join(sorted(DATASETS))}")
    train, evals = DATASETS[cfg.dataset](cfg, tokenizer)
    return train, dict(evals)
