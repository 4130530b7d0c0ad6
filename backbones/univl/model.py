"""UniVL (Luo et al. 2020) as a :class:`meltr.interface.MultiLossModel` with MELTR's 8 losses.

::

    video [B,F,1024] ─ normalize_video (LN) ─ visual (BERT, Linear embedding) ─► V [B,F,H]
    input_ids [B,L] ───────────────────────── bert (BERT) ────────────────────► T [B,L,H]
    cat(T, V) [B,L+F,H] ───────────────────── cross (BERT, no word table) ────► C [B,L+F,H], pooled [B,H]
    caption prefix [B,Lc] ─────────────────── decoder (attends to C) ──────────► logits [B,Lc,vocab]

Losses (names and order of MELTR's fork; "m_" = the same objective on the masked text and masked video):

==========  =====================================================================================
joint       max-margin ranking (margin ``cfg.margin``) on the cosine mean-pooled T·V similarity
alignment   text→video cross-entropy (CrossEn) on the cross-encoder similarity ``similarity_dense(pooled)``
mlm         CE(ignore -1) of ``cls`` on the text part of cross(masked T, masked V)
mfm         NCE of ``cls_visual`` on the video part of cross(masked T, masked V) vs all normalised frames
m_joint     ``joint`` on masked T, V
m_align     ``alignment`` on masked T, V
decoder     CE(ignore -1, PAD targets included) of the decoder over cross(T, V)
m_decoder   ``decoder`` over cross(masked T, masked V); same (unmasked) decoder input and target
==========  =====================================================================================

Module and parameter names are the official ones, so an official state dict of the matching layout
loads by identity (``keys_shapes.json``). Tied tensors are the same ``Parameter`` under several keys:
bert's word table is also ``decoder.embeddings.word_embeddings``, ``decoder.classifier.cls.predictions.decoder``
and ``cls.predictions.decoder``; bert's position table is ``decoder.embeddings.position_embeddings``; the
visual Linear weight ``[H, 1024]`` is ``cls_visual.predictions.weight`` (used un-transposed).

Unused by every loss (present for checkpoint compatibility, as in the official model): ``bert.pooler``,
``visual.pooler``, and ``similarity_dense`` in the ``caption`` layout. They receive no gradient. Nor,
by construction, does ``similarity_dense.bias``: CrossEn (and the official FT-Align max-margin loss)
is invariant to adding one constant to every logit, so its gradient is 0 up to rounding. DDP users
need ``find_unused_parameters=True`` (as the official code uses) or must freeze these parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from backbones.common.bert import BertConfig, BertModel, BertOnlyMLMHead, BertPredictionHeadTransform, init_bert_weights
from backbones.common.losses import cross_en_loss, masked_cross_entropy, masked_frame_nce_loss, max_margin_ranking_loss
from backbones.univl.config import UniVLConfig
from backbones.univl.decoder import IncrementalDecoder, UniVLDecoder
from backbones.univl.generate import BeamOutput, DecodeFn, beam_search
from backbones.univl.inputs import check_batch

__all__ = ["UniVL", "CrossOutput", "NormalizeVideo", "VisualPredictionHead", "VisualOnlyHead", "LOSS_INPUTS"]

_ENCODE = ("input_ids", "token_type_ids", "attention_mask", "video", "video_mask")
_ENCODE_MASKED = ("pairs_masked_text", "token_type_ids", "attention_mask", "masked_video", "video_mask")
_CAPTION = ("input_caption_ids", "decoder_mask", "output_caption_ids")

# Batch keys each loss reads (forward checks only these, so e.g. a joint-only model needs no captions).
LOSS_INPUTS: dict[str, tuple[str, ...]] = {
    "sentiment": _ENCODE,
    "joint": _ENCODE,
    "alignment": _ENCODE,
    "mlm": _ENCODE_MASKED + ("pairs_token_labels",),
    "mfm": _ENCODE_MASKED + ("video", "video_labels_index"),
    "m_joint": _ENCODE_MASKED,
    "m_align": _ENCODE_MASKED,
    "decoder": _ENCODE + _CAPTION,
    "m_decoder": _ENCODE_MASKED + _CAPTION,
}

_UNMASKED_LOSSES = frozenset({"joint", "alignment", "decoder", "sentiment"})
_MASKED_LOSSES = frozenset({"mlm", "mfm", "m_joint", "m_align", "m_decoder"})
_MASKED_CROSS_LOSSES = frozenset({"mlm", "mfm", "m_decoder"})  # share one cross pass on the masked pair


class CrossOutput(NamedTuple):
    """Cross-encoder output for paired rows.

    Attributes:
        hidden: ``[B, L+F, H]``; text positions first.
        pooled: ``[B, H]`` ``tanh(dense(hidden[:, 0]))`` (the text [CLS] slot).
        mask: ``[B, L+F]`` the concatenated attention mask.
    """

    hidden: Tensor
    pooled: Tensor
    mask: Tensor


class NormalizeVideo(nn.Module):
    """LayerNorm over the raw feature dimension (``normalize_video.visual_norm2d``, eps 1e-12)."""

    def __init__(self, video_dim: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.visual_norm2d = nn.LayerNorm(video_dim, eps=eps)

    def forward(self, video: Tensor) -> Tensor:
        """``[B, F, D]`` features of any float dtype → ``[B, F, D]`` in the parameter dtype."""
        # The official code casts to float32 first (features may be stored as float64/float16).
        return self.visual_norm2d(video.to(self.visual_norm2d.weight.dtype))


def _parameter(table: nn.Embedding | nn.Linear) -> nn.Parameter:
    """``table.weight``, typed as the ``nn.Parameter`` it is (torch declares ``weight: Tensor``), to tie it
    elsewhere: a module registers an assigned tensor as a parameter only when it is an ``nn.Parameter``."""
    weight = table.weight
    assert isinstance(weight, nn.Parameter)  # nn.Embedding / nn.Linear create it as one; tying assigns one
    return weight


class VisualPredictionHead(nn.Module):
    """MFM feature predictor ``transform(x) @ W + bias`` with ``W`` the tied visual embedding weight [H, D].

    ``W`` is the weight of ``visual.embeddings.word_embeddings`` (a Linear D→H), used without transposing,
    so the head maps hidden states back into the 1024-d feature space.
    """

    def __init__(self, cfg: BertConfig, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(weight.shape[1]))
        self.transform = BertPredictionHeadTransform(cfg)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[..., H]`` → ``[..., D]``."""
        return self.transform(hidden) @ self.weight + self.bias


