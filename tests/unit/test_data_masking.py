"""data.masking: MLM/MFM rates, MELTR's at-least-one rule, specials and padding untouched, labels consistent."""

from __future__ import annotations

import pytest
import torch

from data.masking import mask_frames, mask_tokens
from data.text import BERT_UNCASED_SPECIALS as SP

CLS, SEP, MASK = SP.cls, SP.sep, SP.mask


def _texts(lengths: list[int], max_words: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] random content ids [SEP] + 0-padding; content ids avoid every special id."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max_words, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):  # n = total length with [CLS] and [SEP]
        ids[i, 0], ids[i, n - 1] = CLS, SEP
        ids[i, 1 : n - 1] = torch.randint(1000, 30000, (n - 2,), generator=g)
        mask[i, :n] = 1
    return ids, mask


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_token_rates_and_80_10_10_split() -> None:
    ids, mask = _texts([20] * 4000, 24)
    masked, labels = mask_tokens(ids, mask, generator=_gen(), prob=0.15, at_least_one=False)
    chosen = labels != -1
    eligible = 4000 * 18
    rate = chosen.sum().item() / eligible
    assert abs(rate - 0.15) < 0.006, rate  # sd ≈ 0.0013
    n = chosen.sum().item()
    to_mask = (masked == MASK) & chosen
    kept = (masked == ids) & chosen
    replaced = chosen & ~to_mask & ~kept
    assert abs(to_mask.sum().item() / n - 0.8) < 0.02
    assert abs(replaced.sum().item() / n - 0.1) < 0.015
    assert abs(kept.sum().item() / n - 0.1) < 0.015
    # Random replacements come from the whole vocabulary.
    assert masked[replaced].min() >= 0 and masked[replaced].max() < SP.vocab_size


def test_frame_rate() -> None:
    video = torch.randn(3000, 12, 4)
    vmask = torch.ones(3000, 12, dtype=torch.long)
    vmask[:, 9:] = 0
    _, labels = mask_frames(video, vmask, generator=_gen(), prob=0.15, at_least_one=False)
    rate = (labels != -1).sum().item() / (3000 * 9)
    assert abs(rate - 0.15) < 0.008, rate


@pytest.mark.parametrize("content", [1, 2, 3])
def test_at_least_one_token_on_short_texts(content: int) -> None:
    ids, mask = _texts([content + 2] * 3000, 8)
    _, forced = mask_tokens(ids, mask, generator=_gen(1))
    per_row = (forced != -1).sum(-1)
    assert (per_row >= 1).all()
    # Rejection sampling keeps the conditional law: E[#chosen | ≥1] = n·p / (1 - (1-p)^n), not "exactly one".
    expected = content * 0.15 / (1 - 0.85**content)
    assert abs(per_row.float().mean().item() - expected) < 0.03
    # Without the rule, many short rows would have nothing masked (so the assertion above can fail).
    _, free = mask_tokens(ids, mask, generator=_gen(1), at_least_one=False)
    assert ((free != -1).sum(-1) == 0).float().mean() > 0.5


@pytest.mark.parametrize("valid", [1, 2, 5])
def test_at_least_one_frame_on_short_videos(valid: int) -> None:
    vmask = torch.zeros(2000, 6, dtype=torch.long)
    vmask[:, :valid] = 1
    video = torch.randn(2000, 6, 3) * vmask.unsqueeze(-1)
    masked, labels = mask_frames(video, vmask, generator=_gen(2))
    per_row = (labels != -1).sum(-1)
    assert (per_row >= 1).all()
    expected = valid * 0.15 / (1 - 0.85**valid)
    assert abs(per_row.float().mean().item() - expected) < 0.05
    assert (labels[:, valid:] == -1).all()  # padded frames are never chosen


def test_nothing_maskable_is_left_alone() -> None:
    ids, mask = _texts([2, 2], 5)  # [CLS][SEP] only
    masked, labels = mask_tokens(ids, mask, generator=_gen())
    assert torch.equal(masked, ids) and (labels == -1).all()
    video = torch.zeros(2, 4, 3)
    out, vlabels = mask_frames(video, torch.zeros(2, 4, dtype=torch.long), generator=_gen())
    assert torch.equal(out, video) and (vlabels == -1).all()


def test_specials_and_padding_are_never_masked() -> None:
    lengths = [3 + i % 17 for i in range(2000)]
    ids, mask = _texts(lengths, 24, seed=3)
    ids[::7, 2] = SEP  # a stray [SEP] inside the text must not become a target either
    masked, labels = mask_tokens(ids, mask, generator=_gen(4), prob=0.5)
    positions = torch.arange(24).expand_as(ids)
    last = (mask.sum(-1, keepdim=True) - 1)
    protected = (positions == 0) | (positions >= last) | torch.isin(ids, torch.tensor([0, CLS, SEP, MASK]))
    assert (labels[protected] == -1).all()
    assert torch.equal(masked[protected], ids[protected])
    assert (masked[mask == 0] == 0).all()


def test_labels_are_consistent_with_the_corruption() -> None:
    ids, mask = _texts([3 + i % 20 for i in range(3000)], 24, seed=5)
    masked, labels = mask_tokens(ids, mask, generator=_gen(6))
    chosen = labels != -1
    assert torch.equal(labels[chosen], ids[chosen])  # label = original id
    assert torch.equal(masked[~chosen], ids[~chosen])  # unchosen tokens untouched
    assert (labels[~chosen] == -1).all()


def test_frame_masking_zeroes_exactly_the_labelled_frames() -> None:
    video = torch.randn(500, 10, 6) + 5.0  # no frame is zero by chance
    vmask = (torch.arange(10) < torch.randint(1, 11, (500, 1))).long()
    video = video * vmask.unsqueeze(-1)
    masked, labels = mask_frames(video, vmask, generator=_gen(7))
    chosen = labels != -1
    assert torch.equal(labels[chosen], torch.arange(10).expand(500, 10)[chosen])
    assert (masked[chosen] == 0).all()
    assert torch.equal(masked[~chosen], video[~chosen])
    assert (vmask[chosen] == 1).all()


def test_same_generator_seed_same_masks_and_single_sample_shapes() -> None:
    ids, mask = _texts([12] * 50, 16)
    a = mask_tokens(ids, mask, generator=_gen(9))
    b = mask_tokens(ids, mask, generator=_gen(9))
    c = mask_tokens(ids, mask, generator=_gen(10))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    one_ids, one_labels = mask_tokens(ids[0], mask[0], generator=_gen())
    assert one_ids.shape == (16,) and one_labels.shape == (16,) and one_labels.dtype == torch.int64
    v, vl = mask_frames(torch.randn(7, 3), torch.ones(7, dtype=torch.long), generator=_gen())
    assert v.shape == (7, 3) and vl.shape == (7,) and (vl != -1).any()


def test_argument_errors() -> None:
    ids, mask = _texts([5], 8)
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(ids, mask, generator=_gen(), prob=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mask_frames(torch.zeros(2, 3), torch.ones(2), generator=_gen(), prob=1.5)
    with pytest.raises(ValueError, match="attention_mask"):
        mask_tokens(ids, mask[:, :4], generator=_gen())
