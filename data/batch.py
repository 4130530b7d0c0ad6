"""Batch plumbing every backbone's datasets share: stacking samples and per-sample random seeds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["collate", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit generator seed for one sample, stable across processes and Python runs."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def collate(items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-sample dicts into a batch: every value gains a leading batch axis N.

    Raises:
        ValueError: Empty input, or samples with different keys.
    """
    if not items:
        raise ValueError("collate got no samples")
    keys = list(items[0])
    for i, item in enumerate(items):
        if list(item) != keys:
            raise ValueError(f"sample {i} has keys {sorted(item)}, sample 0 has {sorted(keys)}")
    return {k: torch.stack([item[k] for item in items]) for k in keys}
