"""Hypergradients of the bi-level problem behind MELTR (paper eq. 8-11, Table 8).

The meta parameters ``phi`` (the combiner) define the training loss ``L_aux(w; phi)`` of the backbone
weights ``w``; they are judged by the primary (outer) objective ``L_P(w, phi)`` (in :class:`meltr.MetaLearner`:
the model's ``target_loss`` plus the regulariser)::

    min_phi L_P(w*(phi), phi)    s.t.    w*(phi) = argmin_w L_aux(w; phi)

By the implicit function theorem, with ``v = dL_P/dw`` and the mixed term ``M = d2 L_aux / dw dphi``::

    dL_P/dphi = dL_P/dphi|direct - M^T H^{-1} v,      H = d2 L_aux / dw2

Every scheme here has one callable shape::

    hg(primary_fn, aux_fn, params, meta_params, comm=LOCAL, inner_lr=None) -> tuple[Tensor, ...]

``primary_fn(params)`` and ``aux_fn(params)`` evaluate the two losses at the given backbone parameter
values (the meta parameters are captured by ``aux_fn``); the result is the approximate gradient of the
primary loss with respect to each meta parameter, direct term included, ready to be written to
``phi.grad``. ``comm`` averages across data-parallel ranks (identity in one process). ``inner_lr`` is
the learning rate of the backbone step the meta step follows: the caller always passes what it knows,
and a scheme that unrolls that step (``itd``) uses it, the others ignore it. So the caller never has to
know which scheme it holds.

Schemes (``HYPERGRADS``): ``aid_fp_lite`` (MELTR: ``H^{-1} ~ I``), ``aid_fp`` (AuxiLearn: Neumann
series), ``aid_cg`` (conjugate gradient), ``itd`` (one differentiable step, Meta-Weight-Net style),
``stocbio`` (stochastic Neumann series).

Fast AID-FP-Lite. With ``L_aux = C(l(w); phi)`` for a vector of T losses ``l``,
``<grad_w L_aux, p> = sum_t a_t(l, phi) c_t`` where ``a_t = dC/dl_t`` and ``c = J_l(w) p`` does not
depend on phi. The mixed term therefore needs only the T directional derivatives ``c``: one
forward-mode JVP through the backbone (``mode="jvp"``) or a central finite difference (``mode="fd"``,
two forwards without autograd), then a double backward through the tiny combiner alone. The official
code instead builds ``grad_w L_aux`` with ``create_graph=True`` and back-propagates through it
(``mode="autograd"``), a double backward through the whole backbone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from meltr.deprecation import renamed_kwargs
from meltr.interface import as_full_precision
from meltr.registry import Registry

__all__ = [
    "Comm",
    "LOCAL",
    "CombinedObjective",
    "SumObjective",
    "HypergradConfig",
    "HYPERGRADS",
    "build_hypergrad",
    "Hypergradient",
    "AIDFPLite",
    "AIDFP",
    "AIDCG",
    "ITD",
    "StocBiO",
    "primary_grads",
    "directional_derivatives",
    "mixed_product",
    "lite_from_graph",
    "full_precision",
    "full_precision_requested",
    "differentiable_attention",
]

log = logging.getLogger(__name__)

Params = Sequence[Tensor]
Objective = Callable[[Params], Tensor]
Mode = Literal["jvp", "vjp", "fd", "autograd"]


class Comm:
    """Averaging across data-parallel ranks, as the hypergradient needs it. One process: identity.

    :class:`meltr.distributed.DistComm` implements it with ``all_reduce``.
    """

    world_size: int = 1

    def mean(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Element-wise mean of each tensor over ranks."""
        return list(tensors)

    def globalise(self, losses: Tensor) -> Tensor:
        """Loss vector whose *value* is the mean over ranks and whose gradient is the local one.

        With per-sample-mean losses and equal local batches, the mean over ranks is the loss of the
        concatenated batch, so combining it keeps a nonlinear combiner exact under data parallelism.
        """
        return losses


LOCAL = Comm()


