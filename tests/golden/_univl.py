"""Shared helpers for the UniVL golden tests: fixture paths, loading, and the golden weights per layout.

The fixtures live outside the repository, in ``<repo>/../shared/fixtures/univl/`` (see its README). A
missing fixture **fails** the test with the expected path; it never skips.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from backbones.common.attention import AttentionImpl
from backbones.univl import UniVL, UniVLConfig
from backbones.univl.pretrained import config_from_official
from tests.golden import _fixtures
from tests.golden._fixtures import fixture_dir

FIXTURE_DIR = fixture_dir("univl")
GOLDEN = FIXTURE_DIR / "golden.pt"
KEYS_SHAPES = FIXTURE_DIR / "keys_shapes.json"

# golden.pt holds the complete stage-two module set (194 keys). A model built in a smaller official
# layout legitimately lacks these key prefixes; the official loader ignores them (non-strict), we list
# them and load the rest strictly.
LAYOUT_LACKS: dict[str, tuple[str, ...]] = {
    "pretrain_stage_two": (),
    "caption": ("cls.", "cls_visual."),
    "retrieval_ft_align": ("decoder.", "cls.", "cls_visual."),
    "retrieval_ft_joint": ("cross.", "decoder.", "cls.", "cls_visual.", "similarity_dense."),
    "pretrain_stage_one": ("cross.", "decoder.", "cls.", "cls_visual.", "similarity_dense."),
}


def load_golden() -> dict[str, Any]:
    """``golden.pt`` of univl (see :mod:`tests.golden._fixtures`)."""
    return _fixtures.load_golden("univl")


def load_keys_shapes() -> dict[str, Any]:
    """``keys_shapes.json`` of univl."""
    return _fixtures.load_keys_shapes("univl")


def golden_config(**overrides: Any) -> UniVLConfig:
    """The fixture's own configuration (``golden["config"]``, the official JSON configs and task flags) as ours,
    with ``overrides`` (see :func:`backbones.univl.pretrained.config_from_official`)."""
    return config_from_official(load_golden()["config"], **overrides)


def golden_model(layout: str, attention: AttentionImpl = "sdpa", **cfg: Any) -> UniVL:
    """The tiny UniVL in ``layout`` with golden weights, in eval mode (dropout off, as the fixture), every
    tower's attention implemented by ``attention``.

    Keys are matched exactly: the model's keys must equal golden's minus ``LAYOUT_LACKS[layout]``.
    """
    base = golden_config(layout=layout, **cfg)
    towers = ("text", "visual", "cross", "decoder")
    model = UniVL(base.replace(**{t: dataclasses.replace(getattr(base, t), attention=attention) for t in towers}))
    state = load_golden()["state_dict"]
    lacks = LAYOUT_LACKS[layout]
    kept = {k: v for k, v in state.items() if not k.startswith(lacks)} if lacks else dict(state)
    ours = set(model.state_dict())
    missing, unexpected = sorted(set(kept) - ours), sorted(ours - set(kept))
    assert not missing and not unexpected, (f"layout {layout}: golden keys the model lacks {missing[:10]}, "
                                            f"model keys golden lacks {unexpected[:10]}")
    model.load_state_dict(kept, strict=True)
    return model.eval()


def random_batch(cfg: UniVLConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A valid random :class:`~backbones.univl.inputs.UniVLBatch` (lengths vary; every row has at least one
    masked token and one masked frame, as MELTR's loaders guarantee)."""
    g = torch.Generator().manual_seed(seed)
    n, length, frames, vocab = batch_size, cfg.max_words, cfg.max_frames, cfg.text.vocab_size
    text_len = torch.randint(3, length + 1, (n,), generator=g)
    n_frames = torch.randint(1, frames + 1, (n,), generator=g)
    positions, frame_pos = torch.arange(length), torch.arange(frames)
    attention_mask = (positions < text_len[:, None]).long()
    ids = torch.randint(104, vocab, (n, length), generator=g) * attention_mask
    rows = torch.arange(n)
    ids[:, 0] = 101
    ids[rows, text_len - 1] = 102
    video_mask = (frame_pos < n_frames[:, None]).long()
    video = torch.randn(n, frames, cfg.video_dim, generator=g) * video_mask[..., None]
    masked_pos = 1 + (torch.rand(n, generator=g) * (text_len - 2)).long()  # never [CLS]/[SEP]
    labels = torch.full((n, length), -1, dtype=torch.long)
    labels[rows, masked_pos] = ids[rows, masked_pos]
    masked_text = ids.clone()
    masked_text[rows, masked_pos] = 103
    masked_frame = (torch.rand(n, generator=g) * n_frames).long()
    video_labels = torch.full((n, frames), -1, dtype=torch.long)
    video_labels[rows, masked_frame] = masked_frame
    masked_video = video.clone()
    masked_video[rows, masked_frame] = 0.0
    cap_len = torch.randint(1, length, (n,), generator=g)
    decoder_mask = (positions < cap_len[:, None]).long()
    caption = torch.randint(104, vocab, (n, length), generator=g) * decoder_mask
    caption[:, 0] = 101
    output = torch.cat([caption[:, 1:], torch.zeros(n, 1, dtype=torch.long)], 1)
    output[rows, cap_len - 1] = 102
    return {
        "input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": attention_mask,
        "video": video, "video_mask": video_mask, "pairs_masked_text": masked_text, "pairs_token_labels": labels,
        "masked_video": masked_video, "video_labels_index": video_labels, "input_caption_ids": caption,
        "decoder_mask": decoder_mask, "output_caption_ids": output,
    }
