"""The attention switch (``attention="sdpa" | "explicit"``) over the three backbones' tiny golden models.

* eval-mode losses of ``sdpa`` equal ``explicit`` to float32 rounding (rtol 1e-5);
* ``sdpa`` really runs the fused (CPU flash) kernel, forward and backward, and ``explicit`` never calls SDPA;
* under the meta step's context (``meltr.hypergrad.differentiable_attention``, SDPA's math kernel) forward-mode
  AD and double backward work with ``sdpa`` and agree with ``explicit``;
* training with dropout runs with ``sdpa``, and SDPA's attention dropout is wired (active in ``train()``, unbiased);
* the config field is validated by name and survives the dict / YAML round trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn
from torch.func import functional_call, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import profile

from backbones.allinone import AllInOneConfig
from backbones.common.attention import AttentionImpl
from backbones.common.bert import BertConfig, MultiHeadAttention
from backbones.common.vit import QKVAttention
from backbones.univl import UniVLConfig
from backbones.violet import VioletConfig
from backbones.violet.config import SwinConfig
from meltr import config as meltr_config
from meltr.hypergrad import differentiable_attention
from tests.golden import _allinone, _univl, _violet

# float32 eval outputs of the two paths differ only in summation order / where the scale is applied.
EVAL_TOL = {"rtol": 1e-5, "atol": 1e-6}
# Derivatives (JVP, Hessian-vector products) accumulate more rounding; still far below any real difference.
DERIV_TOL = {"rtol": 1e-4, "atol": 1e-5}


@dataclass(frozen=True)
class Case:
    """One backbone: its golden model (eval mode) for an attention implementation, its batch, and the config
    overrides that switch its dropouts on."""

    name: str
    build: Callable[..., nn.Module]  # build(attention, **overrides) -> golden model in eval mode
    batch: Callable[[], dict[str, Tensor]]
    dropout: dict[str, Any]


def _violet_dropout() -> dict[str, Any]:
    tiny = VioletConfig.tiny()
    return {"bert": dataclasses.replace(tiny.bert, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
            "swin": dataclasses.replace(tiny.swin, drop_path_rate=0.1)}


CASES = [
    # The UniVL fixture config already has dropout 0.1 everywhere (its numbers are taken in eval mode).
    Case("univl", lambda attention, **o: _univl.golden_model("pretrain_stage_two", attention=attention, **o),
         lambda: _univl.load_golden()["inputs"], {}),
    Case("violet", lambda attention, **o: _violet.golden_model("retrieval", attention=attention, **o),
         lambda: _violet.golden_batch("retrieval"), _violet_dropout()),
    # All-in-one has no attention-probability dropout (timm's attn_drop=0); drop_rate is its proj/MLP dropout.
    Case("allinone", lambda attention, **o: _allinone.golden_model(attention=attention, **o),
         _allinone.golden_batch, {"drop_rate": 0.1, "drop_path_rate": 0.1}),
]


def _losses(model: nn.Module, batch: dict[str, Tensor], params: dict[str, Tensor] | None = None) -> Tensor:
    out = model(batch) if params is None else functional_call(model, params, (batch,))
    return torch.stack(list(out.values()))


def _sdpa_ops(fn: Callable[[], None]) -> set[str]:
    """Names of the scaled-dot-product-attention aten ops ``fn`` runs."""
    with profile() as prof:
        fn()
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def test_eval_losses_match_explicit(case: Case) -> None:
    batch = case.batch()
    with torch.no_grad():
        fused, explicit = _losses(case.build("sdpa"), batch), _losses(case.build("explicit"), batch)
    torch.testing.assert_close(fused, explicit, **EVAL_TOL)


def test_sdpa_runs_the_fused_kernel_forward_and_backward(case: Case) -> None:
    model, batch = case.build("sdpa"), case.batch()
    # The CPU flash kernel refuses a bias that requires grad: freeze Swin's learned relative-position tables
    # (while they train, VIOLET's window attention runs SDPA's math kernel; its BERT attention stays fused).
    for name, p in model.named_parameters():
        p.requires_grad_(not name.endswith("relative_position_bias_table"))

    def step() -> None:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if any SDPA call cannot use the flash kernel
            _losses(model, batch).sum().backward()

    ops = _sdpa_ops(step)
    assert any("flash" in op and "backward" in op for op in ops), ops
    assert any("flash" in op and "backward" not in op for op in ops), ops
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    explicit = case.build("explicit")
    assert not _sdpa_ops(lambda: _losses(explicit, batch).sum().backward())


def _params_and_tangents(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    return params, {k: torch.randn(v.shape, generator=g) * 1e-2 for k, v in params.items()}


def test_forward_mode_ad_under_the_meta_step_context_matches_explicit(case: Case) -> None:
    batch, results = case.batch(), []
    for attention in ("sdpa", "explicit"):
        model = case.build(attention)
        params, tangents = _params_and_tangents(model)
        with differentiable_attention():
            results.append(jvp(lambda p, model=model: _losses(model, batch, p), (params,), (tangents,)))
    (fused_value, fused_tangent), (explicit_value, explicit_tangent) = results
    torch.testing.assert_close(fused_value, explicit_value, **EVAL_TOL)
    torch.testing.assert_close(fused_tangent, explicit_tangent, **DERIV_TOL)
    assert bool((fused_tangent != 0).any())


def test_double_backward_under_the_meta_step_context_matches_explicit(case: Case) -> None:
    batch, results = case.batch(), []
    for attention in ("sdpa", "explicit"):
        model = case.build(attention)
        params, direction = _params_and_tangents(model)
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        with differentiable_attention():
            grads = torch.autograd.grad(_losses(model, batch, leaves).sum(), list(leaves.values()), create_graph=True,
                                        materialize_grads=True)
            gd = sum((g * direction[k]).sum() for k, g in zip(leaves, grads))
            hvp = torch.autograd.grad(gd, list(leaves.values()), materialize_grads=True)
        results.append(torch.cat([h.flatten() for h in hvp]))
    fused, explicit = results
    torch.testing.assert_close(fused, explicit, rtol=DERIV_TOL["rtol"], atol=DERIV_TOL["atol"] * float(explicit.abs().max()))
    assert bool((fused != 0).any())


def test_train_mode_with_dropout_runs_forward_and_backward(case: Case) -> None:
    model, batch = case.build("sdpa", **case.dropout).train(), case.batch()
    torch.manual_seed(0)
    first = _losses(model, batch)
    first.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(first).all() and grads and all(torch.isfinite(g).all() for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)
    with torch.no_grad():
        torch.manual_seed(1)
        other = _losses(model, batch)
        evaluated = _losses(model.eval(), batch)
    assert not torch.equal(first.detach(), other) and not torch.equal(first.detach(), evaluated)  # dropout is on


def _bert_attention(attention: AttentionImpl) -> nn.Module:
    cfg = BertConfig(hidden_size=8, num_attention_heads=2, attention_probs_dropout_prob=0.5, attention=attention)
    return MultiHeadAttention(cfg)


def _vit_attention(attention: AttentionImpl) -> nn.Module:
    return QKVAttention(8, 2, attn_drop=0.5, attention=attention)


@pytest.mark.parametrize("build", [_bert_attention, _vit_attention], ids=["bert", "vit"])
@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_attention_dropout_is_active_in_training_and_unbiased(build: Callable[[AttentionImpl], nn.Module],
                                                              attention: AttentionImpl) -> None:
    """The SDPA path draws other random numbers than nn.Dropout, but with the same rate: train outputs differ
    from eval, and their mean over many draws is the eval output (inverted dropout is unbiased)."""
    torch.manual_seed(0)
    module = build(attention).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    bias = torch.zeros(1, 1, 1, 5, dtype=torch.float64)
    with torch.no_grad():
        want = module.eval()(x, bias)
        draws = torch.stack([module.train()(x, bias) for _ in range(4000)])
    assert not torch.allclose(draws[0], want)
    torch.testing.assert_close(draws.mean(0), want, rtol=0, atol=0.05 * float(want.abs().max()))


def test_bad_values_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"text\.attention must be one of \('sdpa', 'explicit'\), got 'flash'"):
        UniVLConfig.tiny(text=BertConfig(hidden_size=32, num_attention_heads=4, attention="flash"))  # type: ignore[arg-type]
    tiny = VioletConfig.tiny()
    with pytest.raises(ValueError, match=r"swin\.attention .* got 'SDPA'"):
        tiny.replace(swin=dataclasses.replace(tiny.swin, attention="SDPA"))
    with pytest.raises(ValueError, match=r"bert\.attention .* got None"):
        tiny.replace(bert=dataclasses.replace(tiny.bert, attention=None))
    with pytest.raises(ValueError, match=r"AllInOneConfig\.attention .* got 'math'"):
        AllInOneConfig.tiny(attention="math")
    with pytest.raises(ValueError, match=r"QKVAttention\.attention .* got 'fused'"):
        QKVAttention(8, 2, attention="fused")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"BertConfig\.attention .* got 'fused'"):
        MultiHeadAttention(BertConfig(attention="fused"))  # type: ignore[arg-type]
    # The YAML loader's type check sees the Literal too.
    with pytest.raises(meltr_config.ConfigError, match="attention"):
        meltr_config.from_dict({"attention": "fused"}, SwinConfig)


def test_the_field_round_trips_through_dict_and_yaml() -> None:
    tiny = UniVLConfig.tiny()
    univl = tiny.replace(cross=dataclasses.replace(tiny.cross, attention="explicit"))
    violet_tiny = VioletConfig.tiny()
    violet = violet_tiny.replace(swin=dataclasses.replace(violet_tiny.swin, attention="explicit"))
    allinone = AllInOneConfig.tiny(attention="explicit")
    for cfg in (univl, violet, allinone):
        assert meltr_config.from_dict(yaml.safe_load(yaml.safe_dump(meltr_config.to_dict(cfg))), type(cfg)) == cfg
    assert (univl.text.attention, univl.cross.attention) == ("sdpa", "explicit")
    assert (violet.swin.attention, violet.bert.attention) == ("explicit", "sdpa")
    assert allinone.text_config().attention == "explicit"


@pytest.mark.parametrize("config", ["configs/univl/youcook_retrieval.yaml", "configs/violet/msrvtt7k_retrieval.yaml",
                                    "configs/allinone/msrvtt7k_retrieval.yaml"])
def test_run_configs_select_the_attention_of_every_tower(config: str) -> None:
    """``model.attention`` in a run's YAML reaches every nested backbone config that has the field."""
    import dataclasses
    from pathlib import Path

    from meltr.config import ConfigError, load
    from scripts.run_config import load_run

    root = Path(__file__).resolve().parents[2]
    path = str(root / config)
    mod = load_run(path)[0]

    def fields(cfg: object) -> list[str]:
        out = []
        for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
            value = getattr(cfg, f.name)
            if f.name == "attention":
                out.append(value)
            elif dataclasses.is_dataclass(value):
                out += fields(value)
        return out

    for impl in ("sdpa", "explicit"):
        run = load(path, mod.RunConfig, [f"model.attention={impl}", "model.size=tiny"])
        model_cfg = mod.model_config(run.model, run.data)
        seen = fields(model_cfg)
        assert seen and set(seen) == {impl}, seen
    with pytest.raises(ConfigError, match="model.attention"):
        load(path, mod.RunConfig, ["model.attention=flash"])
