"""Video Swin Transformer 3-D as VIOLET's ``video_swin.py`` builds and runs it (``SwinTransformer3D``).

Official behaviour reproduced (``shared/reference/violet.md`` §1.1), including its oddities:

* **Patch embedding**: pad H/W up to multiples of the patch, **always append one zero frame**, then a
  ``Conv3d`` with kernel (2, 4, 4) and temporal stride 1, so T frames stay T (the last one mixes in the zero
  frame), then LayerNorm over channels.
* **Effective window** (``get_window_size``): on every axis whose size is <= the window, the window shrinks to
  the size and the shift drops to 0 (with T = 5 there is never a temporal shift).
* **Shifted-window mask**: regions ``[0:-win], [-win:-shift], [-shift:]`` per axis on the padded size; pairs
  from different regions get -100. Padded tokens are zero vectors and are not masked.
* **Relative-position index**: built **once for the configured window** (8, 7, 7) and used as
  ``index[:N, :N]`` for the effective window's N tokens. When only the temporal window shrinks this is exact;
  when the spatial window shrinks (small frames) it pairs tokens with the wrong offsets. That is the upstream
  behaviour and the tiny golden fixture exercises it, so it is kept.
* **PatchMerging** concatenates ``x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]`` (on H, W), then
  LayerNorm(4C) and a bias-free Linear(4C → 2C); time is not merged.
* LayerNorm eps 1e-5 everywhere, exact GELU, stochastic depth linearly 0 … ``drop_path_rate``.

Module and parameter names are the official ones (``patch_embed.proj``, ``layers.{s}.blocks.{b}.attn.qkv``,
``relative_position_bias_table``, the persistent ``relative_position_index`` buffer, ``downsample.reduction``,
``norm``), so ``ckpt_video-swin.pt`` loads by identity. Attention, MLP and drop path are the shared
:mod:`backbones.common.vit` layers (``SwinConfig.attention`` picks fused SDPA or the explicit matmul/softmax).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from backbones.common.attention import AttentionImpl
from backbones.common.vit import DropPath, Mlp, QKVAttention
from backbones.violet.config import SwinConfig

__all__ = [
    "MASK_VALUE",
    "effective_window",
    "relative_position_index",
    "window_partition",
    "window_reverse",
    "shifted_window_mask",
    "PatchEmbed3D",
    "WindowAttention3D",
    "SwinBlock3D",
    "PatchMerging",
    "BasicLayer",
    "SwinTransformer3D",
]

Triple = tuple[int, int, int]


def _triple(values: Iterable[int]) -> Triple:
    """``values`` (exactly three: depth, height, width) as a :data:`Triple`."""
    d, h, w = values
    return d, h, w

# Additive score for query/key pairs from different shifted-window regions (official value).
MASK_VALUE = -100.0


def effective_window(size: Triple, window: Triple, shift: Triple) -> tuple[Triple, Triple]:
    """Official ``get_window_size``: an axis no longer than its window uses the whole axis and no shift."""
    win = _triple(n if n <= w else w for n, w in zip(size, window))
    sft = _triple(0 if n <= w else s for n, w, s in zip(size, window, shift))
    return win, sft


def relative_position_index(window: Triple) -> Tensor:
    """``[N, N]`` int64 index into the ``(2wd-1)(2wh-1)(2ww-1)`` bias table for the N = wd·wh·ww tokens of one
    window (row-major over d, h, w): ``(Δd + wd-1)·(2wh-1)(2ww-1) + (Δh + wh-1)·(2ww-1) + (Δw + ww-1)``."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(w) for w in window), indexing="ij")).flatten(1)  # [3, N]
    rel = coords[:, :, None] - coords[:, None, :]  # [3, N, N]
    wd, wh, ww = window
    return (rel[0] + wd - 1) * (2 * wh - 1) * (2 * ww - 1) + (rel[1] + wh - 1) * (2 * ww - 1) + (rel[2] + ww - 1)


