"""BERT building blocks with the original (Google / HF-v0) parameter names, shared by every backbone.

Post-LN blocks, exact (erf) GELU, LayerNorm eps 1e-12 and additive ``-10000`` attention masks, as in the
BERT code that UniVL, VIOLET and All-in-one build on. Module and parameter names follow that code
(``attention.self.query``, ``attention.output.LayerNorm``, ``intermediate.dense``, ...) so official
checkpoints map onto these modules by identity.

Attention runs ``F.scaled_dot_product_attention`` by default (``BertConfig.attention="sdpa"``) or the
original written-out ``matmul``/``softmax`` (``"explicit"``); see :mod:`backbones.common.attention` for when
they differ (forward-mode AD and double backward need the math kernel; training dropout draws other
random numbers). Nothing here mutates tensors in place, so every module works under
``torch.func.functional_call`` and on the ``meta`` device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from backbones.common.attention import AttentionImpl, check_attention, sdpa_attention

__all__ = [
    "MASK_VALUE",
    "BertConfig",
    "WordInput",
    "EncoderOutput",
    "additive_mask",
    "causal_additive_mask",
    "MultiHeadAttention",
    "ResidualOutput",
    "BertAttention",
    "BertIntermediate",
    "BertLayer",
    "BertEncoder",
    "BertPooler",
    "BertEmbeddings",
    "BertModel",
    "BertPredictionHeadTransform",
    "BertLMPredictionHead",
    "BertOnlyMLMHead",
    "init_bert_weights",
]

# Additive value for masked attention positions. BERT uses a large finite number, not -inf: a fully
# masked row then softmaxes to a uniform distribution instead of NaN, and the numbers match the
# official code (the golden fixtures depend on it).
MASK_VALUE = -10000.0

# What the embedding layer does with its input: look up word ids ("embedding"), project continuous
# features with a biased Linear ("linear", e.g. UniVL's video encoder), or take ready-made hidden states
# ("none", e.g. UniVL's cross encoder, whose input is the concatenated text and video states).
WordInput = Literal["embedding", "linear", "none"]


@dataclass
class BertConfig:
    """Sizes of one BERT-style Transformer tower (field names as in the official JSON configs)."""

    vocab_size: int = 30522  # word-piece vocabulary; input feature size for a "linear" embedding
    hidden_size: int = 768  # model width
    num_hidden_layers: int = 12  # number of Transformer blocks
    num_attention_heads: int = 12  # heads per attention layer (hidden_size must be divisible)
    intermediate_size: int = 3072  # width of the feed-forward layer
    max_position_embeddings: int = 512  # rows of the learned position table (longest input)
    type_vocab_size: int = 2  # rows of the token-type (segment) table
    hidden_dropout_prob: float = 0.1  # dropout after embeddings and every residual branch
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    initializer_range: float = 0.02  # std of the normal init of Linear/Embedding weights
    layer_norm_eps: float = 1e-12  # BERT's "TF-style" LayerNorm epsilon
    attention: AttentionImpl = "sdpa"  # "sdpa" (fused kernels) or "explicit" (matmul/softmax; backbones.common.attention)

    def validate(self, name: str = "bert") -> None:
        """Raises ``ValueError`` naming ``name`` and the offending field."""
        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.{field} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{name}.hidden_size ({self.hidden_size}) is not a multiple of "
                             f"{name}.num_attention_heads ({self.num_attention_heads})")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(f"{name}.{field} must be in [0, 1), got {getattr(self, field)!r}")
        check_attention(self.attention, f"{name}.attention")


class EncoderOutput(NamedTuple):
    """What :class:`BertModel` returns.

    Attributes:
        hidden: ``[B, S, H]`` last-layer hidden states.
        pooled: ``[B, H]`` ``tanh(dense(hidden[:, 0]))``.
        layers: the ``[B, S, H]`` output of every layer, first to last (``layers[-1] is hidden``).
    """

    hidden: Tensor
    pooled: Tensor
    layers: tuple[Tensor, ...]


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Key-padding mask ``[B, K]`` (1 = attend, 0 = padding) → additive bias ``[B, 1, 1, K]`` (0 or -10000)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


def causal_additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Decoder self-attention bias ``[B, 1, L, L]`` from a key-padding mask ``[B, L]``.

    A query may not attend to a later position nor to a padded key; blocked entries get -10000
    (added once, not once per reason, as the official decoder does).
    """
    length = mask.shape[-1]
    future = torch.ones(length, length, dtype=torch.bool, device=mask.device).triu(1)
    blocked = future[None, None] | (mask[:, None, None, :] == 0)
    return blocked.to(dtype) * MASK_VALUE


