"""Fast AID-FP-Lite (JVP or finite differences through the backbone, double backward through the
combiner only) equals the official create_graph path on real networks (float64, dropout 0)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from meltr.hypergrad import AIDCG, AIDFP, ITD, AIDFPLite, CombinedObjective, SumObjective, mixed_product
from meltr.interface import stack_losses
from meltr.loss_transformer import LossTransformer, LossTransformerConfig
from tests.toy_models import TinyTransformer, ToyRegression, regression_batches, token_batches


def _setup(model_cls, batches, gamma: float, seed: int = 0):
    torch.manual_seed(seed)
    model = model_cls().double()
    comb = LossTransformer(LossTransformerConfig(num_tasks=3, hidden_dim=32, ffn_dim=32, scale_hidden_dim=16, dropout=0.0, residual="none"), model.loss_names).double()
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]

    def losses_of(batch):
        return lambda ps: stack_losses(functional_call(model, dict(zip(names, ps)), (batch,)), model.loss_names)

    lv, lt = losses_of(batches[0]), losses_of(batches[1])
    def frozen(l):
        return functional_call(comb, {n: p.detach() for n, p in comb.named_parameters()}, (l,))

    def reg(ps):
        return gamma * (lt(ps).sum() - frozen(lt(ps))).abs()

    primary = SumObjective(lambda ps: lv(ps)[0], reg)
    aux = CombinedObjective(lt, comb)
    return primary, aux, params, list(comb.parameters())


@pytest.mark.parametrize("model", ["regression", "transformer"])
@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_fast_lite_equals_official_create_graph_path(model: str, gamma: float) -> None:
    if model == "regression":
        batches = [{k: v.double() for k, v in b.items()} for b in regression_batches(2, 16)]
        args = _setup(ToyRegression, batches, gamma)
    else:
        args = _setup(TinyTransformer, token_batches(2, 8), gamma)
    ref = AIDFPLite("autograd")(*args)
    jvp = AIDFPLite("jvp")(*args)
    vjp = AIDFPLite("vjp")(*args)
    fd = AIDFPLite("fd")(*args)
    scale = max(r.abs().max() for r in ref)
    assert scale > 0
    for r, j, b, f in zip(ref, jvp, vjp, fd):
        torch.testing.assert_close(j, r, rtol=1e-9, atol=1e-11 * scale)
        torch.testing.assert_close(b, r, rtol=1e-9, atol=1e-11 * scale)
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-6 * scale)


def test_mixed_product_modes_agree_for_an_arbitrary_direction() -> None:
    _, aux, params, meta = _setup(TinyTransformer, token_batches(2, 8, seed=3), 0.0)
    g = torch.Generator().manual_seed(1)
    p = [torch.randn(x.shape, generator=g, dtype=x.dtype) for x in params]
    ref = mixed_product(aux, params, meta, p, "autograd")
    for mode in ("jvp", "vjp"):
        for r, j in zip(ref, mixed_product(aux, params, meta, p, mode)):
            torch.testing.assert_close(j, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scheme", [lambda m: AIDFP(2, 0.1, m), lambda m: AIDCG(2, 0.0, m), lambda m: ITD(0.05, m)])
def test_other_schemes_fast_mixed_term_equals_autograd(scheme) -> None:
    args = _setup(TinyTransformer, token_batches(2, 8, seed=5), 0.1)
    for r, j in zip(scheme("autograd")(*args), scheme("jvp")(*args)):
        torch.testing.assert_close(j, r, rtol=1e-8, atol=1e-11)


def test_fast_lite_does_not_double_backward_through_the_backbone() -> None:
    # Count reverse passes that reach the backbone's first weight: both paths take one per primary
    # term (2 here) for v; only the official path adds the create_graph gradient of L_aux.
    primary, aux, params, meta = _setup(ToyRegression, [{k: v.double() for k, v in b.items()} for b in regression_batches(2, 16)], 0.0)
    calls = {"n": 0}
    handle = params[0].register_hook(lambda g: calls.__setitem__("n", calls["n"] + 1))
    AIDFPLite("jvp")(primary, aux, params, meta)
    fast = calls["n"]
    calls["n"] = 0
    AIDFPLite("autograd")(primary, aux, params, meta)
    handle.remove()
    assert fast == 2 and calls["n"] == 3
