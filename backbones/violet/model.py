"""VIOLET (Fu et al. 2021) as the MELTR fork fine-tunes it, as a :class:`meltr.interface.MultiLossModel`.

::

    video [B,T,3,S,S] in [0,1] ─ Normalize(ImageNet) ─ Video Swin-S ─► [B,T,h·w,D]
        ─ prepend frame CLS, + emb_pos + emb_len, LayerNorm ─────────► visual tokens [B, L_v = T·(1+h·w), D]
    text ids [B,L] ─ BERT embeddings (word + position + type 0, LN) ─► text tokens [B, L, D]
    [visual ; text] ─ 12 post-LN BERT layers (text padding masked) ──► [B, L_v + L, D]
    heads: VTM / OE / MC read the text [CLS] at index L_v; MTM the text part; MVM the visual part

Losses (``shared/reference/violet.md`` §3; names and order of the fork; the target loss defaults to the first active one),
each ``CrossEntropy(ignore_index=-1)`` averaged over the kept targets of the batch:

=====  ==========================================================================================
oe     ``fc_oe`` answer logits of (video, question) against ``answer``
mc     ``fc_mc`` logit per (video, option) pair, softmax over the O options against ``answer``
vtm    every (video i, text j) pair of the batch, ``fc(·)/0.05`` → [B, B]; softmax over texts per video
mtm    ``fc_mtm`` (BERT MLM head) on the text part of (masked video, masked text)
mvm    ``fc_mvm`` (8192 DALL-E classes) on the visual part of the same pass (MC: the answer's option row)
=====  ==========================================================================================

With ``fork_quirks=False`` (default, the paper) VTM and the answer loss (oe / mc) see the clean video, MTM/MVM the
jointly masked pair, QA-MC masks every option text normally and pairs each video with its answer's text
for VTM. ``fork_quirks=True`` reproduces the published fork (see :class:`~backbones.violet.config.VioletConfig`
and :mod:`backbones.violet.inputs`); the golden parity tests use it.

Module and parameter names are the official ones (``enc_img.{emb_cls,emb_pos,emb_len,swin,norm}``,
``enc_txt.emb_txt``, ``trsfr.layer.{i}``, heads ``fc`` (retrieval VTM) / ``fc_vtm`` (QA VTM), ``fc_oe``,
``fc_mc``, ``fc_mtm.predictions.*``, ``fc_mvm``; MLP heads are ``Sequential(Dropout, Linear, ReLU, Linear)``
with keys ``.1.*``/``.3.*``), so official checkpoints load by identity (``keys_shapes.json``). The MTM
decoder is its own tensor (not tied to the word embeddings); ``fc_mtm.predictions.decoder.bias`` is
``fc_mtm.predictions.bias``.

Parameters whose gradient is (up to rounding) zero by construction: the last bias of the VTM and MC heads
(a softmax over a row is invariant to adding one constant to every logit), the ``emb_len`` rows beyond T and
the ``emb_pos`` slots beyond the frame's patches. Differences from the fork that do not depend on the switch:
masks are drawn with torch's RNG (the fork uses numpy for MVM), a text row without a maskable token raises
(the fork loops forever), MVM blocks for grids below 3 patches are 1×1 (the fork crashes), a batch whose
targets are all ignored gives loss 0 (the fork NaN), and the VTM negatives are the whole batch (under the
fork's DataParallel only the per-GPU chunk).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from backbones.common.bert import BertConfig, BertEmbeddings, BertEncoder, BertOnlyMLMHead, additive_mask, init_bert_weights
from backbones.common.losses import masked_cross_entropy
from backbones.violet.config import VioletConfig
from backbones.violet.inputs import (
    MASK_KEYS,
    VioletMasks,
    block_cover,
    check_batch,
    fork_option_row_masks,
    mask_tokens,
    mask_video,
    mvm_labels,
)
from backbones.violet.swin import SwinTransformer3D

__all__ = ["Violet", "VisualEmbedding", "TextEmbedding", "mlp_head", "PIXEL_MEAN", "PIXEL_STD"]

# torchvision Normalize constants (ImageNet), applied inside the model to [0, 1] frames.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def mlp_head(dim: int, out: int, dropout: float) -> nn.Sequential:
    """VIOLET's task head ``Sequential(Dropout, Linear(D, 2D), ReLU, Linear(2D, out))`` (keys ``.1.*``, ``.3.*``)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, out))


