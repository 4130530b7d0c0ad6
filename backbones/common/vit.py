"""Vision-transformer building blocks with timm's parameter names, shared by VIOLET's Video Swin and All-in-one's ViT.

Both official models build on timm (0.4.x era) layers: a fused ``qkv`` projection followed by ``proj``, an
``Mlp`` of ``fc1`` / GELU / ``fc2``, and stochastic depth (``DropPath``). The modules here keep those names so
official checkpoints map by identity, and they add nothing either model lacks. What differs between the two
models (windowing and relative-position bias in Swin, temporal token rolling in All-in-one) lives in each backbone
and reaches the attention only through an additive score bias.

Attention runs ``F.scaled_dot_product_attention`` by default (``attention="sdpa"``) or the original written-out
``matmul``/``softmax`` (``"explicit"``); :mod:`backbones.common.attention` says when the two differ (forward-mode
AD and double backward need the math kernel; training dropout draws other random numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from backbones.common.attention import AttentionImpl, check_attention, sdpa_attention

__all__ = ["drop_path", "DropPath", "Mlp", "QKVAttention", "init_vit_weights"]


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``p``, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (no parameters, active only in ``train()``)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """``fc1`` -> GELU (erf) -> dropout -> ``fc2`` -> dropout, as timm's ``Mlp``."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class QKVAttention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` Linear and an output ``proj`` (timm key names).

    ``forward(x, bias)`` adds ``bias`` to the scaled scores before the softmax. ``bias`` broadcasts against the
    scores ``[B, heads, N, N]`` (a padding mask of ``-inf``/``0`` as ``[B, 1, 1, N]``, a relative-position table
    as ``[heads, N, N]``), or is 5-D ``[G or 1, W, heads, N, N]`` for windowed inputs, where the batch holds
    ``B = G * W`` windows in groups of ``W`` (Swin's shifted-window mask, one per window position).
    ``attention`` picks the implementation (:mod:`backbones.common.attention`).
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, attention: AttentionImpl = "sdpa") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        check_attention(attention, "QKVAttention.attention")
        self.attention = attention
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        window_bias = bias if bias is not None and bias.ndim == 5 else None  # the 5-D windowed form, else None
        windows = window_bias.shape[1] if window_bias is not None else 1
        if b % windows:
            raise ValueError(f"batch of {b} windows is not a multiple of the bias's {windows} windows")
        if self.attention == "sdpa" and window_bias is not None:
            # The fused kernels take 4-D inputs: fold each group's windows into the head axis
            # ([G, W·heads, N, d]) so the [G or 1, W, heads, N, N] bias applies without a per-group copy.
            fold = (b // windows, windows * self.num_heads, n, self.head_dim)
            out = sdpa_attention(q.reshape(fold), k.reshape(fold), v.reshape(fold), window_bias.flatten(1, 2),
                                 self.attn_drop, self.scale).view(b, self.num_heads, n, self.head_dim)
        elif self.attention == "sdpa":
            out = sdpa_attention(q, k, v, bias, self.attn_drop, self.scale)
        else:
            scores = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                if bias.ndim == 5:
                    scores = (scores.view(b // windows, windows, self.num_heads, n, n) + bias).view(b, self.num_heads, n, n)
                else:
                    scores = scores + bias
            attn = self.attn_drop(scores.softmax(dim=-1))
            out = attn @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


def init_vit_weights(module: nn.Module, std: float = 0.02) -> None:
    """timm's ViT init, applied with ``model.apply``: Linear weights truncated-normal(std), biases 0, LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
