"""All-in-one's shared ViT (``transformer.*``): frame patch embedding and pre-LN blocks with temporal token rolling.

Follows the ViLT-style copy of timm's ViT in the official ``base_vision_transformer.py`` as
``shared/reference/allinone.md`` §1.2-1.5 describes it:

* frame embedding (``visual_embed``): patch conv, ``cls_token + pos_embed[0]`` in front, ``pos_embed[1 + p]``
  and ``temporal_embed[t]`` on patch ``p`` of frame ``t`` (the CLS gets no temporal embedding), ``pos_drop``;
* the patch order: raster order by default; the official code draws a fresh random permutation of every
  frame's patches on every call (``torch.multinomial``, reference §1.3). Positions travel with their patches,
  so the order is only visible to the temporal roll. A permutation can be passed in (testing, or the
  official behaviour through ``AllInOneConfig.patch_shuffle``);
* pre-LN blocks (LayerNorm eps 1e-6, fused-qkv attention with bias, GELU MLP, stochastic depth linear over the
  blocks), a final LayerNorm;
* temporal token rolling (:func:`temporal_roll`), applied to the video tokens before **every** block of the
  joint text+video pass only.

What the official ``visual_embed`` also does and this module leaves out: a pixel-validity mask for
zero-padded frames that resizes the position table to the valid area. All-in-one's loader never pads (every
frame is cropped to ``image_size``), so that path is the identity; frames of another size are refused.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from backbones.allinone.config import AllInOneConfig
from backbones.common.vit import DropPath, Mlp, QKVAttention, init_vit_weights

__all__ = ["temporal_roll", "random_patch_perm", "PatchEmbed", "Block", "ViTOutput", "VideoTransformer"]

LAYER_NORM_EPS = 1e-6  # timm's ViT LayerNorm epsilon (the BERT pieces use 1e-12)


def temporal_roll(x: Tensor, num_frames: int, fold_div: int = 8) -> Tensor:
    """Temporal token rolling (official ``TemporalRoll(n_segment=T, v=0)``), without parameters.

    With ``l`` tokens per frame and ``fold = l // fold_div``: token 0 (the frame CLS) stays; slots ``1..fold``
    take the tokens of the previous frame (``t - 1``, cyclic: frame 0 gets frame ``T - 1``); the last ``fold``
    slots take those of the next frame (``t + 1``, cyclic); the slots in between stay.

    Args:
        x: ``[B·T, l, D]`` video tokens, row ``b·T + t`` = frame ``t`` of clip ``b``.
        num_frames: ``T``.
        fold_div: divisor giving the fold (the official 8).

    Returns:
        ``[B·T, l, D]``.
    """
    length = x.shape[1]
    fold = length // fold_div
    if fold < 1 or 2 * fold >= length:
        # The official code rolls every token, CLS included, when fold is 0 (reference §1.5); refuse instead.
        raise ValueError(f"temporal_roll: {length} tokens per frame // fold_div {fold_div} = fold {fold}; need "
                         "1 <= fold and 2*fold < tokens per frame")
    if x.shape[0] % num_frames:
        raise ValueError(f"temporal_roll: {x.shape[0]} frame rows are not a multiple of num_frames={num_frames}")
    clips = rearrange(x, "(b t) l d -> b t l d", t=num_frames)
    rolled = torch.cat([
        clips[:, :, :1],
        clips[:, :, 1:1 + fold].roll(1, dims=1),  # from frame t - 1
        clips[:, :, 1 + fold:length - fold],
        clips[:, :, length - fold:].roll(-1, dims=1),  # from frame t + 1
    ], dim=2)
    return rearrange(rolled, "b t l d -> (b t) l d")


def random_patch_perm(rows: int, num_patches: int, device: torch.device | str | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
    """A fresh uniform random permutation of ``num_patches`` per row, ``[rows, num_patches]`` int64.

    Same distribution as the official per-frame ``torch.multinomial(ones(P), P)`` (the random stream differs).
    """
    return torch.rand(rows, num_patches, device=device, generator=generator).argsort(dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection ``proj`` (Conv2d 3 → D, kernel = stride = patch size, biased)."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        """``[N, 3, H, W]`` → ``[N, P, D]`` in raster order (row-major over the patch grid)."""
        return rearrange(self.proj(images), "n d h w -> n (h w) d")


class Block(nn.Module):
    """Pre-LN ViT block: ``x + DropPath(attn(norm1(x)))`` then ``x + DropPath(mlp(norm2(x)))``."""

    def __init__(self, cfg: AllInOneConfig, drop_path: float) -> None:
        super().__init__()
        dim = cfg.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = QKVAttention(dim, cfg.num_heads, qkv_bias=True, attn_drop=0.0, proj_drop=cfg.drop_rate,
                                 attention=cfg.attention)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), drop=cfg.drop_rate)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        """``x [N, S, D]``, additive key bias ``[N, 1, 1, S]`` (or None) → ``[N, S, D]``."""
        x = x + self.drop_path(self.attn(self.norm1(x), bias))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTOutput(NamedTuple):
    """What :meth:`VideoTransformer.forward` returns.

    Attributes:
        hidden: ``[N, S, D]`` after the final LayerNorm.
        block_inputs: what each block received (after the roll), first to last; empty unless requested.
        block_outputs: each block's output, first to last; empty unless requested.
    """

    hidden: Tensor
    block_inputs: tuple[Tensor, ...]
    block_outputs: tuple[Tensor, ...]


class VideoTransformer(nn.Module):
    """The official ``transformer`` module: frame embedding, blocks and final norm (official key names)."""

    def __init__(self, cfg: AllInOneConfig) -> None:
        super().__init__()
        dim = cfg.hidden_size
        self.cfg = cfg
        # Own parameters first (state_dict order: cls_token, pos_embed, temporal_embed, then submodules).
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens_per_frame, dim))
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, dim))
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.num_layers, device="cpu").tolist()
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """timm's ViT init: Linear trunc-normal(std) / bias 0, LayerNorm 1/0, ``pos_embed`` and ``cls_token``
        trunc-normal(std), ``temporal_embed`` zeros; the patch conv keeps PyTorch's default init."""
        std = self.cfg.initializer_range
        nn.init.trunc_normal_(self.pos_embed, std=std)
        nn.init.trunc_normal_(self.cls_token, std=std)
        nn.init.zeros_(self.temporal_embed)
        self.apply(lambda m: init_vit_weights(m, std))

    def embed(self, video: Tensor, patch_perm: Tensor | None = None) -> Tensor:
        """Frame tokens (official ``visual_embed``), before the modality embedding.

        Args:
            video: ``[B, T, 3, H, W]`` normalised frames, ``T = num_frames``, ``H = W = image_size``.
            patch_perm: ``[B·T, P]`` int64; new slot ``j`` of frame row ``r`` holds raster patch
                ``patch_perm[r, j]``. None keeps raster order.

        Returns:
            ``[B·T, 1 + P, D]``; row ``b·T + t``, token 0 = ``cls_token + pos_embed[0]``.
        """
        cfg = self.cfg
        if video.dim() != 5 or tuple(video.shape[1:]) != (cfg.num_frames, 3, cfg.image_size, cfg.image_size):
            raise ValueError(f"All-in-one video must be [B, {cfg.num_frames}, 3, {cfg.image_size}, {cfg.image_size}], "
                             f"got {tuple(video.shape)}")
        batch = video.shape[0]
        patches = self.patch_embed(rearrange(video, "b t c h w -> (b t) c h w").to(self.pos_embed.dtype))
        pos = self.pos_embed[0]
        patch_pos = pos[1:].expand(batch * cfg.num_frames, -1, -1)
        if patch_perm is not None:
            if tuple(patch_perm.shape) != (batch * cfg.num_frames, cfg.num_patches):
                raise ValueError(f"patch_perm must be [{batch * cfg.num_frames}, {cfg.num_patches}], "
                                 f"got {tuple(patch_perm.shape)}")
            index = patch_perm[..., None].expand(-1, -1, patches.shape[-1])
            patches, patch_pos = patches.gather(1, index), patch_pos.gather(1, index)
        frame_time = self.temporal_embed[0].repeat(batch, 1)[:, None, :]  # row b·T + t → temporal_embed[t]
        cls = (self.cls_token[0, 0] + pos[0]).expand(patches.shape[0], 1, -1)
        return self.pos_drop(torch.cat([cls, patches + patch_pos + frame_time], dim=1))

    def forward(self, x: Tensor, bias: Tensor | None, roll_from: int | None = None,
                return_intermediates: bool = False) -> ViTOutput:
        """Runs every block and the final norm.

        Args:
            x: ``[B·T, S, D]`` token rows, frame-major within each clip.
            bias: additive attention bias ``[B·T, 1, 1, S]`` (``-inf`` on padded keys) or None.
            roll_from: if given, :func:`temporal_roll` is applied to ``x[:, roll_from:]`` (the video tokens)
                before every block (the joint pass); None = no roll (the unimodal passes).
            return_intermediates: also return every block's input and output.

        Returns:
            :class:`ViTOutput`.
        """
        inputs, outputs = [], []
        for block in self.blocks:
            if roll_from is not None:
                video = temporal_roll(x[:, roll_from:], self.cfg.num_frames, self.cfg.fold_div)
                x = torch.cat([x[:, :roll_from], video], dim=1)
            if return_intermediates:
                inputs.append(x)
            x = block(x, bias)
            if return_intermediates:
                outputs.append(x)
        return ViTOutput(self.norm(x), tuple(inputs), tuple(outputs))