class VisualEmbedding(nn.Module):
    """Official ``EncImg``: Swin features of every frame, a frame CLS, spatial + temporal embeddings, LayerNorm."""

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        dim = cfg.bert.hidden_size
        self.emb_cls = nn.Parameter(0.02 * torch.randn(1, 1, 1, dim))
        self.emb_pos = nn.Parameter(0.02 * torch.randn(1, 1, 1 + cfg.max_patches, dim))
        self.emb_len = nn.Parameter(0.02 * torch.randn(1, cfg.max_frames, 1, dim))
        self.swin = SwinTransformer3D(cfg.swin)
        self.norm = nn.LayerNorm(dim)

    @staticmethod
    def normalize(video: Tensor) -> Tensor:
        """ImageNet ``Normalize`` over the channel axis of ``[B, T, 3, S, S]`` (``(x - mean) / std``)."""
        mean = torch.tensor(PIXEL_MEAN, dtype=video.dtype, device=video.device)[:, None, None]
        std = torch.tensor(PIXEL_STD, dtype=video.dtype, device=video.device)[:, None, None]
        return (video - mean) / std

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """``video [B, T, 3, S, S]`` in [0, 1] → tokens ``[B, T·(1+P), D]`` (frame-major: CLS then the h×w
        patches row-major) and their mask ``[B, T·(1+P)]`` (all ones, int64)."""
        b, t = video.shape[:2]
        x = self.normalize(video.to(self.emb_cls.dtype))
        f = self.swin(rearrange(x, "b t c h w -> b c t h w"))
        f = rearrange(f, "b d t h w -> b t (h w) d")
        patches = f.shape[2]
        f = torch.cat([self.emb_cls.expand(b, t, 1, -1), f], dim=2)
        f = f + self.emb_pos[:, :, :1 + patches] + self.emb_len[:, :t]
        f = rearrange(self.norm(f), "b t p d -> b (t p) d")
        return f, torch.ones(f.shape[:2], dtype=torch.long, device=f.device)


