"""UniVL's caption decoder (``decoder.*``): post-LN Transformer decoder over the cross-encoder output.

Key layout (official names): ``embeddings.{word_embeddings, position_embeddings, LayerNorm}`` (the two
tables are *bert's* tables, tied), ``decoder.layer.{i}.{slf_attn, enc_attn}.{att.{query,key,value},
output.{dense,LayerNorm}}``, ``decoder.layer.{i}.{intermediate, output}``, and the vocabulary head
``classifier.cls.predictions.*`` whose ``decoder.weight`` is again bert's word table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from backbones.common.bert import (
    BertConfig,
    BertEmbeddings,
    BertIntermediate,
    BertOnlyMLMHead,
    MultiHeadAttention,
    ResidualOutput,
    additive_mask,
    causal_additive_mask,
)

__all__ = ["DecoderAttention", "DecoderLayer", "DecoderStack", "DecoderClassifier", "UniVLDecoder", "IncrementalDecoder"]


class DecoderAttention(nn.Module):
    """Attention (``att``) followed by ``output`` (projection, residual to the query, LayerNorm)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.att = MultiHeadAttention(cfg)
        self.output = ResidualOutput(cfg.hidden_size, cfg)

    def forward(self, query: Tensor, attention_bias: Tensor, context: Tensor | None = None) -> Tensor:
        """``query [B, Q, H]``, bias ``[B, 1, Q|1, K]``, ``context [B, K, H]`` (None = self) → ``[B, Q, H]``."""
        return self.output(self.att(query, attention_bias, context), query)


class DecoderLayer(nn.Module):
    """Masked self-attention → attention to the encoder → feed-forward, each post-LN."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.slf_attn = DecoderAttention(cfg)
        self.enc_attn = DecoderAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = ResidualOutput(cfg.intermediate_size, cfg)

    def forward(self, hidden: Tensor, encoder_hidden: Tensor, self_bias: Tensor, encoder_bias: Tensor) -> Tensor:
        """``hidden [B, Lc, H]``, ``encoder_hidden [B, S, H]``, biases ``[B, 1, Lc, Lc]`` / ``[B, 1, 1, S]``."""
        hidden = self.slf_attn(hidden, self_bias)
        hidden = self.enc_attn(hidden, encoder_bias, encoder_hidden)
        return self.output(self.intermediate(hidden), hidden)


class DecoderStack(nn.Module):
    """``layer.{i}``: the decoder blocks."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, hidden: Tensor, encoder_hidden: Tensor, self_bias: Tensor, encoder_bias: Tensor) -> Tensor:
        """Runs every block; returns the last ``[B, Lc, H]``."""
        for block in self.layer:
            hidden = block(hidden, encoder_hidden, self_bias, encoder_bias)
        return hidden

    def blocks(self) -> list[DecoderLayer]:
        """``layer`` as a list typed :class:`DecoderLayer` (iterating an ``nn.ModuleList`` yields ``nn.Module``),
        for code that reaches into a block's submodules (:class:`IncrementalDecoder`)."""
        blocks = []
        for block in self.layer:
            assert isinstance(block, DecoderLayer)  # __init__ fills ``layer`` with DecoderLayer only
            blocks.append(block)
        return blocks


