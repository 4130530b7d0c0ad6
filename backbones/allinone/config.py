"""All-in-one configuration: ViT and text sizes, frames, the contrastive temperature and the MELTR target loss.

Defaults are the MELTR fork's full-size model (``msrvtt_retrieval_MELTR`` in ``shared/reference/allinone.md``
§6.2/6.3): ViT-B/16 at 224 px (12 blocks, width 768, 12 heads, MLP ratio 4), BERT's 30,522-word vocabulary
with 40 text positions, 3 frames, 512-d retrieval projections. Unlike the official code, where the ViT size is
fixed by the variant name ``vit_base_patch16_224`` and ``hidden_size``/``num_layers``/``image_size`` only
feed other places (reference §8 item 9), every size here is one field that shapes the whole model.

``target_loss`` picks the meta-objective (the first loss ``forward`` returns; ``primary`` is its old name, read
from stored configs through ``RENAMED``):

* ``"ind_itc"`` (default): the paper's choice, the retrieval loss that MSRVTT is evaluated on;
* ``"mlm"``: what the released fork actually meta-trains on (``pri=0`` selects ``current_tasks[0]`` = MLM,
  reference §7 and §8 item 1). It also restores the fork's loss order ``[mlm, ind_itc]`` (the loss
  transformer's task-embedding order, row 0 = MLM), so official MELTR weights line up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from backbones.common.attention import AttentionImpl, check_attention
from backbones.common.bert import BertConfig
from meltr.deprecation import renamed_fields

__all__ = ["LOSS_NAMES", "TargetLoss", "AllInOneConfig"]

# The two losses of the MELTR fork's All-in-one in its own order (``current_tasks``).
LOSS_NAMES: tuple[str, ...] = ("mlm", "ind_itc")

TargetLoss = Literal["ind_itc", "mlm"]


@renamed_fields  # primary= and .primary keep working for one release, with a DeprecationWarning
@dataclass
class AllInOneConfig:
    """Everything that shapes an All-in-one model. Defaults are the full-size numbers."""

    RENAMED: ClassVar[dict[str, str]] = {"primary": "target_loss"}  # old key -> new (meltr.config reads the old one)

    vocab_size: int = 30522  # word-piece vocabulary (bert-base-uncased)
    max_text_len: int = 40  # rows of the text position table (= padded caption length of the official loader)
    hidden_size: int = 768  # width of the ViT, the text embeddings and every head
    num_layers: int = 12  # ViT blocks
    num_heads: int = 12  # attention heads per block
    mlp_ratio: float = 4.0  # MLP hidden width / hidden_size
    image_size: int = 224  # frame height = width the position table is made for
    patch_size: int = 16  # square patch side (stride of the patch convolution)
    num_frames: int = 3  # frames per clip T (rows of temporal_embed)
    shared_embedding_dim: int = 512  # output width of txt_proj / vid_proj (retrieval embedding)
    drop_rate: float = 0.1  # dropout after the embeddings, after attention's proj and inside the MLP
    drop_path_rate: float = 0.1  # stochastic depth of the last block (linear from 0 over the blocks)
    temperature: float = 0.05  # fixed (not learned) softmax temperature of ind_itc
    fold_div: int = 8  # temporal token rolling moves tokens_per_frame // fold_div tokens each way
    target_loss: TargetLoss = "ind_itc"  # meta-objective: "ind_itc" (paper) or "mlm" (the released fork)
    patch_shuffle: bool = False  # official per-forward random patch order in training (never in eval)
    initializer_range: float = 0.02  # std of the normal / truncated-normal inits
    attention: AttentionImpl = "sdpa"  # ViT attention: "sdpa" (fused kernels) or "explicit" (matmul/softmax)

    @classmethod
    def base(cls, **overrides: object) -> AllInOneConfig:
        """The fork's full-size model (ViT-B/16, 224 px, 3 frames, 40 text positions)."""
        cfg = cls(**overrides)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    @classmethod
    def tiny(cls, **overrides: object) -> AllInOneConfig:
        """The configuration of ``shared/fixtures/allinone/golden.pt``: width 32, 2 blocks, 4 heads, 32 px
        frames in 8 px patches (17 tokens per frame, roll fold 2), vocabulary 256, 12 text positions,
        16-d projections, every dropout and drop path 0."""
        values: dict[str, object] = dict(
            vocab_size=256, max_text_len=12, hidden_size=32, num_layers=2, num_heads=4, mlp_ratio=4.0,
            image_size=32, patch_size=8, num_frames=3, shared_embedding_dim=16, drop_rate=0.0, drop_path_rate=0.0,
        )
        values.update(overrides)
        cfg = cls(**values)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    @property
    def loss_names(self) -> tuple[str, ...]:
        """``forward``'s keys in order: the target loss first, then the other one."""
        return (self.target_loss,) + tuple(n for n in LOSS_NAMES if n != self.target_loss)

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patches per frame P."""
        return self.grid_size ** 2

    @property
    def tokens_per_frame(self) -> int:
        """Video tokens per frame: the frame CLS plus P patches."""
        return 1 + self.num_patches

    @property
    def roll_fold(self) -> int:
        """Tokens per frame that temporal token rolling takes from each neighbouring frame."""
        return self.tokens_per_frame // self.fold_div

    def text_config(self) -> BertConfig:
        """Sizes of the BERT pieces (text embeddings, pooler, MLM transform); no BERT encoder is built."""
        return BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=int(self.hidden_size * self.mlp_ratio),
            max_position_embeddings=self.max_text_len, type_vocab_size=2, hidden_dropout_prob=self.drop_rate,
            attention_probs_dropout_prob=0.0, initializer_range=self.initializer_range, attention=self.attention,
        )

    def replace(self, **changes: object) -> AllInOneConfig:
        """A validated copy with ``changes`` applied."""
        cfg = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field, its value and what is allowed."""
        for name in ("vocab_size", "max_text_len", "hidden_size", "num_layers", "num_heads", "image_size",
                     "patch_size", "num_frames", "shared_embedding_dim", "fold_div"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AllInOneConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"AllInOneConfig.hidden_size ({self.hidden_size}) is not a multiple of num_heads "
                             f"({self.num_heads})")
        if self.image_size % self.patch_size:
            raise ValueError(f"AllInOneConfig.image_size ({self.image_size}) is not a multiple of patch_size "
                             f"({self.patch_size})")
        if not self.mlp_ratio > 0 or int(self.hidden_size * self.mlp_ratio) < 1:
            raise ValueError(f"AllInOneConfig.mlp_ratio must give an MLP width >= 1, got {self.mlp_ratio!r}")
        for name in ("drop_rate", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AllInOneConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.temperature > 0:
            raise ValueError(f"AllInOneConfig.temperature must be > 0, got {self.temperature!r}")
        if self.target_loss not in LOSS_NAMES:
            raise ValueError(f"AllInOneConfig.target_loss={self.target_loss!r}; allowed: {LOSS_NAMES}")
        if not isinstance(self.patch_shuffle, bool):
            raise ValueError(f"AllInOneConfig.patch_shuffle must be a bool, got {self.patch_shuffle!r}")
        # The official roll degenerates for fold 0 (every token of the frame, CLS included, rolls one way;
        # reference §1.5) and the two rolled slices would overlap for a fold above a third of the frame.
        if self.roll_fold < 1 or 2 * self.roll_fold >= self.tokens_per_frame:
            raise ValueError(f"AllInOneConfig: {self.tokens_per_frame} tokens per frame // fold_div {self.fold_div} "
                             f"gives a temporal-roll fold of {self.roll_fold}; it must be >= 1 and leave the frame "
                             f"CLS alone (2*fold < tokens per frame); use a larger image_size/patch_size ratio "
                             f"or a different fold_div")
        if not self.initializer_range > 0:
            raise ValueError(f"AllInOneConfig.initializer_range must be > 0, got {self.initializer_range!r}")
        check_attention(self.attention, "AllInOneConfig.attention")