class CombinedObjective:
    """``L_aux(w) = combine(losses(w))``, with the structure exposed for the fast schemes.

    Args:
        losses_fn: Maps backbone parameter values to the loss vector ``[T]`` (local batch).
        combine: The combiner, ``[T] -> []``; its parameters are the meta parameters.
        sample: Optional factory of the same objective on a fresh batch (used by ``stocbio``).
        comm: Data-parallel communicator used to globalise the losses in ``__call__``.
    """

    def __init__(
        self,
        losses_fn: Callable[[Params], Tensor],
        combine: Callable[[Tensor], Tensor],
        sample: Callable[[], CombinedObjective] | None = None,
        comm: Comm = LOCAL,
    ) -> None:
        self.losses_fn = losses_fn
        self.combine = combine
        self._sample = sample
        self.comm = comm

    def losses(self, params: Params) -> Tensor:
        """Local loss vector ``[T]`` at ``params``."""
        return self.losses_fn(params)

    def __call__(self, params: Params) -> Tensor:
        return self.combine(self.comm.globalise(self.losses_fn(params)))

    def sample(self) -> CombinedObjective:
        """The same objective on a fresh batch, or itself when no sampler was given."""
        return self._sample() if self._sample is not None else self


class SumObjective:
    """A primary objective that is a sum of terms; gradients are taken term by term to bound memory."""

    def __init__(self, *terms: Objective) -> None:
        self.terms = terms

    def __call__(self, params: Params) -> Tensor:
        return sum(t(params) for t in self.terms)  # type: ignore[return-value]


class Hypergradient(Protocol):
    """The one callable shape of every scheme (see the module docstring)."""

    def __call__(
        self, primary_fn: Objective, aux_fn: Objective, params: Params, meta_params: Params, comm: Comm = LOCAL,
        inner_lr: float | None = None,
    ) -> tuple[Tensor, ...]: ...


# --------------------------------------------------------------------------------------------------
# Building blocks


def _grad(out: Tensor, inputs: Params, *, create_graph: bool = False) -> list[Tensor]:
    """``autograd.grad`` with zeros for unused inputs."""
    grads = torch.autograd.grad(out, list(inputs), allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def _add(xs: list[Tensor], ys: Sequence[Tensor], alpha: float = 1.0) -> list[Tensor]:
    return [x.add(y, alpha=alpha) for x, y in zip(xs, ys)]


def _dot(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(xs, ys))  # type: ignore[return-value]


_precision = threading.local()


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Asks loss functions evaluated inside to skip their autocast: the finite-difference forwards of
    ``mode="fd"`` run in the parameters' precision (a bf16 forward's rounding, ~4e-3, would swamp any
    step small enough to stay linear). :class:`meltr.MetaLearner` honours it."""
    before = getattr(_precision, "full", False)
    _precision.full = True
    try:
        with contextlib.ExitStack() as stack:
            for device in ("cpu", "cuda"):
                if torch.is_autocast_enabled(device):
                    stack.enter_context(torch.autocast(device, enabled=False))
            yield
    finally:
        _precision.full = before


def full_precision_requested() -> bool:
    """Whether the caller is inside :func:`full_precision`."""
    return getattr(_precision, "full", False)


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Routes ``scaled_dot_product_attention`` to the math kernel, which supports forward-mode AD and
    double backward (the fused flash / memory-efficient kernels support neither). The exact modes
    (``jvp``, ``autograd``) run their backbone passes inside it; ``vjp`` and ``fd`` need no such pass."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


def primary_grads(primary_fn: Objective, params: Params, meta_params: Params) -> tuple[list[Tensor], list[Tensor]]:
    """``v = dL_P/dw`` (detached) and the direct term ``dL_P/dphi``, term by term for a SumObjective."""
    terms = primary_fn.terms if isinstance(primary_fn, SumObjective) else (primary_fn,)
    n = len(params)
    v: list[Tensor] | None = None
    direct: list[Tensor] | None = None
    for term in terms:
        out = term(params)
        if not out.requires_grad:
            continue
        g = _grad(out, list(params) + list(meta_params))
        v = g[:n] if v is None else _add(v, g[:n])
        direct = g[n:] if direct is None else _add(direct, g[n:])
    if v is None or direct is None:
        raise ValueError("the primary objective does not depend on the backbone parameters")
    return [x.detach() for x in v], [x.detach() for x in direct]


def _rng_snapshot(device_types: set[str]) -> dict[str, object]:
    snap: dict[str, object] = {"cpu": torch.get_rng_state()}
    if "cuda" in device_types and torch.cuda.is_available():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    return snap


def _rng_restore(snap: dict[str, object]) -> None:
    torch.set_rng_state(snap["cpu"])  # type: ignore[arg-type]
    if "cuda" in snap:
        torch.cuda.set_rng_state_all(snap["cuda"])  # type: ignore[arg-type]


def _slopes(losses: Tensor, params: Params, direction: Sequence[Tensor], known: int | None = None,
            known_grads: Sequence[Tensor] | None = None) -> Tensor:
    """``c_t = <grad_w l_t, p>`` ``[T]`` by one reverse pass per loss through ``losses``' graph (kept for
    the caller); ``known_grads`` are loss ``known``'s gradients when the caller has them already."""
    slopes = []
    for t in range(losses.numel()):
        if t == known:
            grads: Sequence[Tensor | None] = known_grads or []
        elif losses[t].requires_grad:
            grads = torch.autograd.grad(losses[t], list(params), retain_graph=True, allow_unused=True)
        else:
            grads = []
        slopes.append(sum((torch.dot(g.reshape(-1), d.reshape(-1).to(g.dtype)).double()
                           for g, d in zip(grads, direction) if g is not None), losses.new_zeros((), dtype=torch.float64)))
    return torch.stack(slopes).to(losses.dtype)


