"""The VIOLET batch, its checks, and the fork's masking (``Agent_*.masking``) in torch.

Batch (from :mod:`data.violet`; B videos, T frames of S×S pixels, h = w = S/32, P = h·w, L text length,
O options):

===========  ====================  =======  ===================================================================
key          shape                 dtype    meaning
===========  ====================  =======  ===================================================================
video        [B, T, 3, S, S]       float    frames in [0, 1] (the model normalises)
vq           [B, T·(1 + P)]        int64    per frame ``[-1] + h·w`` DALL-E codes (MVM targets)
text_ids     [B, L] (MC [B, O, L]) int64    ``[CLS] … [SEP]`` then 0
text_mask    like text_ids         int64    ``text_ids != 0``
answer       [B]                   int64    QA: answer id (OE; -1 = outside the vocabulary) or option (MC)
index        [B]                   int64    sample position (unused by the model)
===========  ====================  =======  ===================================================================

Masking (``shared/reference/violet.md`` §3.1), drawn with torch's RNG (an optional ``torch.Generator``):

* **MTM**: every non-special token (not [CLS] 101, [SEP] 102, [PAD] 0) is selected with probability 0.15,
  redrawn until the row has at least one; selected tokens become [MASK] 103 and keep their id as label, every
  other label is -1. No 80/10/10 rule. A row without any maskable token raises (the official loop never ends).
* **MVM, blockwise**: T random blocks per sample, their union masked. A block spans ``t ∈ [1, T-1]`` frames
  (1 when T = 1) and ``bh, bw ∈ [1, ⌊2h/3⌋-1]`` patches (1 when that is < 1; the official ``randint`` needs
  h >= 3), at a uniform start. Labels are the VQ codes at masked patch slots, -1 elsewhere (frame CLS slots
  included); masked 32×32 pixel cells are set to 0 **before** normalisation, so they reach Swin as -mean/std.
* **QA-MC, fork quirk** (:func:`fork_option_row_masks`): the fork selects tokens over the whole ``[O, L]``
  block of a sample but uses only the *option index* of each hit, so every hit option row becomes all [MASK];
  its label row is the original row (CLS/SEP/PAD included) if hit once, all [MASK] if hit again.
  Without the quirk each option row is masked as an ordinary text (at least one token per row).

The official draws use ``torch.rand`` (MTM) and ``numpy.random`` (MVM); they cannot and need not be
reproduced. A batch may instead carry precomputed masks (:data:`MASK_KEYS`), which is how the golden tests
feed the fixture's draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import torch
from torch import Tensor

from backbones.violet.config import VioletConfig

__all__ = [
    "CLS_ID", "SEP_ID", "PAD_ID", "MASK_ID", "MASK_KEYS",
    "VioletBatch", "VioletMasks", "check_batch",
    "mask_tokens", "fork_option_row_masks", "option_rows_from_hits", "block_cover", "mask_video", "mvm_labels",
]

CLS_ID, SEP_ID, PAD_ID, MASK_ID = 101, 102, 0, 103  # bert-base-uncased special tokens


class VioletBatch(TypedDict, total=False):
    """One training or evaluation batch (see the module docstring for shapes)."""

    video: Tensor
    vq: Tensor
    text_ids: Tensor
    text_mask: Tensor
    answer: Tensor
    index: Tensor


class VioletMasks(TypedDict):
    """The drawn masks: what ``Agent_*.masking`` returns.

    Attributes:
        masked_video: like ``video``, masked cells zeroed.
        mvm_labels: ``[B, T·(1+P)]`` VQ code at masked patch slots, -1 elsewhere.
        masked_text_ids: like ``text_ids``, selected tokens replaced by [MASK].
        mtm_labels: like ``text_ids``, original id at selected tokens, -1 elsewhere.
    """

    masked_video: Tensor
    mvm_labels: Tensor
    masked_text_ids: Tensor
    mtm_labels: Tensor


MASK_KEYS: tuple[str, ...] = tuple(VioletMasks.__annotations__)


def check_batch(batch: Mapping[str, Any], cfg: VioletConfig, *, training: bool = True) -> None:
    """Checks presence, dtypes and shapes; raises ``ValueError`` listing every problem.

    Args:
        batch: the batch.
        cfg: the model's configuration (task, active losses, Swin stride, embedding sizes).
        training: also check what the active losses need (``vq``, ``answer``, precomputed masks).
    """
    problems: list[str] = []
    mc = cfg.task == "qa_mc"

    def tensor(key: str, rank: int, floating: bool) -> Tensor | None:
        value = batch.get(key)
        if not isinstance(value, Tensor):
            problems.append(f"missing {key!r}" if value is None else f"{key!r} is {type(value).__name__}, expected a tensor")
            return None
        if value.dim() != rank or value.is_floating_point() != floating:
            problems.append(f"{key!r} is {value.dtype} {tuple(value.shape)}, expected rank {rank} "
                            f"{'float' if floating else 'integer'}")
            return None
        return value

    video = tensor("video", 5, True)
    ids = tensor("text_ids", 3 if mc else 2, False)
    mask = tensor("text_mask", 3 if mc else 2, False)
    n_tokens = None
    if video is not None:
        b, t, c, s, s2 = video.shape
        stride = cfg.swin.stride
        if c != 3 or s != s2 or s % stride:
            problems.append(f"'video' is {tuple(video.shape)}, expected [B, T, 3, S, S] with S a multiple of {stride}")
        elif t > cfg.max_frames or (s // stride) ** 2 > cfg.max_patches:
            problems.append(f"'video' has {t} frames of {s} px: at most {cfg.max_frames} frames and "
                            f"{cfg.max_patches} patches per frame (emb_len / emb_pos sizes)")
        n_tokens = t * (1 + (s // stride) ** 2)
    if ids is not None and mask is not None and ids.shape != mask.shape:
        problems.append(f"'text_ids' {tuple(ids.shape)} and 'text_mask' {tuple(mask.shape)} differ")
    sizes = {k: v.shape[0] for k, v in (("video", video), ("text_ids", ids)) if v is not None}
    if training:
        given = [k for k in MASK_KEYS if k in batch]
        if given and len(given) != len(MASK_KEYS):
            problems.append(f"precomputed masks need all of {MASK_KEYS}, got only {given}")
        if "mvm" in cfg.losses and not given:
            vq = tensor("vq", 2, False)
            if vq is not None:
                sizes["vq"] = vq.shape[0]
                if n_tokens is not None and vq.shape[1] != n_tokens:
                    problems.append(f"'vq' has {vq.shape[1]} slots, expected T·(1+P) = {n_tokens}")
        # OE/MC read the answer; MC also picks the answer's option for MVM and (paper mode) VTM.
        reads_answer = {"oe", "mc"}
        if mc:
            reads_answer |= {"mvm"} if cfg.fork_quirks else {"mvm", "vtm"}
        if reads_answer & set(cfg.losses):
            answer = tensor("answer", 1, False)
            if answer is not None:
                sizes["answer"] = answer.shape[0]
                if mc and ids is not None and bool(((answer < 0) | (answer >= ids.shape[1])).any()):
                    problems.append(f"'answer' must index one of the {ids.shape[1]} options")
    if len(set(sizes.values())) > 1:
        problems.append(f"batch sizes disagree: {sizes}")
    if problems:
        raise ValueError(f"VIOLET batch ({cfg.task}): " + "; ".join(problems))


def _draw_hits(candidate: Tensor, prob: float, generator: torch.Generator | None) -> Tensor:
    """Per row of ``candidate [N, K]``: each candidate selected with ``prob``, redrawn until at least one."""
    empty = (~candidate.any(-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"MTM masking: text row(s) {empty} have no maskable token (only [CLS]/[SEP]/[PAD]); "
                         "the official loop would never end")
    hits = torch.zeros_like(candidate)
    todo = torch.ones(candidate.shape[0], dtype=torch.bool, device=candidate.device)
    while bool(todo.any()):
        draw = candidate & (torch.rand(candidate.shape, generator=generator, device=candidate.device) < prob)
        hits = torch.where(todo[:, None], draw, hits)
        todo = ~hits.any(-1)
    return hits


def _maskable(ids: Tensor) -> Tensor:
    return (ids != CLS_ID) & (ids != SEP_ID) & (ids != PAD_ID)


def mask_tokens(ids: Tensor, prob: float = 0.15, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """MTM masking of every row of ``ids [..., L]`` (at least one token per row).

    Returns:
        ``(masked_ids, labels)`` shaped like ``ids``.
    """
    flat = ids.reshape(-1, ids.shape[-1])
    hits = _draw_hits(_maskable(flat), prob, generator).view_as(ids)
    return torch.where(hits, torch.full_like(ids, MASK_ID), ids), torch.where(hits, ids, torch.full_like(ids, -1))


def option_rows_from_hits(ids: Tensor, hits: Tensor) -> tuple[Tensor, Tensor]:
    """The fork's QA-MC MTM result for given token hits (deterministic half of :func:`fork_option_row_masks`).

    Args:
        ids: ``[B, O, L]`` option texts. hits: ``[B, O, L]`` bool, the selected tokens.

    Returns:
        ``(masked_ids, labels)``: a row with >= 1 hit is all [MASK]; its labels are the original row when
        hit once and all [MASK] when hit more often (the second copy reads the already masked row); rows
        without a hit keep their text and -1 labels.
    """
    count = hits.sum(-1, keepdim=True)
    masked = torch.where(count > 0, torch.full_like(ids, MASK_ID), ids)
    labels = torch.where(count == 1, ids, torch.where(count > 1, torch.full_like(ids, MASK_ID), torch.full_like(ids, -1)))
    return masked, labels


def fork_option_row_masks(ids: Tensor, prob: float = 0.15, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The fork's broken QA-MC MTM masking of ``ids [B, O, L]``: hits drawn over each sample's whole ``[O, L]``
    block (redrawn until one), then applied to whole option rows (:func:`option_rows_from_hits`)."""
    b = ids.shape[0]
    hits = _draw_hits(_maskable(ids).reshape(b, -1), prob, generator).view_as(ids)
    return option_rows_from_hits(ids, hits)


