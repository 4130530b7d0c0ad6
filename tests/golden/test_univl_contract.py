"""UniVL honours the MultiLossModel contract that MELTR relies on.

* ``forward`` returns exactly ``loss_names`` (order included), each a finite 0-dim tensor, and
  ``meltr.interface.check_losses`` accepts it;
* each loss back-propagated alone reaches its own head (and not the heads of other losses);
* the meta step's derivatives work: forward-mode AD (``torch.func.jvp``) agrees with reverse mode, and
  double backward (``create_graph=True``) runs;
* the documented deviations and validations behave as documented.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.func import functional_call, jvp

from backbones.common.losses import masked_cross_entropy, masked_frame_nce_loss
from backbones.univl import LOSS_NAMES, UniVL, UniVLConfig
from meltr.hypergrad import differentiable_attention
from meltr.interface import MultiLossModel, check_losses
from tests.golden._univl import golden_model, load_golden, random_batch

# Parameters (by named_parameters name; tied aliases appear under their owner) each loss must reach...
REACHES: dict[str, tuple[str, ...]] = {
    "joint": ("bert.encoder.", "visual.encoder.", "normalize_video."),
    "alignment": ("bert.encoder.", "visual.encoder.", "cross.encoder.", "cross.pooler.", "similarity_dense.weight"),
    "mlm": ("cross.encoder.", "cls.predictions.transform.", "cls.predictions.bias",
            "bert.embeddings.word_embeddings.weight"),  # = cls.predictions.decoder.weight (tied)
    "mfm": ("cross.encoder.", "cls_visual.predictions.transform.", "cls_visual.predictions.bias",
            "visual.embeddings.word_embeddings.weight", "normalize_video."),  # = cls_visual.predictions.weight
    "m_joint": ("bert.encoder.", "visual.encoder.", "normalize_video."),
    "m_align": ("cross.encoder.", "cross.pooler.", "similarity_dense.weight"),
    "decoder": ("cross.encoder.", "decoder.embeddings.LayerNorm.", "decoder.decoder.layer.",
                "decoder.classifier.cls.predictions.", "bert.embeddings.position_embeddings.weight"),
    "m_decoder": ("cross.encoder.", "decoder.decoder.layer.", "decoder.classifier.cls.predictions."),
}
# ...and the heads it must not touch.
HEADS = ("cross.", "similarity_dense.", "cls.", "cls_visual.", "decoder.")
OWN_HEADS: dict[str, tuple[str, ...]] = {
    "joint": (), "m_joint": (),
    "alignment": ("cross.", "similarity_dense."), "m_align": ("cross.", "similarity_dense."),
    "mlm": ("cross.", "cls."), "mfm": ("cross.", "cls_visual."),
    "decoder": ("cross.", "decoder."), "m_decoder": ("cross.", "decoder."),
}
# No loss reads the encoders' poolers (the official model has them too), and CrossEn (alignment,
# m_align) is invariant to adding a constant to every logit, so similarity_dense.bias gets a zero
# gradient (up to rounding) by construction. These never get a (non-negligible) gradient.
# Likewise every attention key bias: it adds q·b_k to all scores of a query row, which softmax ignores.
UNUSED = ("bert.pooler.", "visual.pooler.", "similarity_dense.bias")
GRAD_EPS = 1e-6  # |grad| sum below this counts as "not reached" (rounding noise, e.g. ~1e-8 above)


def _no_gradient_by_construction(name: str) -> bool:
    return name.startswith(UNUSED) or name.endswith("key.bias")


@pytest.fixture(scope="module")
def model() -> UniVL:
    return golden_model("pretrain_stage_two")


@pytest.fixture(scope="module")
def batch() -> dict[str, Any]:
    return load_golden()["inputs"]


def test_forward_returns_exactly_loss_names(model: UniVL, batch: dict[str, Any]) -> None:
    assert isinstance(model, MultiLossModel)
    out = model(batch)
    assert tuple(out) == model.loss_names == LOSS_NAMES
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    check_losses(model, out)


@pytest.mark.parametrize("losses", [("joint",), ("alignment", "decoder"), ("mlm", "mfm", "m_decoder"), LOSS_NAMES])
def test_subsets_on_random_batches(losses: tuple[str, ...]) -> None:
    """Any subset returns exactly itself, on a batch of another size with random lengths, in train mode."""
    target = "alignment" if "alignment" in losses else losses[0]
    cfg = UniVLConfig.tiny(losses=losses, target_loss=target)
    model = UniVL(cfg).train()
    out = model(random_batch(cfg, batch_size=3, seed=len(losses)))
    assert tuple(out) == losses and model.target_loss == target
    check_losses(model, out)


def test_each_loss_alone_reaches_its_own_heads(model: UniVL, batch: dict[str, Any]) -> None:
    names, params = zip(*model.named_parameters())
    out = model(batch)
    reached_by_any: set[str] = set()
    for loss in LOSS_NAMES:
        grads = torch.autograd.grad(out[loss], params, retain_graph=True, allow_unused=True)
        reached = {n for n, g in zip(names, grads) if g is not None and bool(g.abs().sum() > GRAD_EPS)}
        reached_by_any |= reached
        for prefix in REACHES[loss]:
            hit = [n for n in names if n.startswith(prefix) and not _no_gradient_by_construction(n)]
            assert hit and all(n in reached for n in hit), (
                f"No gradient for {loss}: {[n for n in hit if n not in reached][:5] or prefix}")
        foreign = [n for n in reached if n.startswith(HEADS) and not n.startswith(OWN_HEADS[loss])]
        assert not foreign, f"{loss} reaches other losses' heads: {sorted(foreign)[:5]}"
    never = sorted(set(names) - reached_by_any)
    assert never == sorted(n for n in names if _no_gradient_by_construction(n)), never


def test_forward_mode_ad_matches_reverse_mode(model: UniVL, batch: dict[str, Any]) -> None:
    """``torch.func.jvp`` through forward (what the AID-FP-Lite meta step uses, in its math-kernel attention
    context) equals reverse mode: for random loss weights ``w`` and parameter tangent ``v``,
    ``w · jvp(v) == ⟨∇(w · losses), v⟩``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    tangents = {k: torch.randn(v.shape, generator=g) * 1e-2 for k, v in params.items()}
    weights = torch.rand(len(LOSS_NAMES), generator=g)

    def losses(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(functional_call(model, p, (batch,)).values()))

    with differentiable_attention():
        values, directional = jvp(losses, (params,), (tangents,))
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(weights @ losses(leaves), list(leaves.values()), allow_unused=True)
    reverse = sum((gr * tangents[k]).sum() for k, gr in zip(leaves, grads) if gr is not None)
    torch.testing.assert_close(weights @ directional, reverse, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(values).all() and torch.isfinite(directional).all()


def test_double_backward(batch: dict[str, Any]) -> None:
    """``create_graph=True`` gradients can themselves be differentiated (the official MELTR hypergradient),
    under the meta step's math-kernel attention context."""
    sub = golden_model("caption", task="caption", losses=("decoder",))
    params = [p for n, p in sub.named_parameters() if n.startswith(("cross.encoder.layer.1", "decoder.decoder.layer.1"))]
    with differentiable_attention():
        grads = torch.autograd.grad(sub(batch)["decoder"], params, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in grads), params, allow_unused=True)
    assert any(s is not None and bool(s.abs().sum() > 0) for s in second)


