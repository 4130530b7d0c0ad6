"""MELTR, the meta loss transformer (paper eq. 4-5).

Each task loss ``l_t`` (a scalar) is embedded by a scale-embedding MLP shared across tasks, a learned
task embedding is added, one or more transformer encoder layers mix the T tokens, and a bias-free
linear head reads the mean token::

    x_t   = SE(l_t) + TE[t]            SE: Linear(1, h1) -> ReLU -> Linear(h1, d)
    z     = Encoder(x_1 .. x_T)        post-LN by default, 8 heads, FFN f
    L_aux = w_out . mean_t z_t         no bias, no output activation (the official module has none)

That is the paper's form (``residual: none``), kept for every paper row. Its random init gives random
task weights ``a_t = dL_aux/dl_t`` at step 0 (the target loss's can be negative, so the first steps may train
*against* the target task). The plug-in default adds the multi-task sum and zero-initialises the head
(``residual: sum``)::

    L_aux = sum_t l_t + w_out . mean_t z_t        w_out = 0 at init

so at init the output equals ``sum_t l_t`` for any losses, every ``a_t`` is exactly 1, and training
starts exactly as the multi-task sum; the meta step then learns the correction (its first update moves
``w_out``, after which the hypergradient reaches every layer). The regulariser ``|sum_t l_t - L_aux|``
becomes ``|w_out . mean_t z_t|``: 0 at init, it penalises only the learned correction.

The attention is written out (matmul, softmax, matmul) rather than calling
``F.scaled_dot_product_attention``: the hypergradient differentiates twice through this module and the
CPU flash kernel has no double backward and no forward-mode AD. Parameter names follow
``nn.TransformerEncoderLayer`` so the official ``MELTR`` state dict maps onto ours with a short key
table (:data:`OFFICIAL_TO_OURS`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from meltr.checkpoint import read_weights
from meltr.interface import Combiner

__all__ = [
    "LossTransformerConfig",
    "LossTransformer",
    "PRESETS",
    "preset",
    "OFFICIAL_TO_OURS",
    "official_to_ours",
    "load_official_meltr",
    "OfficialKeyError",
]


@dataclass
class LossTransformerConfig:
    """Sizes and options of the loss transformer. Defaults are the official UniVL sizes."""

    num_tasks: int | None = None  # T; None = the number of losses of the model it is attached to
    scale_hidden_dim: int = 128  # h1: hidden width of the scale-embedding MLP
    hidden_dim: int = 256  # d: token width (official h2_dim)
    ffn_dim: int = 512  # f: feed-forward width inside each encoder layer
    num_layers: int = 1  # encoder layers (the official module has exactly one)
    num_heads: int = 8  # attention heads (official: 8)
    dropout: float = 0.1  # attention, FFN and residual dropout (official: nn default 0.1)
    norm_first: bool = False  # pre-LN if True; the official layer is post-LN
    layer_norm_eps: float = 1e-5  # LayerNorm epsilon (nn default)
    init: Literal["torch", "normal"] = "torch"  # PyTorch default init, or N(0, init_std) as All-in-one
    init_std: float = 0.02  # std of the "normal" init
    embedding: Literal["se+te", "se", "te"] = "se+te"  # Appendix D ablation: scale / task embedding
    # "sum": output = sum_t l_t + transformer(l), head zero-initialised (starts exactly as the multi-task sum);
    # "none": the paper's output = transformer(l); "auto": "sum" for se+te, "none" for the Appendix D
    # ablations (se, te: a TE-only transformer ignores the losses, so a residual would hide that it cannot train)
    residual: Literal["auto", "none", "sum"] = "auto"

    def resolved_residual(self) -> Literal["none", "sum"]:
        """``residual`` with ``auto`` resolved (see the field's comment)."""
        if self.residual == "auto":
            return "sum" if self.embedding == "se+te" else "none"
        return self.residual

    def validate(self) -> None:
        """Raises ValueError on inconsistent sizes."""
        if self.num_tasks is not None and self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {self.num_tasks}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("scale_hidden_dim", "hidden_dim", "ffn_dim", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.residual not in ("auto", "none", "sum"):
            raise ValueError(f"residual must be auto, none or sum, got {self.residual!r}")
        if self.residual == "sum" and self.embedding == "te":
            raise ValueError("residual 'sum' with a TE-only transformer: its correction ignores the losses, so it could "
                             "never change training (paper Appendix D); use residual 'none' to reproduce that ablation")


# Sizes the official code uses per backbone (meltr_official.md section 1.3), in the paper's form and
# init (residual "none"). UniVL keeps its MELTR in eval mode for the whole run, so its dropout is
# effectively 0; VIOLET and All-in-one train with 0.1.
PRESETS: dict[str, LossTransformerConfig] = {
    "univl": LossTransformerConfig(scale_hidden_dim=128, hidden_dim=256, ffn_dim=512, dropout=0.0, residual="none"),
    "violet_retrieval": LossTransformerConfig(scale_hidden_dim=256, hidden_dim=512, ffn_dim=512, residual="none"),
    "violet_qa": LossTransformerConfig(scale_hidden_dim=128, hidden_dim=256, ffn_dim=256, residual="none"),
    "allinone": LossTransformerConfig(scale_hidden_dim=128, hidden_dim=128, ffn_dim=128, init="normal", residual="none"),
    # Appendix A.3 of the paper: one layer, 8 heads, 512 hidden.
    "paper": LossTransformerConfig(scale_hidden_dim=128, hidden_dim=512, ffn_dim=512, residual="none"),
}


def preset(name: str, **overrides: Any) -> LossTransformerConfig:
    """Returns a copy of a named preset with optional field overrides (e.g. ``num_tasks=8``).

    ``overrides`` is typed ``Any``, as ``dataclasses.replace`` types its changes: each belongs to a field of
    its own type, and :meth:`LossTransformerConfig.validate` checks the values."""
    if name not in PRESETS:
        raise KeyError(f"unknown loss-transformer preset {name!r}; valid: {', '.join(sorted(PRESETS))}")
    return replace(PRESETS[name], **overrides)


class ScaleEmbedding(nn.Module):
    """Shared MLP that embeds each scalar loss: ``[..., T] -> [..., T, d]``."""

    def __init__(self, hidden: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, losses: Tensor) -> Tensor:
        embedded: Tensor = self.fc2(F.relu(self.fc1(losses.unsqueeze(-1))))
        return embedded


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter layout and init.

    Explicit matmul-softmax-matmul so that it supports double backward and forward-mode AD on every
    device (see module docstring).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[B, T, d]`` -> ``[B, T, d]``."""
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        # [B, T, d] -> [B, h, T, d/h]
        q, k, v = (y.reshape(b, t, h, d // h).transpose(1, 2) for y in (q, k, v))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
        attn = F.dropout(attn, self.dropout, self.training)
        out = (attn @ v).transpose(1, 2).reshape(b, t, d)
        projected: Tensor = self.out_proj(out)
        return projected


class EncoderLayer(nn.Module):
    """A transformer encoder layer numerically equal to ``nn.TransformerEncoderLayer`` (ReLU)."""

    def __init__(self, cfg: LossTransformerConfig) -> None:
        super().__init__()
        d, f = cfg.hidden_dim, cfg.ffn_dim
        self.norm_first = cfg.norm_first
        self.p = cfg.dropout
        self.self_attn = SelfAttention(d, cfg.num_heads, cfg.dropout)
        self.linear1 = nn.Linear(d, f)
        self.linear2 = nn.Linear(f, d)
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def _ff(self, x: Tensor) -> Tensor:
        ff: Tensor = self.linear2(self._drop(F.relu(self.linear1(x))))
        return ff

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_first:
            x = x + self._drop(self.self_attn(self.norm1(x)))
            return x + self._drop(self._ff(self.norm2(x)))
        x = self.norm1(x + self._drop(self.self_attn(x)))
        normed: Tensor = self.norm2(x + self._drop(self._ff(x)))
        return normed


class LossTransformer(Combiner):
    """MELTR: learns to combine T task losses into one.

    Args:
        cfg: Sizes and options; ``cfg.num_tasks`` may be None when ``loss_names`` is given, and
            ``cfg.residual`` may be ``auto`` (:attr:`cfg` holds both resolved).
        loss_names: Names of the input losses, in task-embedding order.

    Shapes:
        ``forward(losses)``: ``[T] -> []`` or ``[B, T] -> [B]`` (a batch of loss vectors, e.g. for plots).
    """

    learnable = True

    def __init__(self, cfg: LossTransformerConfig, loss_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if loss_names is not None and cfg.num_tasks not in (None, len(loss_names)):
            raise ValueError(f"num_tasks={cfg.num_tasks} but {len(loss_names)} loss names {tuple(loss_names)}")
        num_tasks = cfg.num_tasks if cfg.num_tasks is not None else (len(loss_names) if loss_names else None)
        if num_tasks is None:
            raise ValueError("LossTransformer needs cfg.num_tasks or loss_names")
        self.cfg = cfg = replace(cfg, num_tasks=num_tasks, residual=cfg.resolved_residual())
        cfg.validate()
        self.loss_names = tuple(loss_names) if loss_names is not None else tuple(f"loss{i}" for i in range(num_tasks))
        self.use_scale = cfg.embedding in ("se+te", "se")
        self.use_task = cfg.embedding in ("se+te", "te")
        if self.use_task:
            self.task_embedding = nn.Embedding(num_tasks, cfg.hidden_dim)
        if self.use_scale:
            self.scale_embedding = ScaleEmbedding(cfg.scale_hidden_dim, cfg.hidden_dim)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.head = nn.Linear(cfg.hidden_dim, 1, bias=False)
        if cfg.init == "normal":
            self._init_normal(cfg.init_std)
        if cfg.residual == "sum":
            # The learned correction starts at exactly 0 (ReZero / ControlNet's zero layer): output = sum.
            nn.init.zeros_(self.head.weight)

    def _init_normal(self, std: float) -> None:
        # All-in-one applies its BERT-style init to MELTR: Linear and Embedding weights N(0, std), Linear
        # biases 0, LayerNorm (1, 0). The attention in-projection is a raw parameter there and keeps its
        # Xavier init; we reproduce that.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_tasks(self) -> int:
        return int(self.cfg.num_tasks)  # type: ignore[arg-type]

    def forward(self, losses: Tensor) -> Tensor:
        """Combines losses ``[T]`` or ``[B, T]`` into ``[]`` or ``[B]``."""
        if losses.shape[-1] != self.num_tasks or losses.dim() not in (1, 2):
            raise ValueError(f"LossTransformer expects [T] or [B, T] with T={self.num_tasks}, got {tuple(losses.shape)}")
        single = losses.dim() == 1
        x = losses.unsqueeze(0) if single else losses
        x = x.to(self.head.weight.dtype)
        if self.use_scale:
            tokens = self.scale_embedding(x)
            if self.use_task:
                tokens = tokens + self.task_embedding.weight
        else:
            # TE only (Appendix D): the tokens do not depend on the losses, so neither does the output.
            tokens = self.task_embedding.weight.expand(x.shape[0], -1, -1)
        for layer in self.layers:
            tokens = layer(tokens)
        out: Tensor = self.head(tokens.mean(dim=1)).squeeze(-1)
        if self.cfg.residual == "sum":
            out = x.sum(-1) + out
        return out[0] if single else out

    def to_official(self) -> dict[str, Tensor]:
        """Our state dict in the official ``MELTR`` key layout (one encoder layer, SE+TE only)."""
        if self.cfg.num_layers != 1 or self.cfg.embedding != "se+te":
            raise ValueError("the official MELTR has exactly one layer and both embeddings")
        if self.cfg.residual != "none":
            raise ValueError(f"the official MELTR has no residual: this one adds sum_t l_t (residual={self.cfg.residual!r})")
        ours_to_official = {v: k for k, v in official_to_ours_table().items()}
        return {ours_to_official[k]: v for k, v in self.state_dict().items()}


class OfficialKeyError(KeyError):
    """An official MELTR state dict does not match the key table."""

    def __str__(self) -> str:
        return str(self.args[0])


# Official MELTR (mlvlab/MELTR, all three copies) -> ours. "{}" stands for every parameter name of
# one nn.TransformerEncoderLayer, which our EncoderLayer shares.
OFFICIAL_TO_OURS: dict[str, str] = {
    "task_embedding.weight": "task_embedding.weight",
    "loss_fc1.weight": "scale_embedding.fc1.weight",
    "loss_fc1.bias": "scale_embedding.fc1.bias",
    "loss_fc2.weight": "scale_embedding.fc2.weight",
    "loss_fc2.bias": "scale_embedding.fc2.bias",
    "encoder.{}": "layers.0.{}",
    "fc1.weight": "head.weight",
}
_LAYER_KEYS = (
    "self_attn.in_proj_weight",
    "self_attn.in_proj_bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
)


def official_to_ours_table() -> dict[str, str]:
    """:data:`OFFICIAL_TO_OURS` with the ``{}`` layer placeholder expanded."""
    table: dict[str, str] = {}
    for off, ours in OFFICIAL_TO_OURS.items():
        if "{}" in off:
            table.update({off.format(k): ours.format(k) for k in _LAYER_KEYS})
        else:
            table[off] = ours
    return table


def official_to_ours(state: Mapping[str, Tensor], source: str = "<state_dict>") -> dict[str, Tensor]:
    """Renames an official MELTR state dict to our keys; strips ``module.`` (DataParallel/DDP) prefixes.

    Raises:
        OfficialKeyError: naming ``source`` and the first unexpected or missing keys.
    """
    table = official_to_ours_table()
    clean = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    unexpected = sorted(k for k in clean if k not in table)
    missing = sorted(k for k in table if k not in clean)
    if unexpected or missing:
        raise OfficialKeyError(
            f"{source}: not an official MELTR state dict: unexpected keys {unexpected[:10]}, missing keys {missing[:10]}"
        )
    return {table[k]: v for k, v in clean.items()}


def load_official_meltr(
    source: Mapping[str, Tensor] | str | os.PathLike[str],
    loss_names: Sequence[str] | None = None,
    num_heads: int = 8,
    dropout: float = 0.1,
) -> LossTransformer:
    """Builds a :class:`LossTransformer` from an official ``MELTR`` state dict (or a file holding one).

    Sizes (T, h1, d, f) are read from the tensor shapes; heads are not recoverable from shapes and
    default to the official 8.

    Args:
        source: A state dict, or a path loaded with ``torch.load(weights_only=True)``.
        loss_names: Optional names of the T losses.
        num_heads: Attention heads of the official module.
        dropout: Dropout of the official module (its ``nn.TransformerEncoderLayer`` default is 0.1).

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        meltr.checkpoint.CheckpointError: The file is truncated, corrupt or holds a global the safe loader refuses.
        OfficialKeyError: The state dict does not match the official key table or its shapes.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<state_dict>"
    if isinstance(source, (str, os.PathLike)):
        state = read_weights(source)  # weights_only; a missing, truncated or unsafe file is named in the error
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
    else:
        state = source
    ours = official_to_ours(state, name)
    t, d = ours["task_embedding.weight"].shape
    h1 = ours["scale_embedding.fc1.weight"].shape[0]
    f = ours["layers.0.linear1.weight"].shape[0]
    cfg = LossTransformerConfig(
        num_tasks=t, scale_hidden_dim=h1, hidden_dim=d, ffn_dim=f, num_heads=num_heads, dropout=dropout, residual="none"
    )
    model = LossTransformer(cfg, loss_names)
    expected = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in ours.items() if v.shape != expected[k].shape]
    if bad:
        raise OfficialKeyError(f"{name}: shape mismatch {bad[:10]}")
    model.load_state_dict(ours)
    return model