def _fd_directional(aux_fn: CombinedObjective, params: Params, direction: Params, rel_change: float | None = None,
                    max_pairs: int = 3, comm: Comm = LOCAL) -> tuple[Tensor, Tensor]:
    """``l(w)`` and ``c = J_l(w) p`` by central differences with a step chosen per loss (see
    :func:`directional_derivatives`), averaged over ranks: every rank takes the same steps."""
    p_sq = float(sum((d.double() ** 2).sum() for d in direction))
    if p_sq == 0.0:
        (l,) = comm.mean([aux_fn.losses([p.detach() for p in params]).detach()])
        return l, torch.zeros_like(l)
    u = torch.finfo(params[0].dtype).eps
    r = rel_change if rel_change is not None else math.sqrt(u) * 3.0  # ~1e-3 in float32, ~5e-8 in float64
    kappa = 16.0  # forward rounding error of a loss, in units of u * |loss|
    snap = _rng_snapshot({p.device.type for p in params})

    def pair(t: float) -> tuple[Tensor, Tensor]:
        with full_precision():  # under autocast too: the step rule assumes the parameters' rounding
            _rng_restore(snap)  # the same random state (dropout masks, sampled negatives) on both sides
            plus = aux_fn.losses([p.detach() + t * d for p, d in zip(params, direction)]).double()
            _rng_restore(snap)
            minus = aux_fn.losses([p.detach() - t * d for p, d in zip(params, direction)]).double()
        mid, slope = comm.mean([0.5 * (plus + minus), (plus - minus) / (2.0 * t)])
        return mid, slope

    # First step: the primary loss, whose slope along p = grad L_P is |p|^2, changes by ~r of an O(1) value.
    t = r / p_sq
    l, c = pair(t)
    scale = l.abs().clamp_min(1e-3 * float(l.abs().max()) + u)
    err = kappa * u * scale / t  # rounding error of each slope at this step
    for _ in range(max_pairs - 1):
        # A loss is settled once its change over the step is at least r/8 of its value; slower losses
        # (small |c| relative to |l|) need a larger step to rise above rounding.
        pending = (t * c.abs() < r / 8 * scale) & (err > 1e-4 * c.abs())
        if not bool(pending.any()):
            break
        ideal = r * scale[pending] / c[pending].abs().clamp_min(err[pending])
        t_next = float(torch.exp(torch.log(ideal).mean()).clamp(max=t * 1e4))
        if t_next <= t:
            break
        _, c_next = pair(t_next)
        # Accept the larger step only where it agrees with the smaller one within that one's rounding
        # error: a larger disagreement is the larger step's nonlinearity (curvature, kinks), not noise.
        agree = pending & ((c_next - c).abs() <= err)
        c = torch.where(agree, c_next, c)
        err = torch.where(agree, kappa * u * scale / t_next, err)
        t = t_next
    return l, c