def test_eval_is_deterministic_and_dropout_is_wired(model: UniVL, batch: dict[str, Any]) -> None:
    with torch.no_grad():
        a, b = model.eval()(batch), model(batch)
        torch.manual_seed(1)
        train = model.train()(batch)
    model.eval()
    assert all(torch.equal(a[k], b[k]) for k in LOSS_NAMES)
    assert any(not torch.equal(a[k], train[k]) for k in LOSS_NAMES)  # golden config has dropout 0.1


def test_losses_without_targets_are_zero_not_nan() -> None:
    """Documented deviation: the official mean over zero targets is NaN; ours is 0 (with a graph)."""
    logits = torch.randn(2, 5, 7, requires_grad=True)
    ce = masked_cross_entropy(logits, torch.full((2, 5), -1))
    assert ce.item() == 0.0 and ce.requires_grad
    pred = torch.randn(2, 3, 4, requires_grad=True)
    nce = masked_frame_nce_loss(pred, torch.randn(2, 3, 4), torch.ones(2, 3), torch.full((2, 3), -1))
    assert nce.item() == 0.0 and nce.requires_grad


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="unknown"):
        UniVLConfig.tiny(losses=("joint", "itm"))
    with pytest.raises(ValueError, match="order"):
        UniVLConfig.tiny(losses=("alignment", "joint"))
    with pytest.raises(ValueError, match="target_loss"):
        UniVLConfig.tiny(losses=("joint",))  # retrieval's target is alignment
    with pytest.raises(ValueError, match="task"):
        UniVLConfig.tiny(task="qa")
    with pytest.raises(ValueError, match="max_words"):
        UniVLConfig.tiny(max_words=100)


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = UniVLConfig.tiny(task="caption", losses=("mlm", "decoder"))
    plain = cfg.to_dict()
    loaded = torch.load(_save(plain), weights_only=True)  # what a checkpoint stores
    assert UniVLConfig.from_dict(loaded) == cfg
    with pytest.raises(ValueError, match="text.hidden_sise"):
        UniVLConfig.from_dict({**plain, "text": {**plain["text"], "hidden_sise": 8}})


def _save(obj: object) -> Any:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_missing_batch_key_is_named(model: UniVL, batch: dict[str, Any]) -> None:
    broken = {k: v for k, v in batch.items() if k != "output_caption_ids"}
    with pytest.raises(ValueError, match="output_caption_ids"):
        model(broken)
