"""UniVL's caption decoder (``decoder.*``): post-LN Transformer decoder over the cross-encoder output.

Key layout (official names): ``embeddings.{word_embeddings, position_embeddings, LayerNorm}`` (the two
tables are *bert's* tables, tied), ``decoder.layer.{i}.{slf_attn, enc_attn}.{att.{query,key,value},
output.{dense,LayerNorm}}``, ``decoder.layer.{i}.{intermediate, output}``, and the vocabulary head
``classifier.cls.predictions.*`` whose ``decoder.weight`` is again bert's word table.
"""

from __future__ import annotations

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

__all__ = ["DecoderAttention", "DecoderLayer", "DecoderStack", "DecoderClassifier", "UniVLDecoder"]


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
