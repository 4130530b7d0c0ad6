"""Every backbone of :data:`tests.contract.registry.ENTRIES` honours what MELTR relies on.

* ``forward`` returns exactly ``loss_names`` (order included), each a finite 0-dim tensor, and
  :func:`meltr.interface.check_losses` accepts it;
* each loss back-propagated alone reaches its own head and no other loss's head (timm's "No gradient for");
* the meta step's derivatives are right: ``torch.func.jvp`` through forward, and double backward
  (``create_graph=True``), each against a central finite difference in float64;
* a batch without a required key raises an error naming the key;
* eval mode is deterministic, and dropout is wired (train mode differs).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from meltr.hypergrad import differentiable_attention
from meltr.interface import MultiLossModel, check_losses
from tests.contract.registry import ENTRIES, GRAD_EPS, Entry, Tolerance, entry_ids

Losses = Callable[..., Tensor]


@pytest.fixture(scope="module", params=ENTRIES, ids=entry_ids)
def entry(request: pytest.FixtureRequest) -> Entry:
    return request.param


@pytest.fixture(scope="module")
def built(entry: Entry) -> tuple[nn.Module, dict[str, Tensor]]:
    """The entry's model (eval mode) and batch, built once per entry."""
    model = entry.build().eval()
    return model, entry.batch(model)


@pytest.fixture(scope="module")
def evaluated(built: tuple[nn.Module, dict[str, Tensor]]) -> dict[str, Tensor]:
    """One eval-mode forward of the entry's model on its batch (shared by the tests that only read it)."""
    model, batch = built
    with torch.no_grad():
        return model.eval()(batch)


def test_forward_returns_exactly_loss_names(entry: Entry, built: tuple[nn.Module, dict[str, Tensor]],
                                            evaluated: dict[str, Tensor]) -> None:
    model, out = built[0], evaluated
    assert isinstance(model, MultiLossModel)
    assert tuple(out) == model.loss_names == entry.loss_names and model.target_loss in entry.loss_names
    assert all(v.dim() == 0 and bool(torch.isfinite(v)) for v in out.values())
    check_losses(model, out)


def test_each_loss_alone_reaches_its_own_heads(entry: Entry, built: tuple[nn.Module, dict[str, Tensor]]) -> None:
    model, batch = built
    names, params = zip(*model.named_parameters())
    out = model(batch)
    reached_by_any: set[str] = set()
    for loss in entry.loss_names:
        grads = torch.autograd.grad(out[loss], params, retain_graph=True, allow_unused=True)
        reached = {n for n, g in zip(names, grads) if g is not None and bool(g.abs().sum() > GRAD_EPS)}
        reached_by_any |= reached
        for prefix in entry.reaches[loss]:
            hit = [n for n in names if n.startswith(prefix) and not (entry.never_reached(n) or entry.exempt(n))]
            assert hit and all(n in reached for n in hit), (
                f"No gradient for {loss}: {[n for n in hit if n not in reached][:5] or prefix}")
        foreign = [n for n in reached if n.startswith(entry.heads) and not n.startswith(entry.own_heads[loss])]
        assert not foreign, f"{loss} reaches other losses' heads: {sorted(foreign)[:5]}"
    never = sorted(n for n in set(names) - reached_by_any if not entry.exempt(n))
    assert never == sorted(n for n in names if entry.never_reached(n)), never


def _float64(entry: Entry, built: tuple[nn.Module, dict[str, Tensor]]) -> tuple[dict[str, Tensor], Losses, dict[str, Tensor]]:
    """(parameters, losses(parameters) -> [K], a unit-norm random direction), all float64, eval mode."""
    model = copy.deepcopy(built[0]).double().eval()
    batch = entry.small_batch(model) if entry.small_batch else built[1]
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(1)
    direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    norm = torch.cat([d.flatten() for d in direction.values()]).norm()
    direction = {k: d / norm for k, d in direction.items()}  # unit length keeps the finite-difference error small

    def losses(p: dict[str, Tensor]) -> Tensor:
        return torch.stack(list(functional_call(model, p, (batch,)).values()))

    return params, losses, direction


def _shift(params: dict[str, Tensor], direction: dict[str, Tensor], step: float) -> dict[str, Tensor]:
    return {k: p + step * direction[k] for k, p in params.items()}


def _close(exact: Tensor, fd: Tensor, tol: Tolerance) -> None:
    torch.testing.assert_close(exact, fd, rtol=tol.rtol, atol=tol.atol * float(fd.abs().max()))


def test_jvp_and_double_backward_match_finite_differences(entry: Entry, built: tuple[nn.Module, dict[str, Tensor]]) -> None:
    """The meta step's derivatives, in its math-kernel attention context, against central differences along a
    random unit direction ``d`` (one pair of evaluations at ``p ± eps·d`` serves both):

    * ``torch.func.jvp`` through forward (AID-FP-Lite) equals the difference of every loss;
    * ``create_graph=True`` gradients differentiate again (the official MELTR hypergradient): the
      Hessian-vector product of the summed losses equals the difference of the gradient.
    """
    params, losses, direction = _float64(entry, built)

    def evaluate(values: dict[str, Tensor], create_graph: bool = False) -> tuple[list[Tensor], Tensor, tuple[Tensor, ...]]:
        leaves = [v.clone().requires_grad_(True) for v in values.values()]
        out = losses(dict(zip(values, leaves)))
        return leaves, out, torch.autograd.grad(out.sum(), leaves, create_graph=create_graph, materialize_grads=True)

    with differentiable_attention():
        value, tangent = jvp(losses, (params,), (direction,))[:2]
        leaves, at_p, grads = evaluate(params, create_graph=True)
        along = torch.stack([(g * d).sum() for g, d in zip(grads, direction.values())]).sum()
        hvp = torch.autograd.grad(along, leaves, materialize_grads=True)
    eps = entry.eps
    _, plus, grad_plus = evaluate(_shift(params, direction, eps))
    _, minus, grad_minus = evaluate(_shift(params, direction, -eps))
    torch.testing.assert_close(value, at_p.detach(), rtol=1e-12, atol=1e-12)
    assert bool((tangent != 0).all())
    _close(tangent, (plus - minus).detach() / (2 * eps), entry.jvp)
    ours = torch.cat([h.flatten() for h in hvp])
    assert bool(ours.abs().max() > 0)
    _close(ours, torch.cat([((a - b) / (2 * eps)).flatten() for a, b in zip(grad_plus, grad_minus)]), entry.hvp)


def test_missing_batch_key_is_named(entry: Entry, built: tuple[nn.Module, dict[str, Tensor]]) -> None:
    model, batch = built
    broken = {k: v for k, v in batch.items() if k != entry.required_key}
    with pytest.raises(ValueError, match=re.escape(entry.required_key)):
        model(broken)


def test_eval_is_deterministic_and_dropout_is_wired(entry: Entry, built: tuple[nn.Module, dict[str, Tensor]],
                                                    evaluated: dict[str, Tensor]) -> None:
    model, batch = built
    with torch.no_grad():
        a, b = evaluated, model.eval()(batch)
        torch.manual_seed(1)
        train = model.train()(batch)
    model.eval()
    assert all(torch.equal(a[k], b[k]) for k in entry.loss_names)
    assert any(not torch.equal(a[k], train[k]) for k in entry.loss_names), "train mode equals eval: no dropout"