def window_partition(x: Tensor, window: Triple) -> Tensor:
    """``[B, D, H, W, C]`` (sizes multiples of the window) → ``[B·nW, N, C]``, windows batch-major then (d, h, w)."""
    wd, wh, ww = window
    return rearrange(x, "b (d wd) (h wh) (w ww) c -> (b d h w) (wd wh ww) c", wd=wd, wh=wh, ww=ww)


def window_reverse(windows: Tensor, window: Triple, batch: int, size: Triple) -> Tensor:
    """Inverse of :func:`window_partition`: ``[B·nW, N, C]`` → ``[B, D, H, W, C]`` for the padded ``size``."""
    wd, wh, ww = window
    return rearrange(windows, "(b d h w) (wd wh ww) c -> b (d wd) (h wh) (w ww) c", b=batch,
                     d=size[0] // wd, h=size[1] // wh, wd=wd, wh=wh, ww=ww)


@functools.lru_cache(maxsize=32)
def shifted_window_mask(size: Triple, window: Triple, shift: Triple, *, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    """Official ``compute_mask`` for the padded ``size``: ``[nW, N, N]``, 0 within a region, -100 across.

    Cached per arguments like the official ``lru_cache``d function; the result is never modified.

    Along each axis the official code labels ``[0:-win]``, ``[-win:-shift]``, ``[-shift:]`` in that order; with
    shift 0 the last slice ``[-0:]`` is the whole axis and overwrites the others, so that axis has one region.
    """
    regions = []
    for n, w, s in zip(size, window, shift):
        i = torch.arange(n, device=device)
        regions.append((i >= n - w).long() + (i >= n - s).long() if s > 0 else torch.zeros_like(i))
    label = regions[0][:, None, None] * 9 + regions[1][None, :, None] * 3 + regions[2][None, None, :]
    windows = window_partition(label[None, ..., None], window).squeeze(-1)  # [nW, N]
    different = windows[:, None, :] != windows[:, :, None]
    return different.to(dtype) * MASK_VALUE


class PatchEmbed3D(nn.Module):
    """``proj`` Conv3d (kernel ``patch``, stride (1, p, p)) on the video with one zero frame appended, then ``norm``."""

    def __init__(self, patch: Triple, embed_dim: int, eps: float) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(3, embed_dim, kernel_size=patch, stride=(1, patch[1], patch[2]))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, T, H, W]`` → ``[B, C, T, ⌈H/p⌉, ⌈W/p⌉]``."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % self.patch[2], 0, (-h) % self.patch[1], 0, 1))
        x = self.proj(x)
        t, hh = x.shape[2], x.shape[3]
        x = self.norm(rearrange(x, "b c t h w -> b (t h w) c"))
        return rearrange(x, "b (t h w) c -> b c t h w", t=t, h=hh)


class WindowAttention3D(QKVAttention):
    """Window attention with a learned relative-position bias (``relative_position_bias_table`` + index buffer).

    Args:
        dim: token width. num_heads: heads. window: the *configured* window; the index is built for it once.
        attention: the attention implementation (:mod:`backbones.common.attention`).
    """

    relative_position_index: Tensor  # a buffer; declared so that it is typed Tensor, not Module.__getattr__'s union

    def __init__(self, dim: int, num_heads: int, window: Triple, attention: AttentionImpl = "sdpa") -> None:
        super().__init__(dim, num_heads, qkv_bias=True, attention=attention)
        wd, wh, ww = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x [B·nW, N, C]``, ``mask [nW, N, N]`` (shifted blocks) or None → ``[B·nW, N, C]``."""
        n = x.shape[1]
        # Sliced from the configured window's index, as officially (mis-paired when the spatial window shrank).
        index = self.relative_position_index[:n, :n].reshape(-1)
        bias = self.relative_position_bias_table[index].view(n, n, -1).permute(2, 0, 1)  # [heads, N, N]
        if mask is not None:
            bias = bias[None, None] + mask[None, :, None].to(bias.dtype)  # [1, nW, heads, N, N]
        return super().forward(x, bias)


class SwinBlock3D(nn.Module):
    """``x + DropPath(WindowAttn(LN1(x)))`` then ``x + DropPath(MLP(LN2(x)))``, shifted when ``shift`` > 0."""

    def __init__(self, dim: int, num_heads: int, window: Triple, shift: Triple, mlp_ratio: float, drop_path: float,
                 eps: float, attention: AttentionImpl = "sdpa") -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention3D(dim, num_heads, window, attention)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, D, H, W, C]``; ``mask`` the stage's shifted-window mask (used only when this block shifts)."""
        b, d, h, w, _ = x.shape
        window, shift = effective_window((d, h, w), self.window, self.shift)
        y = self.norm1(x)
        # Zero-pad after the norm to whole windows (padded tokens are not masked, as officially).
        y = F.pad(y, (0, 0, 0, (-w) % window[2], 0, (-h) % window[1], 0, (-d) % window[0]))
        padded = _triple(y.shape[1:4])
        shifted = any(s > 0 for s in shift)
        if shifted:
            y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        y = self.attn(window_partition(y, window), mask if shifted else None)
        y = window_reverse(y, window, b, padded)
        if shifted:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        x = x + self.drop_path(y[:, :d, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2×2 spatial merge: ``reduction(norm(cat(x00, x10, x01, x11)))``, ``[B, D, H, W, C]`` → ``[B, D, ⌈H/2⌉, ⌈W/2⌉, 2C]``."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:4]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: ``blocks`` (even unshifted, odd shifted by window//2) then optional ``downsample``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: Triple, mlp_ratio: float,
                 drop_path: list[float], eps: float, downsample: bool, attention: AttentionImpl = "sdpa") -> None:
        super().__init__()
        self.window = window
        self.shift = _triple(w // 2 for w in window)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, window, (0, 0, 0) if i % 2 == 0 else self.shift, mlp_ratio, drop_path[i], eps,
                        attention)
            for i in range(depth))
        self.downsample = PatchMerging(dim, eps) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, D, H, W]`` → ``[B, C', D, H', W']`` (C' = 2C and H' = ⌈H/2⌉ when downsampling)."""
        _, _, d, h, w = x.shape
        window, shift = effective_window((d, h, w), self.window, self.shift)
        padded = _triple(math.ceil(n / win) * win for n, win in zip((d, h, w), window))
        mask = shifted_window_mask(padded, window, shift, device=x.device, dtype=x.dtype)
        x = rearrange(x, "b c d h w -> b d h w c")
        for block in self.blocks:
            x = block(x, mask)
        if self.downsample is not None:
            x = self.downsample(x)
        return rearrange(x, "b d h w c -> b c d h w")


class SwinTransformer3D(nn.Module):
    """``patch_embed`` → ``layers`` → ``norm``: ``[B, 3, T, H, W]`` → ``[B, num_features, T, H/32, W/32]``.

    Initialisation as the official constructor (which calls no ``init_weights``): PyTorch defaults, and
    trunc-normal(0.02) relative-position tables. Pretrained weights replace all of it.
    """

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        cfg.validate()
        eps = cfg.layer_norm_eps
        self.patch_embed = PatchEmbed3D(cfg.patch_size, cfg.embed_dim, eps)
        self.pos_drop = nn.Dropout(0.0)
        # float32 linspace as officially; explicitly on CPU so that building on the meta device works.
        rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths), device="cpu").tolist()
        starts = [sum(cfg.depths[:i]) for i in range(len(cfg.depths))]
        last = len(cfg.depths) - 1
        self.layers = nn.ModuleList(
            BasicLayer(cfg.embed_dim * 2 ** i, depth, cfg.num_heads[i], cfg.window_size, cfg.mlp_ratio,
                       rates[starts[i]:starts[i] + depth], eps, downsample=i < last, attention=cfg.attention)
            for i, depth in enumerate(cfg.depths))
        self.norm = nn.LayerNorm(cfg.num_features, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return rearrange(self.norm(rearrange(x, "b c d h w -> b d h w c")), "b d h w c -> b c d h w")