class MultiHeadAttention(nn.Module):
    """``query``/``key``/``value`` projections and scaled dot-product attention.

    Self-attention when ``context`` is None, otherwise cross-attention from ``hidden`` to ``context``.
    ``cfg.attention`` picks the implementation (:mod:`backbones.common.attention`).
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)
        check_attention(cfg.attention, "BertConfig.attention")
        self.attention = cfg.attention

    def forward(self, hidden: Tensor, attention_bias: Tensor, context: Tensor | None = None) -> Tensor:
        """Attends from ``hidden`` to ``context`` (default: ``hidden``).

        Args:
            hidden: ``[B, Q, H]`` queries.
            attention_bias: additive bias broadcastable to ``[B, heads, Q, K]`` (see :func:`additive_mask`).
            context: ``[B, K, H]`` keys/values, or None for self-attention.

        Returns:
            ``[B, Q, H]`` attention output (before the output projection).
        """
        context = hidden if context is None else context
        q = rearrange(self.query(hidden), "b q (h d) -> b h q d", h=self.num_heads)
        k = rearrange(self.key(context), "b k (h d) -> b h k d", h=self.num_heads)
        v = rearrange(self.value(context), "b k (h d) -> b h k d", h=self.num_heads)
        if self.attention == "sdpa":
            out = sdpa_attention(q, k, v, attention_bias, self.dropout, 1.0 / math.sqrt(self.head_size))
        else:
            # Divide after the matmul (not by pre-scaling q), in the official order, to stay bit-close.
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + attention_bias
            probs = self.dropout(scores.softmax(dim=-1))
            out = torch.matmul(probs, v)
        return rearrange(out, "b h q d -> b q (h d)")


class ResidualOutput(nn.Module):
    """``LayerNorm(residual + dropout(dense(x)))``: BERT's ``*.output`` sub-module (post-LN)."""

    def __init__(self, in_features: int, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        """``hidden [B, S, in_features]``, ``residual [B, S, H]`` → ``[B, S, H]``."""
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    """Self-attention block: ``attention.self`` then ``attention.output`` (residual + LayerNorm)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = MultiHeadAttention(cfg)
        self.output = ResidualOutput(cfg.hidden_size, cfg)

    def forward(self, hidden: Tensor, attention_bias: Tensor) -> Tensor:
        """``hidden [B, S, H]``, bias ``[B, 1, 1|S, S]`` → ``[B, S, H]``."""
        return self.output(self.self(hidden, attention_bias), hidden)


class BertIntermediate(nn.Module):
    """Feed-forward expansion ``gelu(dense(x))`` with the exact erf GELU."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[B, S, H]`` → ``[B, S, intermediate_size]``."""
        return F.gelu(self.dense(hidden))


class BertLayer(nn.Module):
    """One post-LN Transformer encoder block."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = ResidualOutput(cfg.intermediate_size, cfg)

    def forward(self, hidden: Tensor, attention_bias: Tensor) -> Tensor:
        """``hidden [B, S, H]``, bias ``[B, 1, 1|S, S]`` → ``[B, S, H]``."""
        attended = self.attention(hidden, attention_bias)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    """A stack of :class:`BertLayer` under ``layer.{i}``."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, hidden: Tensor, attention_bias: Tensor) -> list[Tensor]:
        """Runs every layer; returns each layer's ``[B, S, H]`` output, first to last."""
        outputs = []
        for block in self.layer:
            hidden = block(hidden, attention_bias)
            outputs.append(hidden)
        return outputs


class BertPooler(nn.Module):
    """``tanh(dense(hidden[:, 0]))``: the first-position summary vector."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[B, S, H]`` → ``[B, H]``."""
        return torch.tanh(self.dense(hidden[:, 0]))


class BertEmbeddings(nn.Module):
    """Input embedding: word (or projected features) + learned position (+ token type) → LayerNorm → dropout.

    Args:
        cfg: tower sizes; ``cfg.vocab_size`` is the feature size for ``word="linear"``.
        word: how the input is embedded (see :data:`WordInput`); ``"none"`` registers no word table.
        token_types: whether to add ``token_type_embeddings``.
        word_weight: share this ``[vocab, H]`` table as ``word_embeddings.weight`` (weight tying).
        position_weight: share this ``[max_pos, H]`` table as ``position_embeddings.weight``.
    """

    def __init__(self, cfg: BertConfig, *, word: WordInput = "embedding", token_types: bool = True,
                 word_weight: nn.Parameter | None = None, position_weight: nn.Parameter | None = None) -> None:
        super().__init__()
        self.word = word
        self.word_embeddings: nn.Embedding | nn.Linear  # absent for word="none"
        if word == "embedding":
            self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            if word_weight is not None:
                self.word_embeddings.weight = word_weight
        elif word == "linear":
            self.word_embeddings = nn.Linear(cfg.vocab_size, cfg.hidden_size)
        elif word != "none":
            raise ValueError(f"word must be 'embedding', 'linear' or 'none', got {word!r}")
        if word != "embedding" and word_weight is not None:
            raise ValueError("word_weight can only be tied to an 'embedding' word table")
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        if position_weight is not None:
            self.position_embeddings.weight = position_weight
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if token_types else None
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, inputs: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Embeds one sequence per row; positions are ``0..S-1``.

        Args:
            inputs: ``[B, S]`` ids (``"embedding"``), ``[B, S, vocab_size]`` features (``"linear"``) or
                ``[B, S, H]`` hidden states (``"none"``).
            token_type_ids: ``[B, S]`` segment ids; all zeros when None.

        Returns:
            ``[B, S, H]``.
        """
        x = inputs if self.word == "none" else self.word_embeddings(inputs)
        length = x.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {length} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}")
        x = x + self.position_embeddings.weight[:length]
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertModel(nn.Module):
    """``embeddings`` → ``encoder`` → ``pooler``: one BERT-style tower (text, visual or cross encoder).

    Keyword arguments are those of :class:`BertEmbeddings`.
    """

    def __init__(self, cfg: BertConfig, *, word: WordInput = "embedding", token_types: bool = True,
                 word_weight: nn.Parameter | None = None, position_weight: nn.Parameter | None = None) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(cfg, word=word, token_types=token_types, word_weight=word_weight,
                                         position_weight=position_weight)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)

    def forward(self, inputs: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> EncoderOutput:
        """Encodes a padded batch.

        Args:
            inputs: see :meth:`BertEmbeddings.forward`.
            attention_mask: ``[B, S]``, 1 on real positions, 0 on padding.
            token_type_ids: ``[B, S]`` or None.

        Returns:
            :class:`EncoderOutput` with ``hidden [B, S, H]``, ``pooled [B, H]`` and every layer's output.
        """
        embedded = self.embeddings(inputs, token_type_ids)
        # The bias takes the activation dtype so that fp16/bf16 autocast runs stay in one dtype.
        layers = self.encoder(embedded, additive_mask(attention_mask, embedded.dtype))
        return EncoderOutput(layers[-1], self.pooler(layers[-1]), tuple(layers))


class BertPredictionHeadTransform(nn.Module):
    """``LayerNorm(gelu(dense(x)))``, the first half of the MLM head."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[..., H]`` → ``[..., H]``."""
        return self.LayerNorm(F.gelu(self.dense(hidden)))


class BertLMPredictionHead(nn.Module):
    """Vocabulary logits ``transform(x) @ Wᵀ + bias``; ``W`` (``decoder.weight``) is usually the tied word table.

    Args:
        cfg: sizes (``vocab_size`` is used only when ``decoder_weight`` is None).
        decoder_weight: ``[vocab, H]`` table to tie as ``decoder.weight``; a fresh one when None.
        bias_alias: also register the output ``bias`` as ``decoder.bias`` (one tensor under two keys), as
            transformers >= 3 does; VIOLET's checkpoints carry both keys, HF-v0 ones (UniVL) only ``bias``.
    """

    def __init__(self, cfg: BertConfig, decoder_weight: nn.Parameter | None = None, *, bias_alias: bool = False) -> None:
        super().__init__()
        vocab = cfg.vocab_size if decoder_weight is None else decoder_weight.shape[0]
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden_size, vocab, bias=False)
        if decoder_weight is not None:
            self.decoder.weight = decoder_weight
        # A separate output bias: the tied table has none, and the official checkpoints store this one.
        self.bias = nn.Parameter(torch.zeros(vocab))
        if bias_alias:
            self.decoder.bias = self.bias

    def forward(self, hidden: Tensor) -> Tensor:
        """``[..., H]`` → ``[..., vocab]`` logits."""
        # The bias is added once here, whether or not decoder.bias aliases it.
        return F.linear(self.transform(hidden), self.decoder.weight) + self.bias


class BertOnlyMLMHead(nn.Module):
    """Wrapper that puts the head under ``predictions.*`` (the official key prefix); arguments as
    :class:`BertLMPredictionHead`."""

    def __init__(self, cfg: BertConfig, decoder_weight: nn.Parameter | None = None, *, bias_alias: bool = False) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, decoder_weight, bias_alias=bias_alias)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[..., H]`` → ``[..., vocab]`` logits."""
        return self.predictions(hidden)


@torch.no_grad()
def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: Linear/Embedding weights ~ N(0, std), Linear biases 0, LayerNorm 1/0.

    Tied tables are visited once per alias; they stay tied because the same Parameter is re-filled.
    Other parameters (e.g. the MLM output ``bias``, already zeros) are left alone.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.normal_(0.0, std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