class DecoderClassifier(nn.Module):
    """``cls.predictions.*``: a BERT MLM head over the tied word table."""

    def __init__(self, cfg: BertConfig, word_weight: nn.Parameter) -> None:
        super().__init__()
        self.cls = BertOnlyMLMHead(cfg, word_weight)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[B, Lc, H]`` → ``[B, Lc, vocab]``."""
        return self.cls(hidden)


class UniVLDecoder(nn.Module):
    """Teacher-forced caption decoder.

    Args:
        cfg: decoder sizes (``num_hidden_layers`` = official ``num_decoder_layers``).
        word_weight: bert's ``[vocab, H]`` word table (tied as input embedding and output projection).
        position_weight: bert's ``[max_pos, H]`` position table (tied).
    """

    def __init__(self, cfg: BertConfig, word_weight: nn.Parameter, position_weight: nn.Parameter) -> None:
        super().__init__()
        # Word + position only (no token types); the LayerNorm is the decoder's own.
        self.embeddings = BertEmbeddings(cfg, word="embedding", token_types=False, word_weight=word_weight,
                                         position_weight=position_weight)
        self.decoder = DecoderStack(cfg)
        self.classifier = DecoderClassifier(cfg, word_weight)

    def forward(self, caption_ids: Tensor, encoder_hidden: Tensor, caption_mask: Tensor, encoder_mask: Tensor) -> Tensor:
        """Next-token logits for every caption position.

        Args:
            caption_ids: ``[B, Lc]`` decoder input ``[CLS] c…`` (0-padded).
            encoder_hidden: ``[B, S, H]`` cross-encoder output (S = L + F).
            caption_mask: ``[B, Lc]``, 1 on real decoder-input tokens.
            encoder_mask: ``[B, S]``, 1 on real text tokens / valid frames.

        Returns:
            ``[B, Lc, vocab]`` logits.
        """
        hidden = self.embeddings(caption_ids)
        self_bias = causal_additive_mask(caption_mask, hidden.dtype)
        encoder_bias = additive_mask(encoder_mask, hidden.dtype)
        return self.classifier(self.decoder(hidden, encoder_hidden, self_bias, encoder_bias))


def _heads(x: Tensor, n: int) -> Tensor:
    """``[R, T, H]`` → ``[R, heads, T, H/heads]``."""
    r, t, h = x.shape
    return x.view(r, t, n, h // n).transpose(1, 2)


def _attend(att: MultiHeadAttention, q_in: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """Scaled dot-product attention with the module's query projection and precomputed ``k``/``v``
    (``[R, heads, K, d]``), in the same operation order as :class:`MultiHeadAttention`."""
    q = _heads(att.query(q_in), att.num_heads)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(att.head_size)
    if bias is not None:
        scores = scores + bias
    out = torch.matmul(att.dropout(scores.softmax(dim=-1)), v)
    return out.transpose(1, 2).reshape(q_in.shape[0], q_in.shape[1], -1)


class IncrementalDecoder:
    """Decodes one new token per step, caching what earlier steps computed.

    The decoder is causal and post-LN per position, so the hidden state of a position never changes
    once computed. Per layer we keep the self-attention keys/values of every prefix of the previous
    step, keyed by (instance, prefix): a beam's new prefix is its parent's prefix plus one token,
    whichever beam it came from, so no back-pointers are needed. The encoder-attention keys/values of
    the cross-encoder output are projected once per instance instead of once per step and layer.
    Matches full recomputation up to float summation order (the masked future positions contribute
    exactly zero there).

    Args:
        decoder: the caption decoder.
        encoder_hidden: ``[N, S, H]`` cross-encoder output, one row per instance.
        encoder_mask: ``[N, S]``.
        beam_size: rows per instance in the ``rows`` passed to :meth:`__call__` (instance = row // beam_size).
    """

    def __init__(self, decoder: UniVLDecoder, encoder_hidden: Tensor, encoder_mask: Tensor, beam_size: int) -> None:
        self.decoder, self.beam_size = decoder, beam_size
        self.layers = decoder.decoder.blocks()
        self.enc_bias = additive_mask(encoder_mask, encoder_hidden.dtype)  # [N, 1, 1, S]
        self.enc_kv = [
            (_heads(layer.enc_attn.att.key(encoder_hidden), layer.enc_attn.att.num_heads),
             _heads(layer.enc_attn.att.value(encoder_hidden), layer.enc_attn.att.num_heads))
            for layer in self.layers
        ]
        # Previous step: per layer stacked keys/values [R_prev, heads, t-1, d], and (instance, prefix) -> row.
        self.states: list[tuple[Tensor, Tensor]] = []
        self.index: dict[tuple[int, tuple[int, ...]], int] = {}

    def __call__(self, rows: Tensor, prefixes: Tensor) -> Tensor:
        """Logits ``[R, 1, vocab]`` of the next token after each prefix ``[R, t]`` (rows instance-major)."""
        t = prefixes.shape[1]
        inst = (rows // self.beam_size).tolist()
        toks = [tuple(p) for p in prefixes.tolist()]
        emb = self.decoder.embeddings
        h = emb.word_embeddings(prefixes[:, -1:]) + emb.position_embeddings.weight[t - 1]
        h = emb.dropout(emb.LayerNorm(h))  # [R, 1, H]
        device = prefixes.device
        parent = torch.as_tensor([self.index[(i, p[:-1])] for i, p in zip(inst, toks)], device=device) if t > 1 else None
        idx = torch.as_tensor(inst, device=device)
        states: list[tuple[Tensor, Tensor]] = []
        for n, layer in enumerate(self.layers):
            att = layer.slf_attn.att
            k, v = _heads(att.key(h), att.num_heads), _heads(att.value(h), att.num_heads)
            if parent is not None:
                k = torch.cat([self.states[n][0][parent], k], dim=2)
                v = torch.cat([self.states[n][1][parent], v], dim=2)
            states.append((k, v))
            h1 = layer.slf_attn.output(_attend(att, h, k, v, None), h)
            ek, ev = self.enc_kv[n]
            h2 = layer.enc_attn.output(_attend(layer.enc_attn.att, h1, ek[idx], ev[idx], self.enc_bias[idx]), h1)
            h = layer.output(layer.intermediate(h2), h2)
        # The next step extends exactly this step's prefixes.
        self.states = states
        self.index = {(i, p): r for r, (i, p) in enumerate(zip(inst, toks))}
        return self.decoder.classifier(h)
