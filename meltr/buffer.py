"""The meta buffer: the recent training batches the meta step draws from, and its checkpoint state.

:class:`MetaBuffer` keeps the last N training batches (official: 10) with where each came from; the
meta step of :class:`meltr.MetaLearner` draws its batches from it. An exact resume needs them back. Storing the
batches makes a checkpoint as large as N batches (10 x 128 videos: ~2.3 GB on the All-in-one row).
``meltr.Trainer`` knows where each batch came from (epoch, index of the batch in that epoch, per rank)
and can read it again from its loader, so a checkpoint stores that position and a fingerprint of the
batch instead; at resume the batch is re-read and its fingerprint compared, which catches data that is
not a function of (epoch, index) (e.g. random augmentation drawn from the global RNG in workers).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from meltr.checkpoint import CheckpointError

__all__ = ["BufferPosition", "BufferMismatchError", "CheckpointBuffer", "BUFFER_STATE_KEYS", "MetaBuffer",
           "batch_fingerprint", "buffer_state", "restore_buffer"]

log = logging.getLogger(__name__)

BufferPosition = tuple[int, int]
"""Where a training batch came from: ``(epoch, index of the batch in the epoch)``, on this rank's shard
(a micro-batch index under gradient accumulation)."""


CheckpointBuffer = Literal["positions", "batches", "none"]
"""What a checkpoint keeps of the meta buffer: each batch's position and fingerprint (re-read at resume),
the batches themselves, or nothing (see ``MetaConfig.checkpoint_buffer``)."""

BUFFER_STATE_KEYS = ("buffer", "buffer_saved", "buffer_positions", "buffer_fingerprints")
"""The keys of ``MetaLearner.state_dict`` that describe the buffer (each rank's own, under DDP)."""


class BufferMismatchError(CheckpointError):
    """A buffered batch re-read by its position differs from the batch the run trained on (or cannot
    be read); the message names the checkpoint, the batch's (epoch, index), the likely cause and the fix."""


def _feed(h: hashlib._Hash, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach()
        if t.is_sparse:
            t = t.to_dense()
        t = t.resolve_conj().resolve_neg().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        n = t.numel() * t.element_size()
        if n:
            # The tensor's bytes, read in place (no copy): ``t`` stays alive until update() returns.
            h.update((ctypes.c_ubyte * n).from_address(t.data_ptr()))
    elif isinstance(obj, Mapping):
        h.update(f"M{len(obj)};".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (str, bytes, int, float, complex)):  # bool is an int
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif hasattr(obj, "__array_interface__") and hasattr(obj, "tobytes"):  # numpy arrays and scalars
        h.update(f"A{obj.dtype}{tuple(obj.shape)};".encode())
        h.update(obj.tobytes())
    else:
        # Another object: its type, and its repr unless that is the default one (a memory address,
        # which differs between processes and would fail every comparison).
        text = repr(obj)
        h.update(f"O{type(obj).__module__}.{type(obj).__qualname__}:{'' if ' at 0x' in text else text};".encode())


def batch_fingerprint(batch: Any) -> str:
    """The sha256 (hex) of a batch: every tensor's dtype, shape and bytes, every non-tensor leaf (str,
    numbers, None, numpy arrays) and the container structure (dict keys in order, list/tuple lengths).

    Two batches have the same fingerprint when they hold the same data; where the tensors live (CPU or
    GPU) does not matter.
    """
    h = hashlib.sha256()
    _feed(h, batch)
    return h.hexdigest()


def buffer_state(batches: Sequence[Any], positions: Sequence[BufferPosition | None], fingerprints: list[str | None],
                 mode: Literal["positions", "batches", "none"]) -> dict[str, Any]:
    """The checkpoint entries of a buffer (``MetaLearner.state_dict``'s ``buffer*`` keys).

    Args:
        batches: The buffered batches.
        positions: Where each came from (all known when ``mode`` is ``positions``).
        fingerprints: Each batch's fingerprint or None; the missing ones are computed here and kept in
            this list (a batch stays in the buffer over several checkpoints: it is hashed once).
        mode: ``positions``, ``batches`` or ``none``.

    Returns:
        ``buffer`` (the batches, or empty), ``buffer_saved`` (whether the batches are stored),
        ``buffer_positions`` (``[[epoch, index], ...]`` or None) and ``buffer_fingerprints`` (or None).
    """
    if mode != "positions":
        return {"buffer": list(batches) if mode == "batches" else [], "buffer_saved": mode == "batches",
                "buffer_positions": None, "buffer_fingerprints": None}
    if None in positions:
        raise ValueError("buffer_state(mode='positions') needs the position of every buffered batch")
    for i, fp in enumerate(fingerprints):
        if fp is None:
            fingerprints[i] = batch_fingerprint(batches[i])
    return {"buffer": [], "buffer_saved": False, "buffer_positions": [list(p) for p in positions],  # type: ignore[arg-type]
            "buffer_fingerprints": list(fingerprints)}


def restore_buffer(state: Mapping[str, Any], fetch: Callable[[BufferPosition], Any] | None, *,
                   mode: Literal["positions", "batches", "none"], refills: bool
                   ) -> tuple[list[Any], list[BufferPosition | None], list[str | None]]:
    """The buffer a state holds: ``(batches, positions, fingerprints)``, stored or re-read and checked.

    Args:
        state: A ``MetaLearner.state_dict`` (those written before positions have ``buffer`` and
            ``buffer_saved`` only).
        fetch: ``fetch((epoch, index)) -> batch``, reading a batch again (raises ``LookupError`` where there
            is none); needed when the state stores positions.
        mode: This run's ``meta.checkpoint_buffer``: with ``none`` a buffer stored by position is not re-read.
        refills: Whether a missing buffer matters (a learnable combiner drawing from the buffer): warn then.

    Raises:
        BufferMismatchError: a re-read batch's fingerprint differs from the stored one, or it cannot be read.
        ValueError: the state stores positions and ``fetch`` is None.
    """
    stored = state.get("buffer_positions")
    if stored is None:
        batches: list[Any] = list(state["buffer"])
        if not state.get("buffer_saved", True) and refills:
            log.warning("the checkpoint holds no meta buffer (meta.checkpoint_buffer: none): the buffer refills from the "
                        "next training batches, so this resumed run is not bit-identical to an uninterrupted one")
        return batches, [None] * len(batches), [None] * len(batches)
    if mode == "none":
        if refills and stored:
            log.warning("meta.checkpoint_buffer is 'none': the %d buffered batches this checkpoint names are not re-read, the "
                        "buffer refills from the next training batches (this resumed run is not bit-identical)", len(stored))
        return [], [], []
    if stored and fetch is None:
        raise ValueError(f"the state stores the meta buffer as {len(stored)} positions (meta.checkpoint_buffer: positions): "
                         f"pass fetch= to read those batches again (meltr.Trainer does), or resume with "
                         f"meta.checkpoint_buffer: none (the buffer refills, not bit-exact)")
    want: list[str | None] = list(state["buffer_fingerprints"])
    fix = ("to checkpoint such data set meta.checkpoint_buffer: batches (stores the batches themselves); to resume this "
           "checkpoint anyway set meta.checkpoint_buffer: none (the buffer refills, not bit-exact)")
    batches = []
    positions: list[BufferPosition | None] = []
    for n, (pos, fp) in enumerate(zip(stored, want)):
        epoch, index = int(pos[0]), int(pos[1])
        where = f"buffered batch {n + 1} of {len(stored)} (epoch {epoch}, batch {index} of the epoch)"
        try:
            batch = fetch((epoch, index))  # type: ignore[misc]
        except (LookupError, StopIteration) as exc:
            raise BufferMismatchError(f"{where} cannot be read again from the train loader ({exc}): it is not the loader "
                                      f"the run was trained with; {fix}") from exc
        got = batch_fingerprint(batch)
        if got != fp:
            raise BufferMismatchError(
                f"{where} read again from the train loader differs from the batch the run trained on (fingerprint "
                f"{got[:12]} != {str(fp)[:12]}): the dataset's output is not a function of (epoch, index), e.g. random "
                f"augmentation drawn from the global RNG or in DataLoader workers, or the data changed; {fix}")
        batches.append(batch)
        positions.append((epoch, index))
    return batches, positions, want


class MetaBuffer:
    """The last ``size`` training batches, each with its position (or None) and fingerprint (computed at
    the first checkpoint that needs it, then kept): what the meta step draws its batches from.

    Args:
        size: How many batches it keeps (official: 10).
        evict: ``fifo`` drops the oldest (UniVL); ``weighted`` one of the entries with weights 1..N, the
            oldest least likely (VIOLET / All-in-one).
        generator: The meta RNG of the draws and weighted evictions (its owner checkpoints it).
    """

    def __init__(self, size: int, evict: Literal["fifo", "weighted"], generator: torch.Generator) -> None:
        self.size, self.evict, self.generator = size, evict, generator
        self.batches: list[Any] = []
        self.positions: list[BufferPosition | None] = []
        self.fingerprints: list[str | None] = []
        self._warned_unpositioned = False

    def __len__(self) -> int:
        return len(self.batches)

    def add(self, batch: Any, position: BufferPosition | None = None) -> None:
        """Appends ``batch`` (from ``position``, when known), evicting one entry when full."""
        self.batches.append(batch)
        self.positions.append(None if position is None else (int(position[0]), int(position[1])))
        self.fingerprints.append(None)
        if len(self.batches) <= self.size:
            return
        if self.evict == "fifo":
            gone = 0
        else:
            # VIOLET / All-in-one: evict one of the first N entries with weights 1..N (older entries are
            # the least likely to go; the newest entry is never evicted at that moment).
            weights = torch.arange(1, self.size + 1, dtype=torch.float)
            gone = int(torch.multinomial(weights, 1, generator=self.generator))
        for entries in (self.batches, self.positions, self.fingerprints):
            entries.pop(gone)

    def draw(self, fallback: Any) -> Any:
        """A batch drawn uniformly, or ``fallback`` (the current batch) while the buffer is empty."""
        if not self.batches:
            return fallback
        return self.batches[int(torch.randint(len(self.batches), (1,), generator=self.generator))]

    def state(self, mode: CheckpointBuffer) -> dict[str, Any]:
        """The checkpoint entries (:data:`BUFFER_STATE_KEYS`, see :func:`buffer_state`); with ``positions``
        and a batch of unknown position, the batches themselves (with a warning, once)."""
        if mode == "positions" and None in self.positions:
            if not self._warned_unpositioned:
                self._warned_unpositioned = True
                log.warning(
                    "meta.checkpoint_buffer is 'positions', but %d of the %d buffered batches have no position (meltr.Trainer "
                    "gives positions for a DataLoader whose sampler can start mid-epoch, e.g. meltr.EpochSampler; observe() and "
                    "maybe_step() without positions= give none): checkpoints store the batches themselves, as with "
                    "meta.checkpoint_buffer: batches", self.positions.count(None), len(self.batches))
            mode = "batches"
        return buffer_state(self.batches, self.positions, self.fingerprints, mode)

    def restore(self, restored: tuple[list[Any], list[BufferPosition | None], list[str | None]]) -> None:
        """Takes the contents :func:`restore_buffer` read (``batches, positions, fingerprints``)."""
        self.batches, self.positions, self.fingerprints = restored
