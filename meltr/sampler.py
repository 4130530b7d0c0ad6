"""A sampler whose order depends only on (seed, epoch) and that can start mid-epoch.

Exact resume needs the data order of the interrupted epoch without replaying it. ``EpochSampler``
shuffles with its own generator seeded by ``seed + epoch`` (never the global RNG), shards the order
across data-parallel ranks like ``DistributedSampler``, and skips already consumed samples after
``set_start``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Deterministic per-epoch sampler with data-parallel sharding and mid-epoch start.

    Args:
        num_samples: Dataset length.
        shuffle: Shuffle with ``seed + epoch``.
        seed: Base seed, identical on every rank.
        rank: This process's rank; world_size: number of ranks. Each rank gets ``order[rank::world]``
            after padding the order (by repetition) to a multiple of ``world_size``.
    """

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if num_samples < 1:
            raise ValueError("EpochSampler needs a non-empty dataset")
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the order of ``epoch`` and resets the start to 0."""
        self.epoch, self.start = epoch, 0

    def set_start(self, start: int) -> None:
        """Skips the first ``start`` samples of this rank's order in the current epoch."""
        self.start = start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        pad = (-len(order)) % self.world_size
        order += order[:pad]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size) - self.start
