"""Two memory measures for the benchmarks, both taken in-process so methods can be interleaved.

* :class:`SavedTensorMeter` -- **autograd's saved-tensor peak**, device-independent. Inside it, every tensor
  autograd saves for a backward pass (forward activations, and the extra ones a ``create_graph`` backward
  saves for the double backward) goes through a ``torch.autograd.graph.saved_tensors_hooks`` pack hook. The
  meter counts the bytes of each saved tensor's *storage* while the graph that saved it is alive (a packed
  handle is freed with its graph node), deduplicated by storage ``data_ptr`` (a tensor saved by several nodes,
  or several views of one storage, count once), and records the peak of that sum. Storages of the model's
  and combiner's parameters are left out (``exclude``): they are resident whatever the method, so the peak
  is the memory a method's graphs add on top of the weights. Not counted: tensors a step keeps without
  autograd (optimiser states, gradients, the no-grad forwards of ``fd``, forward-mode tangents of ``jvp``),
  which the process peak sees.
* :class:`ProcessPeak` -- **the process peak** over a region: on CUDA ``torch.cuda.max_memory_allocated``
  minus the allocation at entry; on CPU the growth of the resident set's high-water mark (``VmHWM``, reset at
  entry through ``/proc/self/clear_refs``; glibc's free lists are trimmed first so that memory a previous
  method freed is not reused invisibly). On CPU this is coarse (pages, allocator caching): read it as a ratio
  between methods of one run, not as an absolute number.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from types import TracebackType

import torch
from torch import Tensor

__all__ = ["SavedTensorMeter", "ProcessPeak", "MiB"]

MiB = float(2 ** 20)


def _storage_key(t: Tensor) -> tuple[object, int, int]:
    """(device, data_ptr, nbytes) of the storage behind ``t``; tensors without a plain storage (functorch
    wrappers, nested or sparse tensors) fall back to the tensor's own identity and size."""
    try:
        s = t.untyped_storage()
        return (t.device, s.data_ptr(), s.nbytes())
    except (RuntimeError, NotImplementedError, TypeError):
        return (t.device, id(t), t.numel() * t.element_size())


class _Packed:
    """What the graph holds instead of the saved tensor; its release is the tensor's release."""

    __slots__ = ("tensor", "key", "meter")

    def __init__(self, tensor: Tensor, key: tuple[object, int, int] | None, meter: SavedTensorMeter) -> None:
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self) -> None:
        if self.key is not None:
            self.meter._release(self.key)


class SavedTensorMeter:
    """Peak bytes of tensors saved for backward and still alive, while the context is active.

    Args:
        exclude: Tensors whose storages are not counted (the model's and the combiner's parameters).

    Example::

        with SavedTensorMeter(model.parameters()) as meter:
            loss = model(batch); loss.backward()
        meter.peak_bytes
    """

    def __init__(self, exclude: object = ()) -> None:
        self._exclude = {_storage_key(t)[:2] for t in exclude}  # type: ignore[attr-defined]
        self._live: dict[tuple[object, int, int], int] = {}  # storage -> saved handles alive
        self.live_bytes = 0
        self.peak_bytes = 0
        self._hooks: torch.autograd.graph.saved_tensors_hooks | None = None

    def _pack(self, t: Tensor) -> _Packed:
        key = _storage_key(t)
        if key[:2] in self._exclude:
            return _Packed(t, None, self)
        count = self._live.get(key, 0)
        self._live[key] = count + 1
        if count == 0:
            self.live_bytes += key[2]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        return _Packed(t, key, self)

    def _release(self, key: tuple[object, int, int]) -> None:
        count = self._live.get(key, 0) - 1
        if count > 0:
            self._live[key] = count
        elif count == 0:
            del self._live[key]
            self.live_bytes -= key[2]

    @staticmethod
    def _unpack(packed: _Packed) -> Tensor:
        return packed.tensor

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._hooks is not None
        self._hooks.__exit__(exc_type, exc, tb)
        self._hooks = None


def _libc_trim() -> None:
    """Returns glibc's free heap memory to the OS (no-op where there is no glibc)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - probe the symbol once
        except (OSError, AttributeError):
            _LIBC = False
    if isinstance(_LIBC, ctypes.CDLL):  # False: probed, no malloc_trim here
        _LIBC.malloc_trim(0)


_LIBC: ctypes.CDLL | bool | None = None


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux >= 4.0: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


class ProcessPeak:
    """Peak memory growth (bytes) of this process over the ``with`` block; ``None`` where unmeasurable."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: float | None = None
        self._base = 0.0
        self._ok = False

    def __enter__(self) -> ProcessPeak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base, self._ok = float(torch.cuda.memory_allocated(self.device)), True
        else:
            _libc_trim()
            rss = _proc_status_kib("VmRSS")
            self._ok = rss is not None and _reset_hwm()
            self._base = 1024.0 * (rss or 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._ok:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = float(torch.cuda.max_memory_allocated(self.device)) - self._base
        else:
            hwm = _proc_status_kib("VmHWM")
            self.peak_bytes = None if hwm is None else max(0.0, 1024.0 * hwm - self._base)
