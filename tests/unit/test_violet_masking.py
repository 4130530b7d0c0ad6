"""VIOLET masking (``Agent_*.masking``): invariants, the fixture's official draws, and the blockwise sampler
against a numpy transcription of the official loop (the draws themselves cannot match: numpy vs torch RNG)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backbones.violet.inputs import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    block_cover,
    fork_option_row_masks,
    mask_tokens,
    mask_video,
    mvm_labels,
    option_rows_from_hits,
)
from tests.golden._violet import load_golden, random_batch


def _texts(rows: int = 400, length: int = 40) -> torch.Tensor:
    ids = random_batch("retrieval", batch=rows, length=length, seed=3)["text_ids"]
    assert bool((ids == PAD_ID).any())
    return ids


def test_mtm_masks_only_real_tokens_at_least_one_per_row_at_the_official_rate() -> None:
    ids = _texts()
    masked, labels = mask_tokens(ids, 0.15, torch.Generator().manual_seed(0))
    chosen = labels != -1
    special = (ids == CLS_ID) | (ids == SEP_ID) | (ids == PAD_ID)
    assert not bool((chosen & special).any()) and bool(chosen.any(1).all())
    assert torch.equal(masked, torch.where(chosen, torch.full_like(ids, MASK_ID), ids))
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum() / (~special).sum()  # 15% (slightly more: a row is redrawn when it gets none)
    assert 0.14 < float(rate) < 0.17


def test_mtm_is_reproducible_with_a_generator_and_rejects_rows_without_real_tokens() -> None:
    ids = _texts(50)
    first = mask_tokens(ids, 0.15, torch.Generator().manual_seed(7))
    again = mask_tokens(ids, 0.15, torch.Generator().manual_seed(7))
    other = mask_tokens(ids, 0.15, torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and not torch.equal(first[1], other[1])
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] have no maskable token"):
        mask_tokens(torch.tensor([[101, 7000, 102], [101, 102, 0]]))


def test_fork_option_rows_by_hand() -> None:
    ids = torch.tensor([[[101, 5, 6, 102], [101, 7, 8, 102], [101, 9, 102, 0]]])
    hits = torch.tensor([[[0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    masked, labels = option_rows_from_hits(ids, hits)
    assert masked.tolist() == [[[103] * 4, [103] * 4, [101, 9, 102, 0]]]
    # hit once: the original row (CLS/SEP included); hit twice: the already masked row; never: -1
    assert labels.tolist() == [[[101, 5, 6, 102], [103] * 4, [-1] * 4]]


def test_fork_option_row_masks_have_the_fork_structure() -> None:
    ids = random_batch("qa_mc", batch=40, options=5, length=20, seed=1)["text_ids"]
    masked, labels = fork_option_row_masks(ids, 0.15, torch.Generator().manual_seed(0))
    hit = (masked == MASK_ID).all(-1)
    assert bool(hit.any(-1).all())  # every sample has at least one hit row
    assert torch.equal(masked[~hit], ids[~hit]) and bool((labels[~hit] == -1).all())
    once, more = (labels == ids).all(-1) & hit, (labels == MASK_ID).all(-1) & hit
    assert bool((once | more)[hit].all()) and bool(once.any()) and bool(more.any())


def test_fixture_mc_masks_are_whole_rows() -> None:
    """The official QA-MC draws (README §2.3): video 0's label rows all [MASK], video 1's the original rows."""
    x = load_golden()["inputs"]
    assert bool((x["m_txt_mc"] == MASK_ID).all())
    assert bool((x["ans_mtm_mc"][0] == MASK_ID).all()) and torch.equal(x["ans_mtm_mc"][1], x["txt_mc"][1])


@pytest.mark.parametrize("prefix", ["", "mc"])
def test_video_masking_and_mvm_labels_reproduce_the_official_draws(prefix: str) -> None:
    x = load_golden()["inputs"]
    cover = x["mvm_cov"].bool()
    if prefix:
        # The MC masking drew its own blocks: read them off the labels (a covered patch slot holds its code).
        img, masked, vq, labels = x["img_u8"][:2], x["img_mc_masked_u8"], x["vq_mc"], x["ans_mvm_mc"]
        cover = (labels.view(2, 3, 10)[:, :, 1:] != -1).view(2, 3, 3, 3)
    else:
        img, masked, vq, labels = x["img_u8"], x["img_masked_u8"], x["vq"], x["ans_mvm"]
    assert torch.equal(mask_video(img.float() / 255, cover), masked.float() / 255)
    assert torch.equal(mvm_labels(vq, cover), labels)


def _official_cover(rng: np.random.Generator, frames: int, grid: int) -> np.ndarray:
    """Transcription of the official blockwise loop (``Agent_*.masking``), one sample."""
    cover = np.zeros((frames, grid, grid), dtype=bool)
    for _ in range(frames):
        t = rng.integers(1, frames) if frames > 1 else 1
        h, w = rng.integers(1, grid * 2 // 3), rng.integers(1, grid * 2 // 3)
        t1, h1, w1 = rng.integers(0, frames - t + 1), rng.integers(0, grid - h + 1), rng.integers(0, grid - w + 1)
        cover[t1:t1 + t, h1:h1 + h, w1:w1 + w] = True
    return cover


def test_block_cover_has_the_official_distribution() -> None:
    n, frames, grid = 3000, 5, 7
    ours = block_cover(n, frames, grid, generator=torch.Generator().manual_seed(0)).numpy()
    rng = np.random.default_rng(0)
    official = np.stack([_official_cover(rng, frames, grid) for _ in range(n)])
    # Per-cell coverage probability and the covered count per sample agree within sampling noise (~4 sigma).
    np.testing.assert_allclose(ours.mean(0), official.mean(0), atol=0.05)
    assert abs(ours.sum((1, 2, 3)).mean() - official.sum((1, 2, 3)).mean()) < 0.05 * official.sum((1, 2, 3)).mean()
    assert ours.any((1, 2, 3)).all()


def test_block_cover_small_grids_use_single_patch_blocks() -> None:
    """Below h = 3 the official randint(1, 2h//3) has no valid value; blocks are then 1x1 patches."""
    cover = block_cover(500, 1, 2, generator=torch.Generator().manual_seed(0))
    assert bool((cover.sum((1, 2, 3)) == 1).all())  # T = 1: one block of one frame, one patch
