"""All-in-one (Wang et al. 2022) as the MELTR fork fine-tunes it on MSRVTT, as a :class:`meltr.interface.MultiLossModel`.

One shared ViT reads text tokens and frame patches in one sequence; only BERT's *embedding* layer is used
for text (``shared/reference/allinone.md`` §1)::

    text_ids [B,L] ─ text_embeddings (BERT) + token_type_embeddings[0] ──────────► text  [B,L,D]
    video [B,T,3,H,W] ─ transformer.embed (patches, CLS, pos, temporal) + token_type_embeddings[1] ─► frames [B·T,N,D]

    joint      per frame row b·T+t: [text_b ; frames_{b,t}], roll of the video part before every block
    text only  text_b repeated per frame (T copies in training, one in eval: same mean without dropout)
    video only frames_{b,t} alone, no roll: frames never interact

Each pass ends with the final LayerNorm and the **mean over the T frames** ``[B, S, D]``. Losses, in the
order of ``loss_names`` (target loss first, see :class:`~backbones.allinone.config.AllInOneConfig`):

=========  ===========================================================================================
mlm        joint pass on ``mlm_ids``; ``mlm_score`` on the text part; CE over the labels != -100 (mean)
ind_itc    cosine of ``txt_proj(text-only mean[:, 0])`` and ``vid_proj(video-only mean[:, 0])``; symmetric
           InfoNCE at temperature 0.05: ``CE(S/τ) + CE(Sᵀ/τ)`` (the **sum** of both directions)
=========  ===========================================================================================

``ind_itc`` uses the local batch only, as the official code (no all-gather: under DDP each rank contrasts
its own per-GPU batch of 16). A recipe that wants global negatives must gather the embeddings itself.

Unused by both losses (present for checkpoint compatibility): ``pooler`` (it receives no gradient; use
``find_unused_parameters=True`` under DDP or freeze it) and row 1 of ``text_embeddings.token_type_embeddings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from backbones.allinone.config import AllInOneConfig
from backbones.allinone.inputs import check_batch
from backbones.allinone.vit import VideoTransformer, random_patch_perm
from backbones.common.bert import BertEmbeddings, BertLMPredictionHead, BertPooler, init_bert_weights
from backbones.common.losses import masked_cross_entropy

__all__ = ["AllInOne", "PassOutput", "COSINE_EPS", "MLM_IGNORE", "PAD_ID"]

COSINE_EPS = 1e-8  # official sim_matrix: each row is divided by max(norm, 1e-8)
MLM_IGNORE = -100  # HF collator label for positions without an MLM target
PAD_ID = 0  # bert-base-uncased [PAD]


class PassOutput(NamedTuple):
    """One pass through the shared ViT.

    Attributes:
        hidden: ``[B·T, S, D]`` after the final LayerNorm, before the frame mean (row ``b·T + t``).
        mean: ``[B, S, D]`` the mean over the T frame rows of each clip.
        block_inputs: what each block received (after the roll); empty unless requested.
        block_outputs: each block's output; empty unless requested.
    """

    hidden: Tensor
    mean: Tensor
    block_inputs: tuple[Tensor, ...]
    block_outputs: tuple[Tensor, ...]


class AllInOne(nn.Module):
    """All-in-one with the fork's two losses.

    Args:
        cfg: a validated :class:`AllInOneConfig`.

    Attributes:
        loss_names: ``cfg.loss_names`` (target loss first).
        target_loss: ``cfg.target_loss``.
    """

    def __init__(self, cfg: AllInOneConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.loss_names: tuple[str, ...] = cfg.loss_names
        self.target_loss: str = cfg.target_loss
        text = cfg.text_config()
        # Registration order = official state_dict order.
        self.text_embeddings = BertEmbeddings(text, word="embedding", token_types=True)
        # HF's BertEmbeddings blocks the gradient of the [PAD] row (padding_idx 0); the row itself is still
        # initialised and stored like any other.
        self.text_embeddings.word_embeddings.padding_idx = PAD_ID
        self.token_type_embeddings = nn.Embedding(2, cfg.hidden_size)  # modality: 0 = text, 1 = video
        self.transformer = VideoTransformer(cfg)
        self.pooler = BertPooler(text)
        self.mlm_score = BertLMPredictionHead(text)  # own decoder (not tied to the word table) + bias
        self.txt_proj = nn.Linear(cfg.hidden_size, cfg.shared_embedding_dim)
        self.vid_proj = nn.Linear(cfg.hidden_size, cfg.shared_embedding_dim)
        # objectives.init_weights on everything outside the ViT (the padding row 0 is overwritten too).
        for head in (self.text_embeddings, self.token_type_embeddings, self.pooler, self.mlm_score,
                     self.txt_proj, self.vid_proj):
            init_bert_weights(head, cfg.initializer_range)

    # ------------------------------------------------------------------ embeddings

    def embed_text(self, text_ids: Tensor) -> Tensor:
        """``[B, L]`` ids → ``[B, L, D]``: BERT embeddings (word + position + type 0, LN, dropout) + modality 0."""
        return self.text_embeddings(text_ids) + self.token_type_embeddings.weight[0]

    def embed_video(self, video: Tensor, patch_perm: Tensor | None = None) -> Tensor:
        """``[B, T, 3, H, W]`` → ``[B·T, 1 + P, D]`` frame tokens + modality 1.

        Args:
            video: normalised frames.
            patch_perm: ``[B·T, P]`` patch order (see :meth:`VideoTransformer.embed`). None: raster order,
                or a fresh random order per frame when ``cfg.patch_shuffle`` and in training mode.
        """
        if patch_perm is None and self.cfg.patch_shuffle and self.training:
            patch_perm = random_patch_perm(video.shape[0] * video.shape[1], self.cfg.num_patches, video.device)
        return self.transformer.embed(video, patch_perm) + self.token_type_embeddings.weight[1]

    # ------------------------------------------------------------------ the three passes

    def joint(self, text_ids: Tensor, text_mask: Tensor, video: Tensor, patch_perm: Tensor | None = None, *,
              return_intermediates: bool = False) -> PassOutput:
        """Joint pass: per frame row, the clip's text then the frame's tokens, rolled before every block.

        Args:
            text_ids: ``[B, L]``. text_mask: ``[B, L]``. video: ``[B, T, 3, H, W]``.
            patch_perm: see :meth:`embed_video`.
            return_intermediates: also return each block's input and output.

        Returns:
            :class:`PassOutput` over ``S = L + 1 + P`` tokens (text first).
        """
        frames = self.cfg.num_frames
        text = self.embed_text(text_ids).repeat_interleave(frames, dim=0)
        x = torch.cat([text, self.embed_video(video, patch_perm)], dim=1)
        mask = torch.cat([text_mask.repeat_interleave(frames, dim=0),
                          torch.ones(x.shape[0], x.shape[1] - text.shape[1], dtype=text_mask.dtype, device=x.device)], 1)
        return self._pass(x, mask, frames, text.shape[1], return_intermediates)

    def text_only(self, text_ids: Tensor, text_mask: Tensor) -> PassOutput:
        """Text-only pass (no video, no roll). In training the text runs once per frame as officially (the
        copies differ only by dropout); in eval once, which gives the same frame mean."""
        copies = self.cfg.num_frames if self.training else 1
        text = self.embed_text(text_ids).repeat_interleave(copies, dim=0)
        return self._pass(text, text_mask.repeat_interleave(copies, dim=0), copies, None, False)

    def video_only(self, video: Tensor, patch_perm: Tensor | None = None) -> PassOutput:
        """Video-only pass: each frame's tokens alone, no mask, no roll (frames never interact)."""
        return self._pass(self.embed_video(video, patch_perm), None, self.cfg.num_frames, None, False)

    def _pass(self, x: Tensor, key_mask: Tensor | None, copies: int, roll_from: int | None,
              return_intermediates: bool) -> PassOutput:
        bias = None
        if key_mask is not None:
            # Official masked_fill(-inf) on padded keys (every row keeps its [CLS], so no row is all -inf).
            bias = torch.zeros(key_mask.shape, dtype=x.dtype, device=x.device).masked_fill(key_mask == 0, float("-inf"))
            bias = bias[:, None, None, :]
        out = self.transformer(x, bias, roll_from, return_intermediates)
        mean = rearrange(out.hidden, "(b t) s d -> b t s d", t=copies).mean(dim=1)
        return PassOutput(out.hidden, mean, out.block_inputs, out.block_outputs)

    # ------------------------------------------------------------------ heads and embeddings

    def mlm_logits(self, joint: PassOutput, text_length: int) -> Tensor:
        """``mlm_score`` on the text part of a joint pass's frame mean: ``[B, L, vocab]``."""
        return self.mlm_score(joint.mean[:, :text_length])

    def encode_text(self, text_ids: Tensor, text_mask: Tensor, *, normalize: bool = True) -> Tensor:
        """Retrieval embedding of captions: ``txt_proj`` of the text-only pass's [CLS] → ``[B, shared_dim]``.

        Args:
            text_ids: ``[B, L]``. text_mask: ``[B, L]``.
            normalize: divide by ``max(‖·‖, 1e-8)`` (the official ``sim_matrix``), so that
                ``encode_text(...) @ encode_video(...).T`` is the official cosine similarity.
        """
        emb = self.txt_proj(self.text_only(text_ids, text_mask).mean[:, 0])
        return _l2_normalize(emb) if normalize else emb

    def encode_video(self, video: Tensor, *, patch_perm: Tensor | None = None, normalize: bool = True) -> Tensor:
        """Retrieval embedding of clips: ``vid_proj`` of the video-only pass's frame-averaged frame CLS.

        Args:
            video: ``[B, T, 3, H, W]``. patch_perm: see :meth:`embed_video` (no effect beyond rounding:
                the video-only pass does not roll). normalize: as in :meth:`encode_text`.

        Returns:
            ``[B, shared_dim]``.
        """
        emb = self.vid_proj(self.video_only(video, patch_perm).mean[:, 0])
        return _l2_normalize(emb) if normalize else emb

    def ind_itc_loss(self, text_emb: Tensor, video_emb: Tensor) -> Tensor:
        """Official ``compute_ind_itc`` on normalised embeddings ``[B, S]``: ``CE(S/τ, diag) + CE(Sᵀ/τ, diag)``."""
        logits = text_emb @ video_emb.t() / self.cfg.temperature
        target = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)

    # ------------------------------------------------------------------ losses

    def forward(self, batch: Mapping[str, Any], *, patch_perm: Tensor | None = None) -> dict[str, Tensor]:
        """Both losses on one batch, each reduced as the official code reduces it.

        Args:
            batch: an :class:`~backbones.allinone.inputs.AllInOneBatch`.
            patch_perm: optional ``[B·T, P]`` patch order for both video embeddings (testing; see
                :meth:`embed_video`). None = raster order, or random per call with ``cfg.patch_shuffle``.

        Returns:
            ``{name: 0-dim loss}`` for exactly ``loss_names``, in that order (target loss first).
        """
        check_batch(batch, self.cfg.max_text_len)
        joint = self.joint(batch["mlm_ids"], batch["text_mask"], batch["video"], patch_perm)
        logits = self.mlm_logits(joint, batch["mlm_ids"].shape[1])
        out = {"mlm": masked_cross_entropy(logits, batch["mlm_labels"], ignore_index=MLM_IGNORE)}
        text = self.encode_text(batch["text_ids"], batch["text_mask"])
        video = self.encode_video(batch["video"], patch_perm=patch_perm)
        out["ind_itc"] = self.ind_itc_loss(text, video)
        return {name: out[name] for name in self.loss_names}


def _l2_normalize(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=COSINE_EPS)
