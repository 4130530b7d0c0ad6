"""Hypergradient schemes against closed forms on a quadratic bi-level problem (float64).

Inner problem: T quadratic losses ``l_t(w) = 1/2 w^T A_t w - b_t^T w`` combined linearly,
``L_aux(w; phi) = sum_t phi_t l_t(w)``, so ``H = sum_t phi_t A_t`` and the mixed term has columns
``M[:, t] = A_t w - b_t``. Outer problem: ``L_P(w, phi) = 1/2 |w - w0|^2 + kappa/2 |phi|^2`` (a
direct term). Every reference below is computed with numpy, independently of meltr.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meltr.combiners import LinearCombiner
from meltr.hypergrad import (
    AIDCG,
    AIDFP,
    HYPERGRADS,
    ITD,
    AIDFPLite,
    CombinedObjective,
    HypergradConfig,
    StocBiO,
    SumObjective,
    build_hypergrad,
)

N, T, KAPPA = 6, 3, 0.3


def _spd(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q @ np.diag(rng.uniform(lo, hi, n)) @ q.T


class Quadratic:
    def __init__(self, seed: int = 0, identity_hessian: bool = False) -> None:
        rng = np.random.default_rng(seed)
        if identity_hessian:
            # phi = (0.5, 0.5, 0) and A_1 + A_2 = 2 I  =>  H = I.
            s = rng.standard_normal((N, N)) * 0.2
            s = s + s.T
            self.A = [np.eye(N) + s, np.eye(N) - s, _spd(rng, N, 0.5, 2.0)]
            self.phi = np.array([0.5, 0.5, 0.0])
        else:
            self.A = [_spd(rng, N, 0.5, 2.0) for _ in range(T)]
            self.phi = rng.uniform(0.5, 1.5, T)
        self.b = [rng.standard_normal(N) for _ in range(T)]
        self.w = rng.standard_normal(N)
        self.w0 = rng.standard_normal(N)

    # ---- numpy references
    def H(self) -> np.ndarray:
        return sum(p * a for p, a in zip(self.phi, self.A))

    def M(self, w: np.ndarray) -> np.ndarray:
        return np.stack([a @ w - b for a, b in zip(self.A, self.b)], axis=1)

    def v(self, w: np.ndarray) -> np.ndarray:
        return w - self.w0

    def direct(self) -> np.ndarray:
        return KAPPA * self.phi

    def exact(self) -> np.ndarray:
        return self.direct() - self.M(self.w).T @ np.linalg.solve(self.H(), self.v(self.w))

    # ---- torch objectives
    def torch_setup(self) -> tuple[list[torch.Tensor], LinearCombiner, CombinedObjective, SumObjective]:
        A = [torch.tensor(a) for a in self.A]
        b = [torch.tensor(x) for x in self.b]
        comb = LinearCombiner([f"l{i}" for i in range(T)]).double()
        with torch.no_grad():
            comb.weight.copy_(torch.tensor(self.phi))
        w = torch.tensor(self.w, requires_grad=True)
        w0 = torch.tensor(self.w0)

        def losses(ps):
            (x,) = ps
            return torch.stack([0.5 * x @ a @ x - bb @ x for a, bb in zip(A, b)])

        aux = CombinedObjective(losses, comb)
        primary = SumObjective(lambda ps: 0.5 * ((ps[0] - w0) ** 2).sum(), lambda ps: 0.5 * KAPPA * (comb.weight**2).sum())
        return [w], comb, aux, primary


def _run(hg, q: Quadratic) -> np.ndarray:
    params, comb, aux, primary = q.torch_setup()
    (g,) = hg(primary, aux, params, [comb.weight])
    return g.detach().numpy()


@pytest.mark.parametrize("mode", ["jvp", "vjp", "fd", "autograd"])
def test_aid_fp_lite_is_exact_when_hessian_is_identity(mode: str) -> None:
    q = Quadratic(identity_hessian=True)
    np.testing.assert_allclose(q.H(), np.eye(N), atol=1e-12)
    tol = 1e-6 if mode == "fd" else 1e-10
    np.testing.assert_allclose(_run(AIDFPLite(mode), q), q.exact(), rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["jvp", "vjp", "fd", "autograd"])
def test_aid_fp_lite_matches_its_closed_form(mode: str) -> None:
    q = Quadratic(seed=1)
    lite = q.direct() - q.M(q.w).T @ q.v(q.w)
    tol = 1e-6 if mode == "fd" else 1e-10
    np.testing.assert_allclose(_run(AIDFPLite(mode), q), lite, rtol=tol, atol=tol)
    assert not np.allclose(lite, q.exact(), rtol=1e-2)  # the approximation is not exact in general


def test_aid_cg_converges_to_exact() -> None:
    q = Quadratic(seed=2)
    np.testing.assert_allclose(_run(AIDCG(iters=N), q), q.exact(), rtol=1e-8, atol=1e-8)
    # fewer iterations: further from exact
    err1 = np.abs(_run(AIDCG(iters=1), q) - q.exact()).max()
    assert err1 > 1e-4


def test_aid_fp_neumann_matches_closed_form_and_converges() -> None:
    q = Quadratic(seed=3)
    H, v = q.H(), q.v(q.w)
    alpha = 1.0 / np.linalg.eigvalsh(H).max()
    for terms in (0, 3):
        p, cur = v.copy(), v.copy()
        for _ in range(terms):
            cur = cur - alpha * H @ cur
            p = p + cur
        ref = q.direct() - q.M(q.w).T @ (alpha * p)
        np.testing.assert_allclose(_run(AIDFP(terms, alpha), q), ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(_run(AIDFP(400, alpha), q), q.exact(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(_run(AIDFP(400, alpha, mode="jvp"), q), q.exact(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", ["jvp", "autograd"])
def test_itd_matches_its_closed_form(mode: str) -> None:
    q = Quadratic(seed=4)
    lr = 0.3
    g = q.H() @ q.w - sum(p * b for p, b in zip(q.phi, q.b))
    w_next = q.w - lr * g
    ref = q.direct() - lr * q.M(q.w).T @ q.v(w_next)
    np.testing.assert_allclose(_run(ITD(lr, mode), q), ref, rtol=1e-10, atol=1e-12)


def test_itd_equals_backprop_through_the_unrolled_step() -> None:
    q = Quadratic(seed=5)
    params, comb, aux, primary = q.torch_setup()
    lr = 0.2
    (w,) = params
    g = torch.autograd.grad(aux([w]), w, create_graph=True)[0]
    outer = primary([w - lr * g])
    (ref,) = torch.autograd.grad(outer, comb.weight)
    (got,) = ITD(lr)(primary, aux, params, [comb.weight])
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_itd_takes_the_inner_lr_from_the_call_unless_it_has_its_own() -> None:
    # The meta-learner passes the backbone's learning rate to every scheme; only itd reads it, and its
    # own inner_lr (meta.hypergrad.inner_lr) wins.
    q = Quadratic(seed=5)
    params, comb, aux, primary = q.torch_setup()
    (fixed,) = ITD(0.2)(primary, aux, params, [comb.weight])
    (passed,) = ITD()(primary, aux, params, [comb.weight], inner_lr=0.2)
    (own,) = ITD(0.2)(primary, aux, params, [comb.weight], inner_lr=0.05)
    (other,) = ITD()(primary, aux, params, [comb.weight], inner_lr=0.05)
    assert torch.equal(passed, fixed) and torch.equal(own, fixed) and not torch.allclose(other, fixed)
    with pytest.raises(ValueError, match="inner_lr"):
        ITD()(primary, aux, params, [comb.weight])


def test_stocbio_deterministic_equals_aid_fp_and_stochastic_is_unbiased() -> None:
    q = Quadratic(seed=6)
    eta = 0.5 / np.linalg.eigvalsh(q.H()).max()
    np.testing.assert_allclose(_run(StocBiO(3, eta), q), _run(AIDFP(3, eta), q), rtol=1e-10)

    # Stochastic Hessians: each sample scales the losses by an independent factor with mean 1, so
    # E[prod (I - eta H_j)] = prod (I - eta H) and the estimator's mean equals AID-FP's value.
    params, comb, aux, primary = q.torch_setup()
    gen = torch.Generator().manual_seed(0)

    def sampled() -> CombinedObjective:
        s = 0.5 + torch.rand((), generator=gen, dtype=torch.float64)  # U(0.5, 1.5), mean 1
        return CombinedObjective(lambda ps: s * aux.losses(ps), comb)

    noisy = CombinedObjective(aux.losses, comb, sample=sampled)
    draws = np.stack([StocBiO(3, eta)(primary, noisy, params, [comb.weight])[0].numpy() for _ in range(600)])
    ref = _run(AIDFP(3, eta), q)
    assert draws.std(0).max() > 1e-4  # it is stochastic
    np.testing.assert_allclose(draws.mean(0), ref, rtol=0.05, atol=5 * draws.std(0).max() / np.sqrt(600))


def test_registry_builds_every_scheme_and_rejects_unknown() -> None:
    assert set(HYPERGRADS.names()) == {"aid_fp_lite", "aid_fp", "aid_cg", "itd", "stocbio"}
    q = Quadratic(seed=7)
    for name in HYPERGRADS.names():
        hg = build_hypergrad(HypergradConfig(name=name, inner_lr=0.1, alpha=0.2))
        assert np.isfinite(_run(hg, q)).all()
    with pytest.raises(KeyError, match="aid_fp_lite"):
        build_hypergrad(HypergradConfig(name="nope"))
