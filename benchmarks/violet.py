"""VIOLET costs measured side by side in one run: the frame data path and the MELTR meta step.

    python -m benchmarks.violet [--size tiny|small|base] [--device cpu|cuda] [--windows 2] [--skip-inputs]
                                [--attention sdpa|explicit]

1. **Data path** (base64 JPEG decode + pad + resize + to-tensor, DataLoader workers): the table of
   :mod:`benchmarks.violet_data`.
2. **Train-step cost**: VIOLET retrieval (``vtm, mtm, mvm``) trained by :class:`meltr.Trainer` on random
   batches with the fork's MELTR settings (K = 3, gamma 0.1, preset ``violet_retrieval``): every method of
   :data:`benchmarks.common.META_METHODS` (``sum``: no meta step; ``lite_official``: create_graph through Swin
   and BERT; the fast modes), with saved-tensor and process memory peaks and the issue's goal lines.

Weights are random: the point is cost, not accuracy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import Tensor

from backbones.common.bert import BertConfig
from backbones.violet import SwinConfig, Violet, VioletConfig
from backbones.common.attention import AttentionImpl, set_attention
from benchmarks.common import TrainSetup, backbone_main

META_EVERY = 3  # K of every violet/args/*.json


@dataclass(frozen=True)
class Size:
    """Model and batch of one benchmark size."""

    swin_dim: int  # Swin embed_dim (stage widths x1, x2, x4, x8)
    hidden: int  # BERT width
    layers: int  # cross-encoder layers
    image: int  # frame side (pixels; a multiple of 32)
    text: int  # text length
    batch: int  # training batch


SIZES: dict[str, Size] = {
    "tiny": Size(swin_dim=4, hidden=32, layers=2, image=32, text=16, batch=4),  # the TINY=1 rows' model
    "small": Size(swin_dim=16, hidden=128, layers=2, image=64, text=25, batch=4),
    "base": Size(swin_dim=96, hidden=768, layers=12, image=224, text=25, batch=5),  # the fork's per-GPU batch (GPU)
}


def build_config(size: Size) -> VioletConfig:
    """VIOLET retrieval at ``size`` (Swin depths 2,2,2,2 below base), real vocabulary and VQ sizes, dropout off."""
    if size.swin_dim == 96:
        return VioletConfig.base(task="retrieval")
    heads = max(1, size.hidden // 32)
    return VioletConfig.tiny(
        task="retrieval", vocab_size=30522, vq_size=8192,
        swin=SwinConfig(embed_dim=size.swin_dim, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 4), drop_path_rate=0.0),
        bert=BertConfig(vocab_size=30522, hidden_size=size.hidden, num_hidden_layers=size.layers, num_attention_heads=heads,
                        intermediate_size=2 * size.hidden, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0))


def random_batch(size: Size, g: torch.Generator, frames: int = 5) -> dict[str, Tensor]:
    """Frames in [0, 1], DALL-E codes in the loader's layout (per frame -1 then the grid), texts with [CLS]/[SEP]."""
    b, grid = size.batch, (size.image // 32) ** 2
    vq = torch.randint(0, 8192, (b, frames, 1 + grid), generator=g)
    vq[:, :, 0] = -1
    lengths = torch.randint(4, size.text + 1, (b,), generator=g)
    pos = torch.arange(size.text)
    mask = (pos < lengths[:, None]).long()
    ids = torch.randint(1000, 30522, (b, size.text), generator=g) * mask
    ids[:, 0] = 101
    ids[torch.arange(b), lengths - 1] = 102
    return {"video": torch.rand(b, frames, 3, size.image, size.image, generator=g), "vq": vq.flatten(1),
            "text_ids": ids, "text_mask": mask, "index": torch.arange(b)}


def train_setup(size_name: str, attention: AttentionImpl | None = None) -> TrainSetup:
    """Table 2's training setup: the fork's AdamW (constant 3e-6), K=3, gamma 0.1; ``attention`` through
    :func:`backbones.common.attention.set_attention`."""
    from meltr import OptimConfig

    size = SIZES[size_name]
    cfg = build_config(size)
    if attention:
        set_attention(cfg, attention)
    optim = OptimConfig(name="adamw", lr=3e-6, betas=(0.9, 0.98), weight_decay=1e-3, no_decay_bias_norm=False,
                        schedule="constant")
    return TrainSetup(name="VIOLET retrieval", describe=f"Swin dim {size.swin_dim}, BERT {size.hidden} x {size.layers}, "
                                                        f"{size.image} px, 5 frames, text {size.text}, batch {size.batch}",
                      make_model=lambda: Violet(cfg), make_batch=lambda g: random_batch(size, g), preset="violet_retrieval",
                      optim=optim, every=META_EVERY, config=cfg)


def _input_tables() -> None:
    from benchmarks import violet_data

    violet_data.main([])


def main(argv: list[str] | None = None) -> int:
    return backbone_main(argv, doc=__doc__, name="VIOLET", sizes=list(SIZES), input_tables=_input_tables,
                         input_title="Data path (benchmarks.violet_data)", train_setup=train_setup, windows=2)


if __name__ == "__main__":
    sys.exit(main())
