"""The checkpoint set of a data-parallel run: one file per rank, committed by rank 0's file.

Under ``torchrun`` each rank holds state of its own (the global RNG, the meta RNG, the meta buffer of its
shard). Rank ``r > 0`` writes it to ``<path>.rank<r>.<save_id>``; after a barrier confirms every rank file
is on disk, rank 0 writes ``path`` (the full state and the commit record naming the same ``save_id``), as
``torch.distributed.checkpoint`` writes ``.metadata`` last. Only after a second barrier are the rank files
of earlier saves removed, so a job killed at any point leaves a complete set: the previous one or the new
one. At resume every rank checks that its file belongs to the save ``path`` commits, and all ranks refuse
a mixed set together. In one process :func:`save_set` is a plain atomic save.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from meltr import distributed as D
from meltr.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["rank_file", "save_set", "merge_rank_file"]

log = logging.getLogger(__name__)


def rank_file(path: Path, rank: int, save_id: str) -> Path:
    """Where rank ``rank`` > 0 writes its part of the checkpoint set committed as ``path``."""
    return path.with_name(f"{path.name}.rank{rank}.{save_id}")


def save_set(path: Path, step: int, full_state: Callable[[], Mapping[str, Any]],
             rank_state: Callable[[], Mapping[str, Any]]) -> None:
    """Writes one checkpoint set (every rank calls it): the rank files first, ``path`` last.

    Args:
        path: The commit file (rank 0's), usually ``run_dir/last.pt``.
        step: The training step, stamped on every file and in the save id.
        full_state: Rank 0's state (called on rank 0 only); ``save_id`` is added to it.
        rank_state: What differs between ranks (called on ranks > 0 only).
    """
    # os.urandom, not torch: a save must never draw from the RNGs it records.
    save_id = f"s{step:08d}-{os.urandom(4).hex()}"
    rank = D.rank()
    if D.is_distributed():
        save_id = str(D.broadcast_object(save_id))
        if rank > 0:
            save_checkpoint({"format_version": FORMAT_VERSION, "kind": "rank", "rank": rank, "step": step,
                             "save_id": save_id, **rank_state()}, rank_file(path, rank, save_id))
        D.barrier()  # every rank file is on disk before the commit record
    if rank == 0:
        save_checkpoint({**full_state(), "save_id": save_id}, path)
    D.barrier()  # committed: the older sets can go
    if rank > 0:
        for old in [*path.parent.glob(f"{path.name}.rank{rank}.s*"), path.with_name(f"{path.name}.rank{rank}")]:
            if old.name != rank_file(path, rank, save_id).name:
                old.unlink(missing_ok=True)


def merge_rank_file(path: Path, state: dict[str, Any], device: torch.device) -> None:
    """Merges this rank's file into ``state`` (rank 0's ``path``, loaded) after every rank confirmed that
    its file belongs to the save ``path`` commits (the same ``save_id`` and step).

    Raises:
        CheckpointError: on every rank, when a rank file is missing, unreadable or from another save.
    """
    save_id = state.get("save_id")
    rank = D.rank()
    local: Mapping[str, Any] | None = None
    info: tuple[str, Any, Any, str | None]  # (file, step, save id, error)
    if rank == 0:
        info = (str(path), state.get("step"), save_id, None)
    else:
        # Sets written before issue 14 have no save_id: their rank file is <path>.rank<r>, unchecked.
        rank_path = rank_file(path, rank, save_id) if save_id else path.with_name(f"{path.name}.rank{rank}")
        try:
            local = load_checkpoint(rank_path, map_location=device)
            info = (str(rank_path), local.get("step"), local.get("save_id"), None)
        except (OSError, CheckpointError) as exc:
            info = (str(rank_path), None, None, str(exc))
    infos: list[tuple[str, Any, Any, str | None]] = D.gather_objects(info)  # type: ignore[assignment]  # all ranks see all answers: all raise or none does
    broken = [i for i in infos[1:] if i[3] is not None or (save_id is not None and (i[2] != save_id or i[1] != infos[0][1]))]
    if broken:
        listing = "; ".join(f"{f}: " + (f"unreadable ({err})" if err else f"step {st}, save {sid}") for f, st, sid, err in infos)
        raise CheckpointError(
            f"{path} and its rank files are not one checkpoint set ({listing}): resume from a complete set "
            f"(every rank file with the save id {save_id} that {path.name} names)"
        )
    if save_id is None:
        log.warning("%s has no save id (written before issue 14): its rank files cannot be checked against it", path)
    if local is not None:
        state["rng"] = local["rng"]
        state["meta"] = {**state.get("meta", {}), **local["meta"]}