class VisualOnlyHead(nn.Module):
    """``predictions.*`` wrapper (official key prefix ``cls_visual.predictions``)."""

    def __init__(self, cfg: BertConfig, weight: nn.Parameter) -> None:
        super().__init__()
        self.predictions = VisualPredictionHead(cfg, weight)

    def forward(self, hidden: Tensor) -> Tensor:
        """``[..., H]`` → ``[..., D]``."""
        return self.predictions(hidden)


class UniVL(nn.Module):
    """UniVL with MELTR's multi-loss ``forward``.

    Args:
        cfg: a validated :class:`UniVLConfig`; ``cfg.losses`` become ``loss_names`` and decide (with
            ``cfg.layout``) which optional modules exist. Absent modules are ``None`` attributes.

    Attributes:
        loss_names: ``cfg.losses`` (MELTR order).
        target_loss: ``cfg.target_loss`` ("alignment" for retrieval, "decoder" for captioning).
    """

    def __init__(self, cfg: UniVLConfig) -> None:
        super().__init__()
        cfg.validate()
        assert cfg.target_loss is not None  # validate(): it is one of cfg.losses
        self.cfg = cfg
        self.loss_names: tuple[str, ...] = tuple(cfg.losses)
        self.target_loss: str = cfg.target_loss
        built = cfg.modules()
        # Registration order = official state_dict order (bert, visual, cross, decoder, cls, cls_visual,
        # similarity_dense, normalize_video).
        self.bert = BertModel(cfg.text, word="embedding", token_types=True)
        self.visual = BertModel(cfg.visual, word="linear", token_types=False)
        word_table = _parameter(self.bert.embeddings.word_embeddings)
        position_table = _parameter(self.bert.embeddings.position_embeddings)
        self.cross: BertModel | None
        self.decoder: UniVLDecoder | None
        self.cls: BertOnlyMLMHead | None
        self.cls_visual: VisualOnlyHead | None
        self.similarity_dense: nn.Linear | None
        self.register_module("cross", BertModel(cfg.cross, word="none", token_types=True) if "cross" in built else None)
        self.register_module("decoder", UniVLDecoder(cfg.decoder, word_table, position_table)
                             if "decoder" in built else None)
        self.register_module("cls", BertOnlyMLMHead(cfg.text, word_table) if "cls" in built else None)
        self.register_module("cls_visual", VisualOnlyHead(cfg.visual, _parameter(self.visual.embeddings.word_embeddings))
                             if "cls_visual" in built else None)
        self.register_module("similarity_dense", nn.Linear(cfg.cross.hidden_size, 1)
                             if "similarity_dense" in built else None)
        self.normalize_video = NormalizeVideo(cfg.video_dim, eps=cfg.visual.layer_norm_eps)
        # Not in any official layout (so never loaded from a checkpoint): the CMU-MOSI regression head on
        # the cross encoder's pooled output, and a projection for visual features that are not 1024-d S3D.
        self.sentiment_head: nn.Linear | None
        self.visual_projection: nn.Linear | None
        self.register_module("sentiment_head", nn.Linear(cfg.cross.hidden_size, 1) if "sentiment_head" in built else None)
        needs_projection = cfg.visual_input_dim not in (0, cfg.video_dim)
        self.register_module("visual_projection", nn.Linear(cfg.visual_input_dim, cfg.video_dim) if needs_projection else None)
        init_bert_weights(self, cfg.text.initializer_range)

    # ------------------------------------------------------------------ encoders

    def encode_text(self, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor) -> Tensor:
        """Text encoder's last layer.

        Args:
            input_ids: ``[B, L]`` word-piece ids. token_type_ids: ``[B, L]`` (or None = zeros).
            attention_mask: ``[B, L]``, 1 on real tokens.

        Returns:
            ``T [B, L, H]``.
        """
        return self.bert(input_ids, attention_mask, token_type_ids).hidden

    def encode_video(self, video: Tensor, video_mask: Tensor) -> Tensor:
        """``normalize_video`` then the visual encoder's last layer.

        Args:
            video: ``[B, F, D]`` raw features. video_mask: ``[B, F]``, 1 on valid frames.

        Returns:
            ``V [B, F, H]``.
        """
        return self.visual(self.prepare_video(video), video_mask).hidden

    def prepare_video(self, video: Tensor) -> Tensor:
        """Raw features ``[B, F, D_in]`` -> ``visual_projection`` (if any) -> ``normalize_video`` ``[B, F, video_dim]``."""
        if self.visual_projection is not None:
            video = self.visual_projection(video)
        return self.normalize_video(video)

    def predict_sentiment(self, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor, video: Tensor,
                          video_mask: Tensor) -> Tensor:
        """CMU-MOSI sentiment ``[B]`` from the cross encoder's pooled output (position 0, text [CLS])."""
        text = self.encode_text(input_ids, token_type_ids, attention_mask)
        hidden = self.encode_video(video, video_mask)
        pooled = self.cross_encode(text, attention_mask, hidden, video_mask).pooled
        return self._require("sentiment_head")(pooled).squeeze(-1)

    def cross_encode(self, text_hidden: Tensor, text_mask: Tensor, video_hidden: Tensor, video_mask: Tensor) -> CrossOutput:
        """Cross encoder on row-wise pairs (text ``i`` with video ``i``).

        Positions run over the concatenated ``L+F`` sequence (video positions start at ``L``, padding
        included); token type 0 marks text, 1 marks video.

        Args:
            text_hidden: ``[B, L, H]``. text_mask: ``[B, L]``. video_hidden: ``[B, F, H]``. video_mask: ``[B, F]``.

        Returns:
            :class:`CrossOutput` (``hidden [B, L+F, H]``, ``pooled [B, H]``, ``mask [B, L+F]``).
        """
        cross = self._require("cross")
        hidden = torch.cat([text_hidden, video_hidden], dim=1)
        mask = torch.cat([text_mask, video_mask], dim=1)
        types = torch.cat([torch.zeros_like(text_mask), torch.ones_like(video_mask)], dim=1).long()
        out = cross(hidden, mask, types)
        return CrossOutput(out.hidden, out.pooled, mask)

    # ------------------------------------------------------------------ similarities

    @staticmethod
    def mean_pool_text(text_hidden: Tensor, text_mask: Tensor) -> Tensor:
        """Masked mean of ``[B, L, H]`` over tokens, **excluding position 0** ([CLS]; [SEP] stays) → ``[B, H]``."""
        keep = text_mask.to(text_hidden.dtype) * (torch.arange(text_mask.shape[1], device=text_mask.device) > 0)
        # clamp: a [CLS]-only row would divide by 0 (NaN) in the official code; equal otherwise.
        return (text_hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)

    @staticmethod
    def mean_pool_video(video_hidden: Tensor, video_mask: Tensor) -> Tensor:
        """Masked mean of ``[B, F, H]`` over valid frames (an empty clip divides by 1) → ``[B, H]``."""
        keep = video_mask.to(video_hidden.dtype)
        return (video_hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)

    def joint_similarity(self, text_hidden: Tensor, text_mask: Tensor, video_hidden: Tensor, video_mask: Tensor,
                         *, cosine: bool = True) -> Tensor:
        """Encoder-only ("joint", FT-Joint) similarity of every text with every video.

        Args:
            text_hidden: ``[Nt, L, H]``. text_mask: ``[Nt, L]``. video_hidden: ``[Nv, F, H]``. video_mask: ``[Nv, F]``.
            cosine: L2-normalise both mean-pooled vectors (fine-tuning, ``use_mil=False``); False gives the raw
                dot product of pre-training (``use_mil=True``).

        Returns:
            ``[Nt, Nv]`` similarities.
        """
        text = self.mean_pool_text(text_hidden, text_mask)
        video = self.mean_pool_video(video_hidden, video_mask)
        if cosine:
            # Official x / ||x|| (no eps); the clamp only matters for an all-zero vector.
            text = text / text.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            video = video / video.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return text @ video.t()

    def alignment_similarity(self, text_hidden: Tensor, text_mask: Tensor, video_hidden: Tensor, video_mask: Tensor,
                             *, text_chunk: int | None = None) -> Tensor:
        """Cross-encoder ("alignment", FT-Align) score of every text with every video.

        All ``Nt·Nv`` pairs go through the cross encoder as one batch (or ``text_chunk`` text rows × all
        videos per call, to bound memory at evaluation; the official code uses chunks of 5). The
        numbers do not depend on the chunking.

        Args:
            text_hidden: ``[Nt, L, H]``. text_mask: ``[Nt, L]``. video_hidden: ``[Nv, F, H]``. video_mask: ``[Nv, F]``.
            text_chunk: text rows per cross-encoder call; None = all at once.

        Returns:
            ``[Nt, Nv]`` logits ``similarity_dense(cross_pooled(text_i, video_j))``.
        """
        head = self._require("similarity_dense")
        n_text, n_video = text_hidden.shape[0], video_hidden.shape[0]
        step = n_text if text_chunk is None else max(1, text_chunk)
        rows = []
        for start in range(0, n_text, step):
            t_hidden, t_mask = text_hidden[start:start + step], text_mask[start:start + step]
            n = t_hidden.shape[0]
            pooled = self.cross_encode(
                repeat(t_hidden, "t l h -> (t v) l h", v=n_video), repeat(t_mask, "t l -> (t v) l", v=n_video),
                repeat(video_hidden, "v f h -> (t v) f h", t=n), repeat(video_mask, "v f -> (t v) f", t=n),
            ).pooled
            rows.append(rearrange(head(pooled), "(t v) 1 -> t v", v=n_video))
        return torch.cat(rows, dim=0)

    # ------------------------------------------------------------------ heads

    def mlm_logits(self, cross_hidden: Tensor, text_length: int) -> Tensor:
        """CMLM head on the text part: ``[B, L+F, H]`` → ``[B, L, vocab]``."""
        return self._require("cls")(cross_hidden[:, :text_length])

    def mfm_scores(self, cross_hidden: Tensor, text_length: int) -> Tensor:
        """CMFM head on the video part: ``[B, L+F, H]`` → ``[B, F, D]`` predicted (normalised) features."""
        return self._require("cls_visual")(cross_hidden[:, text_length:])

    def decode(self, cross_hidden: Tensor, cross_mask: Tensor, caption_ids: Tensor, caption_mask: Tensor) -> Tensor:
        """Decoder logits from an already computed cross-encoder output (reusable across decoding steps).

        Args:
            cross_hidden: ``[B, S, H]``. cross_mask: ``[B, S]``.
            caption_ids: ``[B, Lc]`` decoder input. caption_mask: ``[B, Lc]``.

        Returns:
            ``[B, Lc, vocab]`` logits.
        """
        return self._require("decoder")(caption_ids, cross_hidden, caption_mask, cross_mask)

    def decoder_logits(self, text_hidden: Tensor, text_mask: Tensor, video_hidden: Tensor, video_mask: Tensor,
                       caption_ids: Tensor, caption_mask: Tensor) -> Tensor:
        """Teacher-forced caption logits: cross encoder on (text ``i``, video ``i``), then the decoder.

        Args:
            text_hidden: ``[B, L, H]``. text_mask: ``[B, L]``. video_hidden: ``[B, F, H]``. video_mask: ``[B, F]``.
            caption_ids: ``[B, Lc]`` ``[CLS] c…``. caption_mask: ``[B, Lc]``.

        Returns:
            ``[B, Lc, vocab]`` logits.
        """
        cross = self.cross_encode(text_hidden, text_mask, video_hidden, video_mask)
        return self.decode(cross.hidden, cross.mask, caption_ids, caption_mask)

    # ------------------------------------------------------------------ losses

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The active losses on one batch (see the module docstring), each reduced as the official code.

        Args:
            batch: a :class:`~backbones.univl.inputs.UniVLBatch` (only the keys the active losses read
                are required; see :data:`LOSS_INPUTS`).

        Returns:
            ``{name: 0-dim loss}`` for exactly ``loss_names``, in that order. Dropout follows
            ``self.training``; MELTR's fork returns the same losses in train and eval mode.
        """
        need = set(self.loss_names)
        check_batch(batch, tuple(dict.fromkeys(k for n in self.loss_names for k in LOSS_INPUTS[n])),
                    self.cfg.visual_input_dim or self.cfg.video_dim)
        if "sentiment" in self.loss_names and not isinstance(batch.get("label"), Tensor):
            raise ValueError("UniVL batch: the sentiment loss needs a float tensor 'label' [B]")
        margin = self.cfg.margin
        text_mask, video_mask = batch["attention_mask"], batch["video_mask"]
        types = batch["token_type_ids"]
        out: dict[str, Tensor] = {}
        video_normalized = None
        if need & (_UNMASKED_LOSSES | {"mfm"}):
            video_normalized = self.prepare_video(batch["video"])
        if need & _UNMASKED_LOSSES:
            text = self.encode_text(batch["input_ids"], types, text_mask)
            video = self.visual(video_normalized, video_mask).hidden
            if "joint" in need:
                out["joint"] = max_margin_ranking_loss(self.joint_similarity(text, text_mask, video, video_mask), margin)
            if "alignment" in need:
                out["alignment"] = cross_en_loss(self.alignment_similarity(text, text_mask, video, video_mask))
            if "decoder" in need:
                logits = self.decoder_logits(text, text_mask, video, video_mask, batch["input_caption_ids"],
                                             batch["decoder_mask"])
                out["decoder"] = masked_cross_entropy(logits, batch["output_caption_ids"])
            if "sentiment" in need:
                pooled = self.cross_encode(text, text_mask, video, video_mask).pooled
                pred = self._require("sentiment_head")(pooled).squeeze(-1)
                err = pred - batch["label"].to(pred.dtype)
                out["sentiment"] = err.abs().mean() if self.cfg.sentiment_loss == "l1" else err.square().mean()
        if need & _MASKED_LOSSES:
            m_text = self.encode_text(batch["pairs_masked_text"], types, text_mask)
            m_video = self.encode_video(batch["masked_video"], video_mask)
            if "m_joint" in need:
                sim = self.joint_similarity(m_text, text_mask, m_video, video_mask)
                out["m_joint"] = max_margin_ranking_loss(sim, margin)
            if "m_align" in need:
                out["m_align"] = cross_en_loss(self.alignment_similarity(m_text, text_mask, m_video, video_mask))
            if need & _MASKED_CROSS_LOSSES:
                cross = self.cross_encode(m_text, text_mask, m_video, video_mask)
                length = m_text.shape[1]
                if "mlm" in need:
                    out["mlm"] = masked_cross_entropy(self.mlm_logits(cross.hidden, length), batch["pairs_token_labels"])
                if "mfm" in need:
                    # Targets are the *unmasked* features after normalize_video.
                    assert video_normalized is not None  # prepared above: "mfm" is in need
                    out["mfm"] = masked_frame_nce_loss(self.mfm_scores(cross.hidden, length), video_normalized,
                                                       video_mask, batch["video_labels_index"])
                if "m_decoder" in need:
                    logits = self.decode(cross.hidden, cross.mask, batch["input_caption_ids"], batch["decoder_mask"])
                    out["m_decoder"] = masked_cross_entropy(logits, batch["output_caption_ids"])
        return {name: out[name] for name in self.loss_names}

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor, video: Tensor,
                 video_mask: Tensor, *, beam_size: int = 5, max_length: int | None = None, bos_id: int = 101,
                 eos_id: int = 102, incremental: bool = True) -> BeamOutput:
        """Captions by the official beam search (:mod:`backbones.univl.generate`), cross output cached.

        With ``incremental`` (default) the decoder states are cached too: each step runs the decoder on
        the new token only (:class:`~backbones.univl.decoder.IncrementalDecoder`); otherwise each step
        re-decodes the whole prefix over the cached cross-encoder output. The official code recomputes
        the encoders, the cross encoder and the whole prefix at every step.

        Call in eval mode (dropout would make every step stochastic, as it would officially).

        Args:
            input_ids: ``[B, L]`` encoder text (transcript, or ``[CLS] [SEP]``). token_type_ids: ``[B, L]``.
            attention_mask: ``[B, L]``. video: ``[B, F, D]`` raw features. video_mask: ``[B, F]``.
            beam_size: beams per video (official 5). max_length: generated tokens (default ``cfg.max_words``).
            bos_id: start token ([CLS]). eos_id: end token ([SEP]).
            incremental: cache decoder states (see above).

        Returns:
            :class:`~backbones.univl.generate.BeamOutput` (best ids per video without [CLS], ``[B]`` scores).
        """
        text = self.encode_text(input_ids, token_type_ids, attention_mask)
        video_hidden = self.encode_video(video, video_mask)
        cross = self.cross_encode(text, attention_mask, video_hidden, video_mask)
        if incremental:
            decoder = self._require("decoder")
            assert isinstance(decoder, UniVLDecoder)  # __init__ registers "decoder" as a UniVLDecoder or None
            decode: DecodeFn = IncrementalDecoder(decoder, cross.hidden, cross.mask, beam_size)
        else:
            # One cached copy per beam, instance-major, like the official repeat(1, n_bm, 1).
            hidden = cross.hidden.repeat_interleave(beam_size, dim=0)
            mask = cross.mask.repeat_interleave(beam_size, dim=0)

            def decode(rows: Tensor, prefixes: Tensor) -> Tensor:
                return self.decode(hidden[rows], mask[rows], prefixes, torch.ones_like(prefixes))

        return beam_search(decode, input_ids.shape[0], beam_size=beam_size,
                           max_length=self.cfg.max_words if max_length is None else max_length,
                           bos_id=bos_id, eos_id=eos_id, device=input_ids.device)

    # ------------------------------------------------------------------ helpers

    def _require(self, name: str) -> nn.Module:
        module = getattr(self, name)
        if module is None:
            raise RuntimeError(f"UniVL was built without '{name}' (layout {self.cfg.layout!r}, losses "
                               f"{self.loss_names}); use a layout or losses that include it")
        return module
