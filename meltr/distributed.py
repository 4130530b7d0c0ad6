"""Data parallelism: the only module of meltr that touches ``torch.distributed``.

Backbone gradients are averaged by DDP on ``.backward()``. The meta step uses ``torch.autograd.grad``
and forward-mode AD, which DDP does not reduce, so :class:`DistComm` averages what the hypergradient
needs explicitly: the outer gradient ``v``, the loss vector and its directional derivatives.

Exactness: with per-sample-mean losses and equal local batches, the backbone step and the
``aid_fp_lite`` / ``itd`` meta steps equal a single process on the concatenated batch (tested with two
gloo ranks). The Hessian-vector products of ``aid_fp``, ``aid_cg`` and ``stocbio`` are averaged over
ranks too, but the curvature of a nonlinear combiner across ranks (products of gradients from
different ranks) is not formed, so those schemes are a close approximation under DDP, not exact.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from meltr.hypergrad import Comm

__all__ = ["DistComm", "is_initialized", "is_distributed", "rank", "world_size", "init_from_env", "collective_timeout", "wrap_ddp",
           "barrier", "broadcast_object", "gather_objects"]

log = logging.getLogger(__name__)


def is_initialized() -> bool:
    """True when a default process group exists (of any size)."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


TIMEOUT_ENV = "MELTR_DIST_TIMEOUT"
"""Environment variable with the collective timeout in seconds (see :func:`collective_timeout`)."""


def collective_timeout(timeout: float | None = None) -> datetime.timedelta | None:
    """The timeout of every collective: ``timeout`` seconds, else ``$MELTR_DIST_TIMEOUT``, else None
    (torch's default: 30 minutes for gloo, 10 for NCCL).

    A rank that froze (a stuck data worker, a dead node) then fails the others after this long with
    torch's timeout error instead of blocking them for the default.

    Raises:
        ValueError: The value is not a finite number > 0 (the message names its source).
    """
    source = "timeout"
    if timeout is None:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        if not raw:
            return None
        source = f"${TIMEOUT_ENV}={raw!r}"
        try:
            timeout = float(raw)
        except ValueError:
            raise ValueError(f"{source}: expected the collective timeout in seconds, e.g. 600") from None
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"{source}: the collective timeout must be a finite number of seconds > 0, got {timeout}")
    return datetime.timedelta(seconds=timeout)


def init_from_env(backend: str | None = None, timeout: float | None = None) -> bool:
    """Initialises the default process group from torchrun's environment (``WORLD_SIZE`` > 1).

    Args:
        backend: ``nccl`` on CUDA, ``gloo`` otherwise, by default.
        timeout: Collective timeout in seconds (see :func:`collective_timeout`); None: ``$MELTR_DIST_TIMEOUT``,
            else torch's default. Ignored when the process group already exists.

    Returns:
        True if this process is part of a multi-process run.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        td = collective_timeout(timeout)
        if td is not None:
            dist.init_process_group(backend=backend, timeout=td)
        else:
            dist.init_process_group(backend=backend)
    return True


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wraps ``model`` in DDP when distributed (unused-parameter detection on: inactive heads are common)."""
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class DistComm(Comm):
    """Averages over the default process group with one flat ``all_reduce`` per call."""

    def __init__(self) -> None:
        self.world_size = world_size()

    def mean(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        if self.world_size == 1 or not tensors:
            return list(tensors)
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64 if t.dtype == torch.float64 else torch.float32) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        out, i = [], 0
        for t in tensors:
            out.append(flat[i : i + t.numel()].view_as(t).to(t.dtype))
            i += t.numel()
        return out

    def globalise(self, losses: Tensor) -> Tensor:
        if self.world_size == 1:
            return losses
        (glob,) = self.mean([losses])
        # Value of the global mean, gradient of the local losses (DDP or the explicit mean of v
        # averages those gradients over ranks).
        return losses + (glob - losses).detach()
