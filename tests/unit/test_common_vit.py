"""backbones/common/vit.py against torch's own multi-head attention and hand-built references."""

import pytest
import torch
from torch import nn

from backbones.common.vit import DropPath, Mlp, QKVAttention, drop_path, init_vit_weights
from meltr.hypergrad import differentiable_attention


def _reference(attn: QKVAttention, dim: int, heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(dim, heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.qkv.weight)
        ref.in_proj_bias.copy_(attn.qkv.bias)
        ref.out_proj.weight.copy_(attn.proj.weight)
        ref.out_proj.bias.copy_(attn.proj.bias)
    return ref.eval()


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_attention_matches_torch_multihead_attention_with_padding_mask(attention):
    torch.manual_seed(0)
    attn = QKVAttention(16, 4, attention=attention).double().eval()
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    pad = torch.tensor([[0] * 7, [0] * 5 + [1] * 2, [0] * 3 + [1] * 4], dtype=torch.bool)
    bias = torch.zeros(3, 1, 1, 7, dtype=torch.float64).masked_fill(pad[:, None, None, :], float("-inf"))
    want, _ = _reference(attn, 16, 4)(x, x, x, key_padding_mask=pad, need_weights=False)
    torch.testing.assert_close(attn(x, bias), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_windowed_bias_equals_per_window_loop(attention):
    torch.manual_seed(1)
    attn = QKVAttention(8, 2, attention=attention).double().eval()
    groups, windows, n = 2, 3, 5
    x = torch.randn(groups * windows, n, 8, dtype=torch.float64)
    rel = torch.randn(2, n, n, dtype=torch.float64)
    mask = torch.randn(windows, n, n, dtype=torch.float64)
    got = attn(x, (rel[None] + mask[:, None])[None])
    rows = [attn(x[i:i + 1], rel + mask[i % windows]) for i in range(groups * windows)]
    torch.testing.assert_close(got, torch.cat(rows), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="multiple"):
        attn(x[:4], (rel[None] + mask[:, None])[None])


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_attention_supports_double_backward_and_forward_ad(attention):
    """Under the meta step's context (SDPA's math kernel), as MELTR differentiates."""
    torch.manual_seed(2)
    attn = QKVAttention(8, 2, attention=attention).double()
    x = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    with differentiable_attention():
        (g,) = torch.autograd.grad(attn(x).square().sum(), x, create_graph=True)
        g.sum().backward()
        out, tangent = torch.func.jvp(lambda t: attn(t), (x.detach(),), (torch.ones_like(x),))
    assert attn.qkv.weight.grad is not None and attn.qkv.weight.grad.abs().sum() > 0
    assert out.shape == tangent.shape == x.shape


def test_mlp_keys_and_forward():
    mlp = Mlp(4, 16).double().eval()
    assert set(mlp.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    x = torch.randn(3, 4, dtype=torch.float64)
    want = nn.functional.linear(nn.functional.gelu(nn.functional.linear(x, mlp.fc1.weight, mlp.fc1.bias)),
                                mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(mlp(x), want)


def test_drop_path_is_identity_in_eval_and_unbiased_in_train():
    x = torch.ones(20000, 3)
    layer = DropPath(0.25)
    assert torch.equal(layer.eval()(x), x)
    y = layer.train()(x)
    rows = y[:, 0]
    kept = rows[rows != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.75))
    assert torch.equal(y, rows[:, None].expand_as(y))  # whole samples are dropped
    assert abs(rows.mean().item() - 1.0) < 0.03
    assert torch.equal(drop_path(x, 0.0, True), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_init_vit_weights():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(200, 300), nn.LayerNorm(5))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    model.apply(init_vit_weights)
    w = model[0].weight
    # timm truncates at +-2 in absolute units (not in stds), so at std 0.02 this is a plain normal
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    assert torch.equal(model[0].bias, torch.zeros(300)) and torch.equal(model[1].weight, torch.ones(5))
