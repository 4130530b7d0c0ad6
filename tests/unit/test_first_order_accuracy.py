"""The first-order AID-FP-Lite modes (``vjp``, ``fd``) against the exact official-style one (``autograd``)
in float32 and under bf16 autocast, on each backbone's tiny model with the official (golden) weights and on
the generic benchmark network.

The bar of issue 13: every hypergradient tensor within 1e-3 of its largest entry and cosine >= 0.999.
``vjp`` is exact (it meets the bar with four orders to spare); ``fd`` is an estimate whose float32 error
was measured at 1e-4 to 6e-3 of a tensor's largest entry with cosine >= 0.99999 (VIOLET is the worst: a
kink in its video losses within 1e-4 of the weights along ``v`` forces small steps), so it is held to
1e-2 and 0.9999. The finite difference this replaced (a step of ``cbrt(eps) * |w|``) was off by 80% to
124% of the largest entry, cosine -0.1 to 0.8: both bars catch it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from meltr.hypergrad import AIDFPLite, CombinedObjective, SumObjective
from meltr.interface import stack_losses
from meltr.loss_transformer import LossTransformer, preset

Case = Callable[[], tuple[nn.Module, list[dict[str, Tensor]], str]]


def _univl() -> tuple[nn.Module, list[dict[str, Tensor]], str]:
    from tests.golden._univl import golden_model, random_batch

    model = golden_model("pretrain_stage_two")
    return model, [random_batch(model.cfg, 4, seed=s) for s in (0, 1)], "univl"


def _violet() -> tuple[nn.Module, list[dict[str, Tensor]], str]:
    from tests.golden._violet import golden_batch, golden_model

    return golden_model("retrieval"), [golden_batch("retrieval")] * 2, "violet_retrieval"


def _allinone() -> tuple[nn.Module, list[dict[str, Tensor]], str]:
    from tests.golden._allinone import golden_batch, golden_model

    return golden_model(), [golden_batch()] * 2, "allinone"


def _bench() -> tuple[nn.Module, list[dict[str, Tensor]], str]:
    from benchmarks.meta_step import BenchBackbone, _batch

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    return BenchBackbone(64, 2).train(), [_batch(g, 8, 16) for _ in range(2)], "univl"  # dropout on: the random state is replayed


CASES: dict[str, Case] = {"univl": _univl, "violet": _violet, "allinone": _allinone, "bench": _bench}


def _objectives(case: str, dtype: torch.dtype, gamma: float):
    """The meta step's two objectives on the case's model: primary (+ regulariser) on batch 0, MELTR on batch 1."""
    model, batches, name = CASES[case]()
    model = model.to(dtype)
    batches = [{k: v.to(dtype) if v.is_floating_point() else v for k, v in b.items()} for b in batches]
    torch.manual_seed(0)
    # Combiner dropout off: its masks would be drawn at different points by the different modes.
    comb = LossTransformer(preset(name, num_tasks=len(model.loss_names), residual="none", dropout=0.0), model.loss_names).to(dtype)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    pi = model.loss_names.index(model.target_loss)

    def losses_on(batch: dict[str, Tensor]) -> Callable:
        return lambda ps: stack_losses(functional_call(model, dict(zip(names, ps)), (batch,)), model.loss_names)

    lv, lt = losses_on(batches[0]), losses_on(batches[1])
    def frozen(l: Tensor) -> Tensor:
        return functional_call(comb, {n: p.detach() for n, p in comb.named_parameters()}, (l,))

    primary = SumObjective(lambda ps: lv(ps)[pi], lambda ps: gamma * (lt(ps).sum() - frozen(lt(ps))).abs())
    return primary, CombinedObjective(lt, comb), params, list(comb.parameters())


def _hypergrad(args, mode: str, autocast: bool = False) -> tuple[Tensor, ...]:
    rng = torch.get_rng_state()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = AIDFPLite(mode)(*args)  # type: ignore[arg-type]
    torch.set_rng_state(rng)  # every mode starts from the same random state
    return out


def _error(ref: tuple[Tensor, ...], got: tuple[Tensor, ...]) -> tuple[float, float]:
    """Largest error relative to each tensor's largest entry, and the smallest cosine, over the tensors."""
    worst, cos = 0.0, 1.0
    for r, g in zip(ref, got):
        r, g = r.double().flatten(), g.double().flatten()
        if float(r.abs().max()) == 0.0:
            assert float(g.abs().max()) == 0.0
            continue
        worst = max(worst, float((g - r).abs().max() / r.abs().max()))
        cos = min(cos, float(torch.nn.functional.cosine_similarity(r, g, dim=0)))
    return worst, cos


@pytest.mark.parametrize("gamma", [0.0, 0.1])
@pytest.mark.parametrize("case", sorted(CASES))
def test_first_order_modes_match_the_exact_hypergradient_in_float32(case: str, gamma: float) -> None:
    args = _objectives(case, torch.float32, gamma)
    exact = _hypergrad(args, "autograd")
    assert max(float(x.abs().max()) for x in exact) > 0
    err, cos = _error(exact, _hypergrad(args, "vjp"))
    assert err <= 1e-4 and cos >= 0.999999, (case, err, cos)
    err, cos = _error(exact, _hypergrad(args, "fd"))
    assert err <= 1e-2 and cos >= 0.9999, (case, err, cos)


@pytest.mark.parametrize("case", ["univl", "violet", "allinone"])
def test_first_order_modes_under_bf16_autocast(case: str) -> None:
    """Under bf16 autocast no mode reproduces the float32 hypergradient: measured against it (gamma 0.1),
    the exact modes reach cosine 0.985 / 0.9999 / 0.991 (VIOLET / All-in-one / UniVL) with errors of
    1.5e-2 to 0.77 of a tensor's largest entry, ``vjp`` (fused attention kernels) 0.986 / 0.980 / 0.998,
    ``fd`` (its differenced forwards in float32) 0.9999 / 0.99998 / 0.998. The bar: the direction holds."""
    args = _objectives(case, torch.float32, 0.1)
    exact32 = _hypergrad(args, "autograd")
    for mode in ("vjp", "fd"):
        err, cos = _error(exact32, _hypergrad(args, mode, autocast=True))
        assert cos >= 0.975, (case, mode, err, cos)
