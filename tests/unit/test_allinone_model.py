"""All-in-one model mechanics on the tiny config: gradient flow, second-order and forward-mode AD against
finite differences (what MELTR's meta step needs), the primary switch, patch shuffling, init, config and
batch checks, and the official weight-decay rule."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest
import torch
from torch.func import functional_call, jvp

from backbones.allinone import AllInOne, AllInOneConfig, check_batch
from backbones.allinone.vit import random_patch_perm
from meltr.hypergrad import differentiable_attention
from meltr.optim import OptimConfig, param_groups


def _batch(cfg: AllInOneConfig, n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    length = cfg.max_text_len
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length) < lengths[:, None]).long()
    ids = torch.randint(104, cfg.vocab_size, (n, length), generator=g) * mask
    ids[:, 0], ids[torch.arange(n), lengths - 1] = 101, 102
    labels = torch.full_like(ids, -100)
    masked = ids.clone()
    labels[:, 1], masked[:, 1] = ids[:, 1], 103
    video = torch.randn(n, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    return {"video": video, "text_ids": ids, "text_mask": mask, "mlm_ids": masked, "mlm_labels": labels,
            "index": torch.arange(n)}


def test_every_parameter_but_the_pooler_gets_a_gradient_and_each_loss_reaches_its_head() -> None:
    model = AllInOne(AllInOneConfig.tiny(drop_rate=0.1, drop_path_rate=0.1)).train()
    batch = _batch(model.cfg)
    batch["mlm_ids"][0, 2] = 0  # the collator's random replacement may pick [PAD] inside a caption
    out = model(batch)
    sum(out.values()).backward()
    none = sorted(n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0)
    assert none == ["pooler.dense.bias", "pooler.dense.weight"]  # unused by both losses, as officially
    words = model.text_embeddings.word_embeddings.weight.grad
    assert torch.equal(words[0], torch.zeros_like(words[0])) and words[101].abs().sum() > 0  # padding_idx 0
    for loss, own, other in (("mlm", "mlm_score.", "txt_proj."), ("ind_itc", "txt_proj.", "mlm_score.")):
        model.zero_grad(set_to_none=True)
        model(_batch(model.cfg))[loss].backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert all(grads[n] is not None for n in grads if n.startswith(own)), loss
        assert all(grads[n] is None for n in grads if n.startswith(other)), loss


def _loss_fn(model: AllInOne, batch: dict[str, torch.Tensor]):
    names = [n for n, _ in model.named_parameters()]

    def total(*params: torch.Tensor) -> torch.Tensor:
        return sum(functional_call(model, dict(zip(names, params)), (batch,)).values())

    return total, tuple(p.detach() for p in model.parameters())


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's own jvp set-up
def test_forward_mode_and_double_backward_match_finite_differences() -> None:
    torch.manual_seed(0)
    model = AllInOne(AllInOneConfig.tiny()).double().train()
    batch = _batch(model.cfg, dtype=torch.float64)
    total, params = _loss_fn(model, batch)
    direction = tuple(torch.randn_like(p) for p in params)
    norm = sum(d.square().sum() for d in direction).sqrt()
    direction = tuple(d / norm for d in direction)  # unit length keeps the finite-difference error small
    eps = 1e-4

    def shifted(sign: float) -> tuple[torch.Tensor, ...]:
        return tuple(p + sign * eps * d for p, d in zip(params, direction))

    # Forward mode (torch.func.jvp) vs a central difference of the loss. Both derivatives run under the
    # meta step's context: forward-mode AD and double backward need SDPA's math kernel.
    with differentiable_attention():
        _, tangent = jvp(total, params, direction)
    fd = (total(*shifted(1.0)) - total(*shifted(-1.0))) / (2 * eps)
    torch.testing.assert_close(tangent, fd, rtol=1e-6, atol=1e-8)

    # Double backward: Hessian-vector product vs a central difference of the gradient.
    def grad_at(values: tuple[torch.Tensor, ...], create_graph: bool = False) -> tuple[torch.Tensor, ...]:
        leaves = tuple(v.clone().requires_grad_(True) for v in values)
        # The pooler is unused by both losses: its gradient is materialised as zeros.
        return leaves, torch.autograd.grad(total(*leaves), leaves, create_graph=create_graph, materialize_grads=True)

    with differentiable_attention():
        leaves, grads = grad_at(params, create_graph=True)
        hvp = torch.autograd.grad(sum((g * d).sum() for g, d in zip(grads, direction)), leaves, materialize_grads=True)
    _, plus = grad_at(shifted(1.0))
    _, minus = grad_at(shifted(-1.0))
    for h, a, b in zip(hvp, plus, minus):
        torch.testing.assert_close(h, (a - b) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_primary_switch_reorders_the_losses_without_changing_them() -> None:
    torch.manual_seed(1)
    paper = AllInOne(AllInOneConfig.tiny()).eval()
    fork = AllInOne(AllInOneConfig.tiny(primary="mlm")).eval()
    fork.load_state_dict(paper.state_dict())
    batch = _batch(paper.cfg)
    a, b = paper(batch), fork(batch)
    assert (paper.loss_names, paper.target_loss) == (("ind_itc", "mlm"), "ind_itc") and list(a) == ["ind_itc", "mlm"]
    assert (fork.loss_names, fork.target_loss) == (("mlm", "ind_itc"), "mlm") and list(b) == ["mlm", "ind_itc"]
    for name in a:
        assert torch.equal(a[name], b[name])


def test_patch_shuffle_is_random_in_training_and_off_in_eval() -> None:
    torch.manual_seed(2)
    cfg = AllInOneConfig.tiny(patch_shuffle=True)
    model = AllInOne(cfg)
    raster = AllInOne(cfg.replace(patch_shuffle=False))
    raster.load_state_dict(model.state_dict())
    batch = _batch(cfg)
    args = (batch["text_ids"], batch["text_mask"], batch["video"])
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.joint(*args).hidden, raster.eval().joint(*args).hidden)
        model.train()
        first, second = model.joint(*args).hidden, model.joint(*args).hidden
        assert (first - second).abs().max() > 1e-4  # a fresh permutation per call moves other patches in the roll
        # The video-only pass does not roll: its frame CLS is order-free up to rounding.
        torch.testing.assert_close(model.video_only(batch["video"]).mean[:, 0], raster.video_only(batch["video"]).mean[:, 0],
                                   rtol=0.0, atol=1e-5)
    perm = random_patch_perm(5, 16)
    assert torch.equal(perm.sort(dim=1).values, torch.arange(16).expand(5, 16))


def test_init_follows_the_official_rules() -> None:
    torch.manual_seed(3)
    model = AllInOne(AllInOneConfig.tiny(hidden_size=64, vocab_size=2048, max_text_len=40))
    vit = model.transformer
    assert torch.equal(vit.temporal_embed, torch.zeros_like(vit.temporal_embed))
    assert torch.equal(model.mlm_score.bias, torch.zeros_like(model.mlm_score.bias))
    for weight in (model.text_embeddings.word_embeddings.weight, model.mlm_score.decoder.weight,
                   vit.blocks[0].attn.qkv.weight, vit.blocks[1].mlp.fc1.weight, model.txt_proj.weight):
        assert abs(weight.std().item() - 0.02) < 0.002
    assert model.text_embeddings.word_embeddings.weight[0].abs().sum() > 0  # padding row overwritten too
    assert vit.pos_embed.abs().max() <= 2.0 and abs(vit.pos_embed.std().item() - 0.02) < 0.004
    # The patch conv keeps PyTorch's default (uniform, bound 1/sqrt(fan_in): std = bound/sqrt(3)).
    conv = vit.patch_embed.proj.weight
    bound = 1 / (3 * 8 * 8) ** 0.5
    assert conv.abs().max() <= bound and abs(conv.std().item() - bound / 3 ** 0.5) < 0.004
    for name, p in model.named_parameters():
        if name.endswith("bias") and not name.startswith("transformer.patch_embed"):
            assert torch.equal(p, torch.zeros_like(p)), name
        if "norm" in name.lower() and name.endswith("weight"):
            assert torch.equal(p, torch.ones_like(p)), name


def test_meltr_optim_decay_split_equals_the_official_name_rule() -> None:
    """Official set_schedule: no decay where the name contains bias / LayerNorm / norm / norm1 / norm2."""
    model = AllInOne(AllInOneConfig.tiny())
    groups = param_groups(model.named_parameters(), OptimConfig(weight_decay=0.01))
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    official = ("*bias*", "*LayerNorm.bias*", "*LayerNorm.weight*", "*norm.bias*", "*norm.weight*", "*norm1.*", "*norm2.*")
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (not any(fnmatchcase(name, pat) for pat in official)), name
    assert {n for n, p in model.named_parameters() if id(p) in decayed} >= {"transformer.pos_embed", "transformer.cls_token",
                                                                            "transformer.temporal_embed"}


@pytest.mark.parametrize("changes,match", [
    ({"image_size": 16}, "temporal-roll fold of 0"),
    ({"fold_div": 1}, "temporal-roll fold of 17"),
    ({"num_heads": 5}, "not a multiple of num_heads"),
    ({"image_size": 36}, "not a multiple of patch_size"),
    ({"primary": "vtm"}, "primary='vtm'"),
    ({"drop_rate": 1.0}, r"drop_rate must be in \[0, 1\)"),
    ({"temperature": 0.0}, "temperature must be > 0"),
])
def test_config_errors_name_the_field(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AllInOneConfig.tiny(**changes)


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = AllInOneConfig.tiny(primary="mlm", patch_shuffle=True)
    assert AllInOneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown keys \['hidden'\]"):
        AllInOneConfig.from_dict({"hidden": 3})


def test_bad_batches_raise_naming_the_problem() -> None:
    cfg = AllInOneConfig.tiny()
    model = AllInOne(cfg)
    batch = _batch(cfg)
    with pytest.raises(ValueError, match="missing 'mlm_labels'"):
        check_batch({k: v for k, v in batch.items() if k != "mlm_labels"}, cfg.max_text_len)
    with pytest.raises(ValueError, match="text length 13 exceeds max_text_len=12"):
        long = {k: (torch.cat([v, v[:, :1]], 1) if k in ("text_ids", "text_mask", "mlm_ids", "mlm_labels") else v)
                for k, v in batch.items()}
        check_batch(long, cfg.max_text_len)
    with pytest.raises(ValueError, match="batch sizes disagree"):
        check_batch({**batch, "video": batch["video"][:2]}, cfg.max_text_len)
    with pytest.raises(ValueError, match=r"video must be \[B, 3, 3, 32, 32\], got \(3, 2, 3, 32, 32\)"):
        model({**batch, "video": batch["video"][:, :2]})