def block_cover(batch: int, frames: int, grid: int, *, generator: torch.Generator | None = None,
                device: torch.device | None = None) -> Tensor:
    """Blockwise MVM coverage ``[B, T, h, w]`` (bool), h = w = ``grid``: the union of T random blocks per sample."""
    r = torch.rand(batch, frames, 6, generator=generator, device=device)

    def pick(u: Tensor, n: Tensor | int) -> Tensor:  # uniform integer in [0, n)
        n_t = torch.as_tensor(n, device=u.device)
        return torch.minimum((u * n_t).floor().long(), n_t - 1)

    span = max(1, 2 * grid // 3 - 1)  # official randint(1, h*2//3), exclusive high
    dt = 1 + pick(r[..., 0], frames - 1) if frames > 1 else torch.ones_like(r[..., 0], dtype=torch.long)
    bh, bw = 1 + pick(r[..., 1], span), 1 + pick(r[..., 2], span)
    t0, h0, w0 = pick(r[..., 3], frames - dt + 1), pick(r[..., 4], grid - bh + 1), pick(r[..., 5], grid - bw + 1)

    def inside(start: Tensor, size: Tensor, n: int) -> Tensor:  # [B, K, n]
        pos = torch.arange(n, device=r.device)
        return (pos >= start[..., None]) & (pos < (start + size)[..., None])

    t_in, h_in, w_in = inside(t0, dt, frames), inside(h0, bh, grid), inside(w0, bw, grid)
    return (t_in[..., :, None, None] & h_in[..., None, :, None] & w_in[..., None, None, :]).any(1)


def mask_video(video: Tensor, cover: Tensor) -> Tensor:
    """Zeroes the pixel cell of every covered patch: ``video [B, T, 3, S, S]``, ``cover [B, T, h, w]`` (S/h px cells)."""
    cell = video.shape[-1] // cover.shape[-1]
    pixels = cover.repeat_interleave(cell, dim=2).repeat_interleave(cell, dim=3)  # [B, T, S, S]
    return video.masked_fill(pixels[:, :, None], 0.0)


def mvm_labels(vq: Tensor, cover: Tensor) -> Tensor:
    """``vq [B, T·(1+P)]`` at covered patch slots, -1 elsewhere (each frame's CLS slot is never covered)."""
    b, t = cover.shape[:2]
    slots = torch.cat([torch.zeros(b, t, 1, dtype=torch.bool, device=cover.device), cover.flatten(2)], dim=2)
    return torch.where(slots.flatten(1), vq, torch.full_like(vq, -1))