def directional_derivatives(
    aux_fn: CombinedObjective, params: Params, direction: Params, mode: Literal["jvp", "vjp", "fd"],
    fd_eps: float | None = None, comm: Comm = LOCAL,
) -> tuple[Tensor, Tensor]:
    """Losses ``l(w)`` ``[T]`` and their directional derivatives ``c = J_l(w) p`` ``[T]``, averaged over
    ranks (``comm``).

    ``jvp``: forward-mode AD (one forward carrying tangents; exact). ``vjp``: one forward with a graph
    and one reverse pass per loss, ``c_t = <grad_w l_t, p>`` (exact, first order: no forward-mode AD,
    no double backward). ``fd``: central differences ``(l(w + t p) - l(w - t p)) / 2t`` of forwards
    under ``no_grad``, the random state replayed so that dropout masks and sampled negatives are the
    same on both sides. The step is chosen per loss: the first pair moves the primary loss (slope
    ``|p|^2``) by a relative ``fd_eps`` (default ``3 sqrt(u)``, ``u`` the forward's unit roundoff:
    about 1e-3 in float32); losses that barely move at that step get a second (and third) pair at a
    larger step, accepted only where it agrees with the smaller step within the latter's rounding
    error (a disagreement is the nonlinearity of the larger step). ``l(w)`` is the first pair's midpoint.
    Under autocast these forwards run in the parameters' precision. Measured in float32 on the three
    backbones' tiny models with official weights: cosine >= 0.99999 to the exact hypergradient, largest
    error 1e-4 to 6e-3 of each tensor's largest entry (``vjp``: 6e-6, as ``autograd``).
    """
    if mode == "jvp":
        primals = tuple(p.detach() for p in params)
        tangents = tuple(d.detach().to(p.dtype) for d, p in zip(direction, params))
        with differentiable_attention():
            l, c = torch.func.jvp(lambda *ps: aux_fn.losses(ps), primals, tangents)[:2]  # (output, tangent): no has_aux
        l, c = comm.mean([l.detach(), c.detach()])
        return l, c
    if mode == "vjp":
        with torch.enable_grad():
            live = [p if p.requires_grad else p.detach().requires_grad_(True) for p in params]
            l = aux_fn.losses(live)
            c = _slopes(l, live, direction)
        l, c = comm.mean([l.detach(), c])
        return l, c
    if mode != "fd":
        raise ValueError(f"unknown directional mode {mode!r}")
    with torch.no_grad():
        l, c = _fd_directional(aux_fn, params, direction, fd_eps, comm=comm)
    dtype = params[0].dtype
    return l.to(dtype), c.to(dtype)


def _mixed_from_directional(combine: Callable[[Tensor], Tensor], l: Tensor, c: Tensor, meta_params: Params) -> list[Tensor]:
    """``d/dphi sum_t a_t(l, phi) c_t``: a double backward through the combiner only."""
    with torch.enable_grad():
        x = as_full_precision(l.detach()).requires_grad_(True)
        out = combine(x)
        if not out.requires_grad:
            return [torch.zeros_like(m) for m in meta_params]
        (a,) = torch.autograd.grad(out, x, create_graph=True, allow_unused=True)
        if a is None:  # the combiner ignores the losses
            return [torch.zeros_like(m) for m in meta_params]
        s = (a * c.detach().to(a.dtype)).sum()
        if not s.requires_grad:  # a does not depend on phi (e.g. a fixed combiner)
            return [torch.zeros_like(m) for m in meta_params]
        return _grad(s, meta_params)


