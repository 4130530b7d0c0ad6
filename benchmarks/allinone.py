"""All-in-one costs measured side by side in one run: video decoding and the MELTR meta step.

    python -m benchmarks.allinone [--size tiny|small|base] [--device cpu|cuda] [--windows 3] [--skip-inputs]
                                  [--attention sdpa|explicit]

1. **Video decoding** (decord vs PyAV, DataLoader workers): the tables of :mod:`benchmarks.video_decode`.
2. **Train-step cost**: All-in-one with its two losses (``ind_itc``, ``mlm``) trained by :class:`meltr.Trainer`
   on random batches with the fork's MELTR settings (K = 5, gamma 0.1, preset ``allinone``): every method of
   :data:`benchmarks.common.META_METHODS` (``sum``: no meta step; ``lite_official``: create_graph through the
   ViT; the fast modes), with saved-tensor and process memory peaks and the issue's goal lines.

Weights are random: the point is cost, not accuracy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import Tensor

from backbones.allinone import AllInOne, AllInOneConfig
from backbones.common.attention import AttentionImpl, set_attention
from benchmarks.common import TrainSetup, backbone_main

META_EVERY = 5  # K of the fork's msrvtt_retrieval_MELTR


@dataclass(frozen=True)
class Size:
    """Model and batch of one benchmark size."""

    hidden: int  # ViT width
    layers: int  # ViT blocks
    image: int  # frame side (pixels)
    patch: int  # patch side
    text: int  # text length
    batch: int  # training batch


SIZES: dict[str, Size] = {
    "tiny": Size(hidden=32, layers=2, image=32, patch=8, text=16, batch=8),  # the golden fixture's widths
    "small": Size(hidden=128, layers=4, image=64, patch=16, text=24, batch=8),
    "base": Size(hidden=768, layers=12, image=224, patch=16, text=40, batch=16),  # the fork's per-GPU batch (GPU)
}


def build_config(size: Size) -> AllInOneConfig:
    """All-in-one at ``size`` with 3 frames and the real vocabulary size; dropout off for stable timings."""
    return AllInOneConfig.tiny(vocab_size=30522, max_text_len=size.text, hidden_size=size.hidden,
                               num_layers=size.layers, num_heads=max(1, size.hidden // 64) if size.hidden >= 64 else 4,
                               image_size=size.image, patch_size=size.patch, num_frames=3, shared_embedding_dim=min(512, size.hidden))


def random_batch(cfg: AllInOneConfig, batch: int, g: torch.Generator) -> dict[str, Tensor]:
    """Normalised random frames and texts with 15% MLM targets (never [CLS]/[SEP]/padding)."""
    lengths = torch.randint(4, cfg.max_text_len + 1, (batch,), generator=g)
    pos = torch.arange(cfg.max_text_len)
    mask = (pos < lengths[:, None]).long()
    ids = torch.randint(1000, cfg.vocab_size, (batch, cfg.max_text_len), generator=g) * mask
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    words = (pos > 0) & (pos < lengths[:, None] - 1)
    chosen = words & (torch.rand(batch, cfg.max_text_len, generator=g) < 0.15)
    chosen[:, 1] = True  # at least one target per row
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    mlm_ids = torch.where(chosen, torch.full_like(ids, 103), ids)
    video = torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g)
    return {"video": video, "text_ids": ids, "text_mask": mask, "mlm_ids": mlm_ids, "mlm_labels": labels,
            "index": torch.arange(batch)}


def train_setup(size_name: str, attention: AttentionImpl | None = None) -> TrainSetup:
    """Table 2's training setup: the fork's AdamW (constant 3e-4), K=5, gamma 0.1, pooler frozen as in the
    recipe; ``attention`` through :func:`backbones.common.attention.set_attention`."""
    from meltr import OptimConfig

    size = SIZES[size_name]
    cfg = build_config(size)
    if attention:
        set_attention(cfg, attention)
    optim = OptimConfig(name="adamw", lr=3e-4, betas=(0.9, 0.98), weight_decay=0.01, schedule="constant")

    def make_model() -> AllInOne:
        model = AllInOne(cfg)
        model.pooler.requires_grad_(False)  # as the recipe: no loss reaches it
        return model

    return TrainSetup(name="All-in-one", describe=f"width {size.hidden}, {size.layers} blocks, {size.image} px / patch "
                                                  f"{size.patch}, 3 frames, text {size.text}, batch {size.batch}",
                      make_model=make_model, make_batch=lambda g: random_batch(cfg, size.batch, g), preset="allinone",
                      optim=optim, every=META_EVERY, config=cfg)


def _input_tables() -> None:
    from benchmarks import video_decode

    video_decode.main([])


def main(argv: list[str] | None = None) -> int:
    return backbone_main(argv, doc=__doc__, name="All-in-one", sizes=list(SIZES), input_tables=_input_tables,
                         input_title="Video decoding (benchmarks.video_decode)", train_setup=train_setup, windows=3)


if __name__ == "__main__":
    sys.exit(main())
