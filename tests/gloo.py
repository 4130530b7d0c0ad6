"""Spawned gloo ranks for the multi-process tests: one process group per rank with the teardown in the
one safe order, and each rank's report read back by the test."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch.distributed as dist


@contextlib.contextmanager
def gloo_rank(rank: int, world: int, init_file: str, out_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Joins a gloo group (file rendezvous: no port) as ``rank`` and yields this rank's report, a dict the
    body fills with JSON values. When the body ends, a barrier first (no rank tears gloo down while
    another still talks to it); then, whatever happened, the report is written to
    ``<out_dir>/report<rank>.json`` (read back by :func:`read_reports`) and the group is destroyed."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    report: dict[str, Any] = {}
    try:
        yield report
        dist.barrier()
    finally:
        (Path(out_dir) / f"report{rank}.json").write_text(json.dumps(report))
        dist.destroy_process_group()


def read_reports(out_dir: str | Path, world: int) -> list[dict[str, Any]]:
    """The reports :func:`gloo_rank` wrote, in rank order."""
    return [json.loads((Path(out_dir) / f"report{r}.json").read_text()) for r in range(world)]
