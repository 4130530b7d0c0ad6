"""Small multi-loss models used across the tests (each loss a per-sample mean, as DDP parity needs)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from meltr import CombinerConfig, LossTransformerConfig, MetaConfig, OptimConfig, TrainerConfig


def small_meltr(**kw: Any) -> LossTransformerConfig:
    """A loss transformer small enough for CPU tests (no dropout unless asked)."""
    return LossTransformerConfig(**{"scale_hidden_dim": 8, "hidden_dim": 16, "ffn_dim": 16, "num_heads": 4, "dropout": 0.0, **kw})


def toy_trainer_config(**kw: Any) -> TrainerConfig:
    """The tests' trainer: a small MELTR (fixed coefficients for ``fixed``), Adam 1e-2 constant for the
    backbone and the meta step (every step), a train record every step, no TensorBoard; ``kw`` overrides."""
    base: dict[str, Any] = dict(
        combiner=CombinerConfig(name="meltr", meltr=small_meltr(), coefficients={"main": 1.0, "helpful": 0.5, "harmful": 0.0}),
        optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"),
        meta=MetaConfig(every=1, optim=OptimConfig(name="adam", lr=1e-2, schedule="constant")),
        tensorboard=False,
        log_every=1,
    )
    base.update(kw)
    return TrainerConfig(**base)


class ToyRegression(nn.Module):
    """Linear regression with a target loss on ``x, y``, a helpful auxiliary on more data of the same
    task (``xa, ya``) and a harmful auxiliary that pulls towards the opposite targets."""

    loss_names = ("main", "helpful", "harmful")
    target_loss = "main"

    def __init__(self, dim: int = 8, hidden: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pred = self.net(batch["x"]).squeeze(-1)
        pred_a = self.net(batch["xa"]).squeeze(-1)
        return {
            "main": F.mse_loss(pred, batch["y"]),
            "helpful": F.mse_loss(pred_a, batch["ya"]),
            "harmful": F.mse_loss(pred_a, -batch["ya"]),
        }


def regression_batches(n_batches: int, batch_size: int, dim: int = 8, seed: int = 0, dtype=torch.float32) -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=g, dtype=dtype)
    out = []
    for _ in range(n_batches):
        x = torch.randn(batch_size, dim, generator=g, dtype=dtype)
        xa = torch.randn(batch_size, dim, generator=g, dtype=dtype)
        out.append({"x": x, "y": x @ w + 0.1 * torch.randn(batch_size, generator=g, dtype=dtype), "xa": xa, "ya": xa @ w})
    return out


class TinyTransformer(nn.Module):
    """A token classifier on ``nn.TransformerEncoderLayer`` (which calls scaled_dot_product_attention)
    with a target classification loss, masked-token reconstruction and a sequence-order loss."""

    loss_names = ("cls", "mtm", "order")
    target_loss = "cls"

    def __init__(self, vocab: int = 20, dim: int = 16, classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(12, dim) * 0.1)
        self.enc = nn.TransformerEncoderLayer(dim, 2, 32, dropout=dropout, batch_first=True)
        self.cls_head = nn.Linear(dim, classes)
        self.mtm_head = nn.Linear(dim, vocab)
        self.order_head = nn.Linear(dim, 2)

    def encode(self, tok: Tensor) -> Tensor:
        return self.enc(self.emb(tok) + self.pos[: tok.shape[1]])

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return token_losses(self, batch)


def token_losses(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The three losses of the token toys on ``model.encode`` and its ``cls``/``mtm``/``order`` heads."""
    tok = batch["tokens"]
    h, masked, shuffled = model.encode(tok), model.encode(batch["masked"]), model.encode(tok.flip(1))
    order_logits = torch.cat([model.order_head(h.mean(1)), model.order_head(shuffled.mean(1))])
    order_target = torch.cat([torch.zeros(len(tok)), torch.ones(len(tok))]).long()
    return {
        "cls": F.cross_entropy(model.cls_head(h.mean(1)), batch["label"]),
        "mtm": F.cross_entropy(model.mtm_head(masked).flatten(0, 1), tok.flatten()),
        "order": F.cross_entropy(order_logits, order_target),
    }


def token_batches(n_batches: int, batch_size: int, seq: int = 6, vocab: int = 20, seed: int = 0) -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        tok = torch.randint(1, vocab, (batch_size, seq), generator=g)
        masked = tok.masked_fill(torch.rand(batch_size, seq, generator=g) < 0.3, 0)
        out.append({"tokens": tok, "masked": masked, "label": tok[:, 0] % 3})
    return out


class TinySDPA(nn.Module):
    """A one-block token classifier that calls ``F.scaled_dot_product_attention`` itself (no dropout, so
    every SDPA kernel applies), with the losses of :class:`TinyTransformer`.

    Args:
        mask: Pass an additive float mask ``[B, 1, S, S]`` (key padding of the last position) to SDPA.
        checkpointing: Run the block under non-reentrant activation checkpointing.
    """

    loss_names = ("cls", "mtm", "order")
    target_loss = "cls"

    def __init__(self, vocab: int = 20, dim: int = 16, heads: int = 2, classes: int = 3, mask: bool = False,
                 checkpointing: bool = False) -> None:
        super().__init__()
        self.heads, self.mask, self.checkpointing = heads, mask, checkpointing
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(12, dim) * 0.1)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.cls_head = nn.Linear(dim, classes)
        self.mtm_head = nn.Linear(dim, vocab)
        self.order_head = nn.Linear(dim, 2)

    def _block(self, x: Tensor) -> Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if self.mask:  # every query ignores the last key
            mask = torch.zeros(b, 1, s, s, dtype=q.dtype, device=x.device)
            mask[..., -1] = float("-inf")
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return x + self.proj(att.transpose(1, 2).reshape(b, s, d))

    def encode(self, tok: Tensor) -> Tensor:
        x = self.emb(tok) + self.pos[: tok.shape[1]]
        if self.checkpointing:
            return checkpoint(self._block, x, use_reentrant=False)
        return self._block(x)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return token_losses(self, batch)
