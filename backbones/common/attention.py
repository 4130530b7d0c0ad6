"""The attention implementation switch shared by every backbone: fused ``sdpa`` (default) or ``explicit``.

``"sdpa"`` calls ``torch.nn.functional.scaled_dot_product_attention`` with the same additive bias, scale and
attention-probability dropout as the written-out code, so PyTorch may pick a fused kernel (flash / memory
efficient) that never stores the ``[B, heads, Q, K]`` probabilities. ``"explicit"`` is the original
``matmul``/``softmax`` code of each module, kept for two reasons:

* forward-mode AD (``torch.func.jvp``) and double backward: the CPU flash kernel supports neither. With
  ``sdpa`` these work only under ``sdpa_kernel(SDPBackend.MATH)``, which MELTR's exact meta-step modes enter
  (``meltr.hypergrad.differentiable_attention``); code that differentiates twice outside that context needs
  ``explicit``.
* bit-level reproduction of earlier training runs: in eval mode the two agree to float rounding (~1e-6
  relative), but with attention dropout > 0 in training SDPA draws its own dropout mask, not ``nn.Dropout``'s,
  so training numbers differ from the explicit path for the same seed (same distribution, other samples).

Fused kernels also have input limits: on CPU the flash kernel takes 4-D inputs and a bias that does not require
grad, and no dropout; otherwise SDPA falls back to its math kernel (same numbers, no memory saving). A learned
bias such as Swin's relative-position table therefore runs the math kernel while it is trained.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionImpl", "ATTENTION_IMPLS", "check_attention", "set_attention", "sdpa_attention"]

AttentionImpl = Literal["sdpa", "explicit"]
ATTENTION_IMPLS: tuple[AttentionImpl, ...] = ("sdpa", "explicit")


def check_attention(value: object, name: str) -> None:
    """Raises ``ValueError`` naming the field ``name`` unless ``value`` is one of :data:`ATTENTION_IMPLS`."""
    if not isinstance(value, str) or value not in ATTENTION_IMPLS:
        raise ValueError(f"{name} must be one of {ATTENTION_IMPLS}, got {value!r}")


C = TypeVar("C")


def set_attention(cfg: C, impl: AttentionImpl) -> C:
    """Sets ``attention = impl`` on ``cfg`` and on every dataclass config nested in it that has the field
    (UniVL's four BERT towers, VIOLET's Swin and BERT, All-in-one); returns ``cfg``."""
    check_attention(impl, "attention")
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if f.name == "attention":
                setattr(cfg, f.name, impl)
            elif dataclasses.is_dataclass(value):
                set_attention(value, impl)
    return cfg


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout: nn.Dropout, scale: float) -> Tensor:
    """``softmax(q kᵀ · scale + bias)`` with ``dropout``'s probability (in training) applied, times ``v``, fused.

    Args:
        q: ``[B, heads, Q, d]``. k, v: ``[B, heads, K, d]``.
        bias: additive score bias broadcastable to ``[B, heads, Q, K]`` with at most 4 dims, or None.
        dropout: the module's attention-probability dropout; its ``p`` is used when it is in ``train()``.
        scale: the score scale (``1/sqrt(d)``).

    Returns:
        ``[B, heads, Q, d]``.
    """
    if bias is not None:
        # The fused CPU kernels take a 4-D bias only; leading size-1 axes broadcast as before. The cast keeps
        # autocast runs in one dtype (SDPA wants the bias in the query dtype).
        bias = bias.reshape((1,) * (4 - bias.ndim) + tuple(bias.shape)).to(q.dtype)
    p = dropout.p if dropout.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=scale)