def _aux_grad_graph(aux_fn: Objective, params: Params) -> list[Tensor]:
    """``grad_w L_aux`` with ``create_graph=True`` (depends on phi and on w)."""
    with differentiable_attention():
        out = aux_fn(params)
        return _grad(out, params, create_graph=True)


def _graph_vjp(g: Sequence[Tensor], inputs: Params, p: Sequence[Tensor], retain: bool = True) -> list[Tensor]:
    """``d/dinputs <g, p>`` through a gradient graph ``g``; entries of g without a graph contribute 0."""
    pairs = [(gi, pi) for gi, pi in zip(g, p) if gi.requires_grad]
    if not pairs:
        return [torch.zeros_like(x) for x in inputs]
    outs, grads = zip(*pairs)
    res = torch.autograd.grad(outs, list(inputs), grad_outputs=grads, allow_unused=True, retain_graph=retain)
    return [torch.zeros_like(x) if r is None else r.detach() for r, x in zip(res, inputs)]


def mixed_product(
    aux_fn: Objective,
    params: Params,
    meta_params: Params,
    p: Sequence[Tensor],
    mode: Mode,
    comm: Comm = LOCAL,
    fd_eps: float | None = None,
    graph: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """``M^T p = d/dphi <grad_w L_aux(w; phi), p>`` for a fixed direction ``p``.

    Args:
        aux_fn: The training objective; ``jvp``/``fd`` need a :class:`CombinedObjective`.
        p: Direction in backbone-parameter space (already averaged over ranks).
        mode: ``jvp``/``fd`` (fast, combiner-only double backward) or ``autograd`` (official).
        graph: A ``grad_w L_aux`` built with ``create_graph`` to reuse in ``autograd`` mode.
    """
    if mode in ("jvp", "vjp", "fd"):
        if not isinstance(aux_fn, CombinedObjective):
            raise TypeError(f"mode {mode!r} needs a CombinedObjective aux_fn (losses + combiner); use mode='autograd'")
        l, c = directional_derivatives(aux_fn, params, p, mode, fd_eps, comm)
        return _mixed_from_directional(aux_fn.combine, l, c, meta_params)
    if mode != "autograd":
        raise ValueError(f"unknown mode {mode!r}; valid: jvp, vjp, fd, autograd")
    g = graph if graph is not None else _aux_grad_graph(aux_fn, params)
    return comm.mean(_graph_vjp(g, meta_params, p, retain=graph is not None))


@renamed_kwargs(primary_index="target_index")
def lite_from_graph(
    losses: Tensor,
    primary: Callable[[Tensor], Tensor],
    combine: Callable[[Tensor], Tensor],
    params: Params,
    meta_params: Params,
    mode: Mode,
    comm: Comm = LOCAL,
    aux: CombinedObjective | None = None,
    fd_eps: float | None = None,
    target_index: int | None = None,
) -> tuple[Tensor, ...]:
    """AID-FP-Lite on one batch whose loss vector still holds its graph (the training step's own).

    Both meta batches are that batch, at the weights that produced it: ``v = dL_P/dw`` comes from the
    existing graph (no extra forward), ``l`` is ``losses``' value, and the graph is kept for the caller's
    backward. The official meta step instead draws two buffered batches and runs a forward for each.

    Args:
        losses: The loss vector ``[T]`` with its graph (under DDP: value averaged over ranks, local gradient).
        primary: Maps the loss vector to the primary objective ``L_P`` (target loss, plus regulariser).
        combine: The combiner with live meta parameters.
        mode: ``vjp``: ``c_t = <grad_w l_t, v>`` by one reverse pass per loss through the same graph;
            ``autograd``: the official ``create_graph`` path through the same graph; ``jvp``/``fd``: the
            directional derivatives of ``aux`` (the same batch evaluated again).
        target_index: When ``primary(l)`` is exactly ``l[target_index]`` (the target loss, no regulariser),
            its slope ``<v_local, v>`` needs no reverse pass of its own in ``vjp`` mode (``primary_index=``
            is its deprecated name).
    """
    if not meta_params:
        return ()
    n = len(params)
    out = primary(losses)
    grads = torch.autograd.grad(out, list(params) + list(meta_params), retain_graph=True, allow_unused=True)
    v_local = [torch.zeros_like(x) if g is None else g for g, x in zip(grads[:n], params)]
    direct = [torch.zeros_like(x) if g is None else g.detach() for g, x in zip(grads[n:], meta_params)]
    v = comm.mean([x.detach() for x in v_local])
    l = losses.detach()
    if mode == "autograd":
        with differentiable_attention():
            g = _grad(combine(losses), params, create_graph=True)
        mixed = comm.mean(_graph_vjp(g, meta_params, v))
        return _finish(direct, mixed)
    if mode == "vjp":
        (c,) = comm.mean([_slopes(losses, params, v, target_index, v_local)])
    elif mode in ("jvp", "fd"):
        if aux is None:
            raise TypeError(f"mode {mode!r} evaluates the losses again: pass aux (the batch's CombinedObjective)")
        _, c = directional_derivatives(aux, params, v, mode, fd_eps, comm)
    else:
        raise ValueError(f"unknown mode {mode!r}; valid: jvp, vjp, fd, autograd")
    return _finish(direct, _mixed_from_directional(combine, l, c, meta_params))


def _finish(direct: list[Tensor], mixed: list[Tensor], scale: float = 1.0) -> tuple[Tensor, ...]:
    """``direct - scale * mixed``."""
    return tuple(d - scale * m for d, m in zip(direct, mixed))


# --------------------------------------------------------------------------------------------------
# Schemes


@dataclass
class HypergradConfig:
    """Which hypergradient scheme to use and its options."""

    name: str = "aid_fp_lite"  # aid_fp_lite, aid_fp, aid_cg, itd, stocbio
    mode: Mode | None = None  # mixed-term computation; None = jvp for aid_fp_lite/itd, autograd otherwise
    fd_eps: float | None = None  # mode=fd: relative change of the primary loss over the first step; None = 3 sqrt(unit roundoff)
    terms: int = 3  # Neumann terms J (aid_fp, stocbio)
    alpha: float = 1.0  # Neumann step alpha_h (aid_fp) / eta (stocbio); AuxiLearn's default is 1
    cg_iters: int = 3  # conjugate-gradient iterations (aid_cg)
    cg_damping: float = 0.0  # solve (H + damping I) p = v (aid_cg)
    inner_lr: float | None = None  # itd unrolled step size; None = the backbone's current learning rate

    def validate(self) -> None:
        if self.terms < 0 or self.cg_iters < 1:
            raise ValueError("terms must be >= 0 and cg_iters >= 1")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")


class AIDFPLite:
    """MELTR's scheme: ``H^{-1} ~ I``, so ``dL_P/dphi ~ direct - M^T v`` (paper eq. 11)."""

    def __init__(self, mode: Mode = "jvp", fd_eps: float | None = None) -> None:
        self.mode, self.fd_eps = mode, fd_eps

    def __call__(self, primary_fn: Objective, aux_fn: Objective, params: Params, meta_params: Params, comm: Comm = LOCAL,
                 inner_lr: float | None = None) -> tuple[Tensor, ...]:
        v, direct = primary_grads(primary_fn, params, meta_params)
        v = comm.mean(v)
        mode = self.mode if isinstance(aux_fn, CombinedObjective) else "autograd"
        return _finish(direct, mixed_product(aux_fn, params, meta_params, v, mode, comm, self.fd_eps))


class AIDFP:
    """AuxiLearn: ``H^{-1} ~ alpha sum_{j=0..J} (I - alpha H)^j`` (Neumann series, J terms).

    AuxiLearn omits the leading ``alpha``; with its default ``alpha = 1`` the two coincide.
    """

    def __init__(self, terms: int = 3, alpha: float = 1.0, mode: Mode = "autograd", fd_eps: float | None = None) -> None:
        self.terms, self.alpha, self.mode, self.fd_eps = terms, alpha, mode, fd_eps

    def _series(self, v: list[Tensor], hvp: Callable[[list[Tensor]], list[Tensor]]) -> list[Tensor]:
        cur, acc = v, list(v)
        for _ in range(self.terms):
            cur = _add(cur, hvp(cur), alpha=-self.alpha)
            acc = _add(acc, cur)
        return [self.alpha * a for a in acc]

    def __call__(self, primary_fn: Objective, aux_fn: Objective, params: Params, meta_params: Params, comm: Comm = LOCAL,
                 inner_lr: float | None = None) -> tuple[Tensor, ...]:
        v, direct = primary_grads(primary_fn, params, meta_params)
        v = comm.mean(v)
        g = _aux_grad_graph(aux_fn, params)
        p = self._series(v, lambda x: comm.mean(_graph_vjp(g, params, x)))
        graph = g if self.mode == "autograd" else None
        return _finish(direct, mixed_product(aux_fn, params, meta_params, p, self.mode, comm, self.fd_eps, graph))


class StocBiO:
    """StocBiO: the Neumann estimate with a fresh mini-batch Hessian in every factor.

    ``H^{-1} v ~ eta sum_{q=0..Q} prod_{j<=q} (I - eta H_j) v``, with ``H_j`` evaluated on
    ``aux_fn.sample()`` (a new batch each time) when the objective provides one.
    """

    def __init__(self, terms: int = 3, eta: float = 1.0, mode: Mode = "autograd", fd_eps: float | None = None) -> None:
        self.terms, self.eta, self.mode, self.fd_eps = terms, eta, mode, fd_eps

    def __call__(self, primary_fn: Objective, aux_fn: Objective, params: Params, meta_params: Params, comm: Comm = LOCAL,
                 inner_lr: float | None = None) -> tuple[Tensor, ...]:
        v, direct = primary_grads(primary_fn, params, meta_params)
        v = comm.mean(v)
        cur, acc = v, list(v)
        for _ in range(self.terms):
            sampled = aux_fn.sample() if isinstance(aux_fn, CombinedObjective) else aux_fn
            g = _aux_grad_graph(sampled, params)
            cur = _add(cur, comm.mean(_graph_vjp(g, params, cur, retain=False)), alpha=-self.eta)
            acc = _add(acc, cur)
        p = [self.eta * a for a in acc]
        return _finish(direct, mixed_product(aux_fn, params, meta_params, p, self.mode, comm, self.fd_eps))


class AIDCG:
    """AID-CG: solve ``(H + damping I) p = v`` with a few conjugate-gradient steps on HVPs."""

    def __init__(self, iters: int = 3, damping: float = 0.0, mode: Mode = "autograd", fd_eps: float | None = None) -> None:
        self.iters, self.damping, self.mode, self.fd_eps = iters, damping, mode, fd_eps

    def __call__(self, primary_fn: Objective, aux_fn: Objective, params: Params, meta_params: Params, comm: Comm = LOCAL,
                 inner_lr: float | None = None) -> tuple[Tensor, ...]:
        v, direct = primary_grads(primary_fn, params, meta_params)
        v = comm.mean(v)
        g = _aux_grad_graph(aux_fn, params)

        def apply_h(x: list[Tensor]) -> list[Tensor]:
            hx = comm.mean(_graph_vjp(g, params, x))
            return _add(hx, x, alpha=self.damping) if self.damping else hx

        p = [torch.zeros_like(x) for x in v]
        r = list(v)  # residual v - H p with p = 0
        d = list(r)
        rr = _dot(r, r)
        for _ in range(self.iters):
            if float(rr) <= torch.finfo(rr.dtype).tiny:
                break
            hd = apply_h(d)
            dhd = _dot(d, hd)
            if float(dhd) == 0.0 or not math.isfinite(float(dhd)):
                break  # degenerate curvature along d: keep the current iterate
            step = rr / dhd
            p = _add(p, [step * x for x in d])
            r = _add(r, [step * x for x in hd], alpha=-1.0)
            rr_new = _dot(r, r)
            d = _add(r, [(rr_new / rr) * x for x in d])
            rr = rr_new
        graph = g if self.mode == "autograd" else None
        return _finish(direct, mixed_product(aux_fn, params, meta_params, p, self.mode, comm, self.fd_eps, graph))


class ITD:
    """One differentiable unrolled step (Meta-Weight-Net): ``w' = w - lr grad_w L_aux(w; phi)``,
    hypergradient ``d/dphi L_P(w'(phi), phi) = direct(w') - lr M(w)^T grad_w L_P(w')``.

    ``lr`` is the scheme's own ``inner_lr`` when set, else the ``inner_lr`` of the call (the backbone's
    current learning rate, which :class:`meltr.MetaLearner` passes).
    """

    def __init__(self, inner_lr: float | None = None, mode: Mode = "jvp", fd_eps: float | None = None) -> None:
        self.inner_lr, self.mode, self.fd_eps = inner_lr, mode, fd_eps

    def __call__(self, primary_fn: Objective, aux_fn: Objective, params: Params, meta_params: Params, comm: Comm = LOCAL,
                 inner_lr: float | None = None) -> tuple[Tensor, ...]:
        lr = self.inner_lr if self.inner_lr is not None else inner_lr
        if lr is None:
            raise ValueError("the itd scheme needs the backbone learning rate: pass lr= to MetaLearner.step / maybe_step "
                             "(meltr.Trainer does), or set meta.hypergrad.inner_lr")
        mode = self.mode if isinstance(aux_fn, CombinedObjective) else "autograd"
        if mode == "autograd":
            g = _aux_grad_graph(aux_fn, params)
            step = comm.mean([x.detach() for x in g])
        else:
            g = None
            with torch.enable_grad():
                step = comm.mean([x.detach() for x in _grad(aux_fn(params), params)])
        w_next = [(p.detach() - lr * s).requires_grad_(True) for p, s in zip(params, step)]
        v, direct = primary_grads(primary_fn, w_next, meta_params)
        v = comm.mean(v)
        return _finish(direct, mixed_product(aux_fn, params, meta_params, v, mode, comm, self.fd_eps, g), lr)


HYPERGRADS: Registry[Callable[[HypergradConfig], Hypergradient]] = Registry("hypergradient")


@HYPERGRADS.register("aid_fp_lite")
def _aid_fp_lite(cfg: HypergradConfig) -> Hypergradient:
    return AIDFPLite(cfg.mode or "jvp", cfg.fd_eps)


@HYPERGRADS.register("aid_fp")
def _aid_fp(cfg: HypergradConfig) -> Hypergradient:
    return AIDFP(cfg.terms, cfg.alpha, cfg.mode or "autograd", cfg.fd_eps)


@HYPERGRADS.register("aid_cg")
def _aid_cg(cfg: HypergradConfig) -> Hypergradient:
    return AIDCG(cfg.cg_iters, cfg.cg_damping, cfg.mode or "autograd", cfg.fd_eps)


@HYPERGRADS.register("itd")
def _itd(cfg: HypergradConfig) -> Hypergradient:
    return ITD(cfg.inner_lr, cfg.mode or "jvp", cfg.fd_eps)


@HYPERGRADS.register("stocbio")
def _stocbio(cfg: HypergradConfig) -> Hypergradient:
    return StocBiO(cfg.terms, cfg.alpha, cfg.mode or "autograd", cfg.fd_eps)


def build_hypergrad(cfg: HypergradConfig) -> Hypergradient:
    """Builds the scheme ``cfg.name`` from the registry."""
    cfg.validate()
    return HYPERGRADS.get(cfg.name)(cfg)