class TextEmbedding(nn.Module):
    """Official ``EncTxt``: bert-base's embedding layer (word + position 0..L-1 + token type 0, LN, dropout)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.emb_txt = BertEmbeddings(cfg, word="embedding", token_types=True)

    def forward(self, ids: Tensor) -> Tensor:
        """``[N, L]`` ids → ``[N, L, D]``."""
        return self.emb_txt(ids)


class Violet(nn.Module):
    """VIOLET with the MELTR fork's multi-loss ``forward`` for one task.

    Args:
        cfg: a :class:`VioletConfig`; ``cfg.task`` picks the heads, ``cfg.losses`` the returned losses.

    Attributes:
        loss_names: ``cfg.losses`` (MELTR order). target_loss: ``cfg.target_loss`` (default the first of them).
    """

    loss_names: tuple[str, ...]
    target_loss: str

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        cfg.validate()
        assert cfg.target_loss is not None  # validate(): it is one of cfg.losses
        self.cfg, self.loss_names, self.target_loss = cfg, tuple(cfg.losses), cfg.target_loss
        dim, active = cfg.bert.hidden_size, set(cfg.losses)
        self.enc_img = VisualEmbedding(cfg)
        self.enc_txt = TextEmbedding(cfg.bert)
        self.trsfr = BertEncoder(cfg.bert)
        # Registration order = official state_dict order. The task's own head always exists (evaluation
        # reads it); the auxiliary heads only for active losses.
        self.vtm_head_name = "fc" if cfg.task == "retrieval" else "fc_vtm"
        heads: dict[str, nn.Module] = {}
        if cfg.task == "qa_oe":
            heads["fc_oe"] = mlp_head(dim, cfg.n_answers, cfg.oe_dropout)
        if cfg.task == "qa_mc":
            heads["fc_mc"] = mlp_head(dim, 1, cfg.head_dropout)
        if cfg.task == "retrieval" or "vtm" in active:
            heads[self.vtm_head_name] = mlp_head(dim, 1, cfg.head_dropout)
        if "mtm" in active:
            heads["fc_mtm"] = BertOnlyMLMHead(cfg.bert, bias_alias=True)
        if "mvm" in active:
            heads["fc_mvm"] = mlp_head(dim, cfg.vq_size, cfg.head_dropout)
        for name, head in heads.items():
            self.add_module(name, head)
        # BERT parts start from BERT's init (the official code loads bert-base-uncased); the MLP heads keep
        # PyTorch's default init and Swin its own, as officially.
        for module in (self.enc_txt, self.trsfr, heads.get("fc_mtm")):
            if module is not None:
                init_bert_weights(module, cfg.bert.initializer_range)

    # ------------------------------------------------------------------ encoders

    def encode_video(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """``video [N, T, 3, S, S]`` in [0, 1] → ``(feat [N, L_v, D], mask [N, L_v])`` (official ``go_feat``)."""
        return self.enc_img(video)

    def encode_text(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``ids, mask [N, L]`` → ``(feat [N, L, D], mask)``: the text embedding (no encoder of its own)."""
        return self.enc_txt(ids), mask

    def cross(self, video_feat: Tensor, video_mask: Tensor, text_feat: Tensor, text_mask: Tensor) -> Tensor:
        """Cross encoder on row-wise pairs, visual tokens first: ``[N, L_v + L, D]`` (official ``go_cross``).

        Padding is a key mask (``-10000``, the authors' transformers 4.18 value); padded queries still get outputs.
        """
        feat = torch.cat([video_feat, text_feat], dim=1)
        mask = torch.cat([video_mask, text_mask], dim=1)
        return self.trsfr(feat, additive_mask(mask, feat.dtype))[-1]

    # ------------------------------------------------------------------ heads

    def _head(self, name: str) -> nn.Module:
        head = getattr(self, name, None)
        if head is None:
            raise RuntimeError(f"VIOLET ({self.cfg.task}, losses {self.loss_names}) was built without '{name}'")
        return head

    def vtm_logits(self, video_feat: Tensor, video_mask: Tensor, text_feat: Tensor, text_mask: Tensor) -> Tensor:
        """VTM training logits of every (video i, text j) pair: ``[Nv, Nt]`` = ``fc(cls) / temperature``."""
        nv, nt = video_feat.shape[0], text_feat.shape[0]
        hidden = self.cross(repeat(video_feat, "v l d -> (v t) l d", t=nt), repeat(video_mask, "v l -> (v t) l", t=nt),
                            repeat(text_feat, "t l d -> (v t) l d", v=nv), repeat(text_mask, "t l -> (v t) l", v=nv))
        logits = self._head(self.vtm_head_name)(hidden[:, video_feat.shape[1]])
        return rearrange(logits, "(v t) 1 -> v t", t=nt) / self.cfg.vtm_temperature

    def pair_scores(self, video_feat: Tensor, video_mask: Tensor, text_feat: Tensor, text_mask: Tensor,
                    logits: bool = False) -> Tensor:
        """Evaluation score ``sigmoid(fc(cls))`` of paired rows (video i with text i): ``[N]`` (no temperature).
        ``logits=True`` returns ``fc(cls)`` itself: the same order, without float32 saturation ties at 1.0."""
        hidden = self.cross(video_feat, video_mask, text_feat, text_mask)
        score = self._head(self.vtm_head_name)(hidden[:, video_feat.shape[1]]).squeeze(-1)
        return score if logits else torch.sigmoid(score)

    def retrieval_scores(self, video_feats: Tensor, video_masks: Tensor, text_feats: Tensor, text_masks: Tensor,
                         batch_size: int = 100, logits: bool = False) -> Tensor:
        """:meth:`pair_scores` of every (text, video) pair, ``batch_size`` pairs per cross-encoder call.

        Features come from :meth:`encode_video` / :meth:`encode_text` once, so Swin runs once per video (the
        official ``eval_retrieval.py`` enumerates the pairs text-major in batches of 100 per GPU). Call it
        under ``torch.no_grad()`` for evaluation.

        Returns:
            ``[n_text, n_video]`` scores in (0, 1) (``logits=True``: before the sigmoid), rows = texts.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n_text, n_video = text_feats.shape[0], video_feats.shape[0]
        pairs = torch.arange(n_text * n_video, device=video_feats.device)
        scores = []
        for chunk in pairs.split(batch_size):
            t, v = chunk // n_video, chunk % n_video
            scores.append(self.pair_scores(video_feats[v], video_masks[v], text_feats[t], text_masks[t], logits=logits))
        return torch.cat(scores).view(n_text, n_video)

    def _answer_logits(self, video_feat: Tensor, video_mask: Tensor, text_feat: Tensor, text_mask: Tensor,
                       options: int) -> Tensor:
        """OE ``[B, n_answers]`` (``options == 0``) or MC ``[B, O]`` logits; MC texts are ``[B·O, L, D]``
        video-major, and each video's features are repeated once per option."""
        if not options:
            return self._head("fc_oe")(self.cross(video_feat, video_mask, text_feat, text_mask)[:, video_feat.shape[1]])
        hidden = self.cross(repeat(video_feat, "b l d -> (b o) l d", o=options),
                            repeat(video_mask, "b l -> (b o) l", o=options), text_feat, text_mask)
        return rearrange(self._head("fc_mc")(hidden[:, video_feat.shape[1]]), "(b o) 1 -> b o", o=options)

    def qa_logits(self, batch: Mapping[str, Any]) -> Tensor:
        """QA logits on the clean video and text (what the official ``test`` argmaxes).

        Returns:
            ``[B, n_answers]`` (qa_oe) or ``[B, O]`` (qa_mc).
        """
        if self.cfg.task == "retrieval":
            raise RuntimeError("qa_logits needs a qa_oe or qa_mc model")
        check_batch(batch, self.cfg, training=False)
        video_feat, video_mask = self.encode_video(batch["video"])
        ids, mask = batch["text_ids"], batch["text_mask"]
        options = ids.shape[1] if self.cfg.task == "qa_mc" else 0
        text_feat, text_mask = self.encode_text(ids.flatten(0, -2), mask.flatten(0, -2))
        return self._answer_logits(video_feat, video_mask, text_feat, text_mask, options)

    # ------------------------------------------------------------------ training

    def draw_masks(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> VioletMasks:
        """The fork's ``masking(img, txt, vq)`` (:mod:`backbones.violet.inputs`), on new tensors (inputs untouched).

        Text masks are drawn only when MTM or MVM is active (otherwise the text is returned unmasked); MVM
        labels need ``vq`` when MVM is active (otherwise they are all -1).
        """
        video, ids = batch["video"], batch["text_ids"]
        b, t, s = video.shape[0], video.shape[1], video.shape[-1]
        cover = block_cover(b, t, s // self.cfg.swin.stride, generator=generator, device=video.device)
        vq = batch["vq"] if "mvm" in self.loss_names else torch.full((b, cover[0].numel() + t), -1, device=video.device)
        masked_ids, labels = ids, torch.full_like(ids, -1)
        if {"mtm", "mvm"} & set(self.loss_names):
            if self.cfg.task == "qa_mc" and self.cfg.fork_quirks:
                masked_ids, labels = fork_option_row_masks(ids, self.cfg.mtm_prob, generator)
            else:
                masked_ids, labels = mask_tokens(ids, self.cfg.mtm_prob, generator)
        return VioletMasks(masked_video=mask_video(video, cover), mvm_labels=mvm_labels(vq, cover),
                           masked_text_ids=masked_ids, mtm_labels=labels)

    def task_logits(self, batch: Mapping[str, Any], masks: VioletMasks | Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Head outputs of the active losses, in the fork's form; ``masks`` as :meth:`draw_masks` returns them,
        or any mapping that holds :data:`~backbones.violet.inputs.MASK_KEYS` (a batch that carries them).

        Returns:
            ``vtm [B, B]`` (rows = videos, already / temperature); ``oe [B, n_answers]``; ``mc [B, O]``;
            ``mtm [N, L, vocab]`` and ``mvm [N, L_v, vq_size]`` with N = B, or B·O option rows for qa_mc
            (MVM is reduced to the answer's row in the loss).
        """
        cfg, need = self.cfg, set(self.loss_names)
        quirks, options = cfg.fork_quirks, (batch["text_ids"].shape[1] if cfg.task == "qa_mc" else 0)
        ids, mask = batch["text_ids"].flatten(0, -2), batch["text_mask"].flatten(0, -2)
        out: dict[str, Tensor] = {}
        masked_feat = None
        if need & {"mtm", "mvm"} or quirks:
            masked_feat = self.encode_video(masks["masked_video"])
        if need & {"oe", "mc", "vtm"}:
            # Fork quirk (3): masking is in place, so these losses see the masked video too.
            if quirks:
                assert masked_feat is not None  # encoded above: quirks
                video_feat, video_mask = masked_feat
            else:
                video_feat, video_mask = self.encode_video(batch["video"])
            text_feat = self.enc_txt(ids)
            if need & {"oe", "mc"}:
                answer = "oe" if cfg.task == "qa_oe" else "mc"  # the task's answer loss (not target_loss: that is any loss)
                out[answer] = self._answer_logits(video_feat, video_mask, text_feat, mask, options)
            if "vtm" in need:
                if options and quirks:
                    # Fork quirk (2): the first B rows of the option-expanded batch (options of video 0, ...).
                    b = video_feat.shape[0]
                    rows = torch.arange(b, device=ids.device)
                    vf, vm = video_feat[rows // options], video_mask[rows // options]
                    tf, tm = text_feat[:b], mask[:b]
                elif options:
                    # Paper: video i against the answer's text of every video j.
                    pick = torch.arange(video_feat.shape[0], device=ids.device) * options + batch["answer"]
                    vf, vm, tf, tm = video_feat, video_mask, text_feat[pick], mask[pick]
                else:
                    vf, vm, tf, tm = video_feat, video_mask, text_feat, mask
                out["vtm"] = self.vtm_logits(vf, vm, tf, tm)
        if need & {"mtm", "mvm"}:
            assert masked_feat is not None  # encoded above: "mtm" or "mvm" is in need
            vf, vm = masked_feat
            if options:
                vf, vm = repeat(vf, "b l d -> (b o) l d", o=options), repeat(vm, "b l -> (b o) l", o=options)
            hidden = self.cross(vf, vm, self.enc_txt(masks["masked_text_ids"].flatten(0, -2)), mask)
            length = vf.shape[1]
            if "mtm" in need:
                out["mtm"] = self._head("fc_mtm")(hidden[:, length:])
            if "mvm" in need:
                out["mvm"] = self._head("fc_mvm")(hidden[:, :length])
        return out

    def forward(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The active losses on one batch, each reduced as the fork reduces it.

        Masks are drawn here (:meth:`draw_masks`, torch RNG or ``generator``) unless the batch carries all of
        :data:`~backbones.violet.inputs.MASK_KEYS`.

        Returns:
            ``{name: 0-dim loss}`` for exactly ``loss_names``, in that order.
        """
        check_batch(batch, self.cfg)
        if all(k in batch for k in MASK_KEYS):
            masks: VioletMasks | Mapping[str, Tensor] = {k: batch[k] for k in MASK_KEYS}
        else:
            masks = self.draw_masks(batch, generator)
        logits = self.task_logits(batch, masks)
        losses: dict[str, Tensor] = {}
        for name in self.loss_names:
            if name == "vtm":
                target = torch.arange(logits["vtm"].shape[0], device=logits["vtm"].device)
            elif name == "mtm":
                target = masks["mtm_labels"].flatten(0, -2)
            elif name == "mvm":
                target = masks["mvm_labels"]
                if self.cfg.task == "qa_mc":
                    # The fork keeps the MVM logits of the answer's option row.
                    options = batch["text_ids"].shape[1]
                    rows = torch.arange(target.shape[0], device=target.device) * options + batch["answer"]
                    logits["mvm"] = logits["mvm"][rows]
            else:
                target = batch["answer"]
            losses[name] = masked_cross_entropy(logits[name], target)
        return losses
