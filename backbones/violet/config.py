"""VIOLET configuration: Video Swin and BERT sizes, the task, its active MELTR losses and the fork-quirk switch.

The numbers of :meth:`VioletConfig.base` are those of the official code (``shared/reference/violet.md`` §1):
Video Swin-S (``swin_small_patch244_window877``; the VIOLET paper says Swin-B, the code and weights are Swin-S,
pytorch_violet issue #9) and bert-base-uncased for the text embedding and the 12-layer cross encoder.
:meth:`VioletConfig.tiny` is the configuration of ``shared/fixtures/violet/golden.pt``.

Losses per task, in the MELTR fork's order (the loss transformer's task index; ``violet/main_*.py``):

==========  ==========================  ===========
task        losses                      target loss
==========  ==========================  ===========
retrieval   ``vtm, mtm, mvm``           vtm
qa_oe       ``oe, vtm, mtm, mvm``       oe
qa_mc       ``mc, vtm, mtm, mvm``       mc
==========  ==========================  ===========

``losses`` may name a subset (in that order); ``target_loss`` (the loss the meta step optimises) defaults to
the first active one, which is the task's loss of the table whenever it is active.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from backbones.common.attention import AttentionImpl, check_attention
from backbones.common.bert import BertConfig

__all__ = ["Task", "TASK_LOSSES", "SwinConfig", "VioletConfig"]

Task = Literal["retrieval", "qa_oe", "qa_mc"]

# MELTR fork order per task; position = task-embedding index of the loss transformer.
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "retrieval": ("vtm", "mtm", "mvm"),
    "qa_oe": ("oe", "vtm", "mtm", "mvm"),
    "qa_mc": ("mc", "vtm", "mtm", "mvm"),
}


def _triple(value: Any) -> tuple[int, int, int]:
    return tuple(int(v) for v in value)  # type: ignore[return-value]


@dataclass
class SwinConfig:
    """Video Swin Transformer 3-D sizes (official ``SwinTransformer3D`` defaults = Swin-S)."""

    embed_dim: int = 96  # channels after the patch embedding; stage s has embed_dim·2^s
    depths: tuple[int, ...] = (2, 2, 18, 2)  # blocks per stage
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # heads per stage (head width 32 at full size)
    patch_size: tuple[int, int, int] = (2, 4, 4)  # Conv3d kernel (t, h, w); temporal stride is 1
    window_size: tuple[int, int, int] = (8, 7, 7)  # configured attention window (t, h, w)
    mlp_ratio: float = 4.0  # MLP hidden width / block width
    drop_path_rate: float = 0.2  # stochastic depth, linearly 0 … rate over all blocks (active in train())
    layer_norm_eps: float = 1e-5  # every LayerNorm in Swin (PyTorch default)
    attention: AttentionImpl = "sdpa"  # window attention: "sdpa" (fused kernels) or "explicit" (matmul/softmax)

    def __post_init__(self) -> None:
        self.depths = tuple(int(d) for d in self.depths)
        self.num_heads = tuple(int(h) for h in self.num_heads)
        self.patch_size = _triple(self.patch_size)
        self.window_size = _triple(self.window_size)

    @property
    def num_features(self) -> int:
        """Width of the last stage (768 for Swin-S): the visual token width."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def stride(self) -> int:
        """Total spatial downsampling (32): an S-pixel frame gives an (S/stride)² patch grid."""
        return self.patch_size[1] * 2 ** (len(self.depths) - 1)

    def validate(self, name: str = "swin") -> None:
        """Raises ``ValueError`` naming ``name`` and the offending field."""
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(f"{name}.depths {self.depths} and {name}.num_heads {self.num_heads} need one entry per stage")
        if min(self.depths) < 1 or min(self.num_heads) < 1 or self.embed_dim < 1:
            raise ValueError(f"{name}: embed_dim, depths and num_heads must be positive")
        for stage, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** stage) % heads:
                raise ValueError(f"{name}: stage {stage} width {self.embed_dim * 2 ** stage} is not divisible by {heads} heads")
        if self.patch_size[0] != 2 or self.patch_size[1] != self.patch_size[2] or self.patch_size[1] < 1:
            # VIOLET pads one frame and convolves with temporal stride 1: T frames in, T out only for t-kernel 2.
            raise ValueError(f"{name}.patch_size must be (2, p, p), got {self.patch_size}")
        if min(self.window_size) < 1:
            raise ValueError(f"{name}.window_size must be positive, got {self.window_size}")
        if not 0.0 <= self.drop_path_rate < 1.0 or self.mlp_ratio <= 0 or self.layer_norm_eps <= 0:
            raise ValueError(f"{name}: drop_path_rate must be in [0, 1), mlp_ratio and layer_norm_eps > 0")
        check_attention(self.attention, f"{name}.attention")


def _bert_base() -> BertConfig:
    return BertConfig()


@dataclass
class VioletConfig:
    """Everything that shapes a VIOLET model. Defaults are the full-size numbers of the MELTR fork."""

    task: Task = "retrieval"  # fine-tuning task: picks the heads and the loss order
    losses: tuple[str, ...] = ()  # active losses = forward's keys, a subsequence of TASK_LOSSES[task]; () = all
    target_loss: str | None = None  # the loss the meta step optimises, one of losses; None = the first of them
    swin: SwinConfig = field(default_factory=SwinConfig)  # Video Swin (enc_img.swin)
    bert: BertConfig = field(default_factory=_bert_base)  # text embedding (enc_txt) and cross encoder (trsfr)
    vq_size: int = 8192  # MVM classes: DALL-E codebook size
    n_answers: int = 1000  # qa_oe answer vocabulary (1000 MSVD-QA, 1540 TGIF-Frame)
    max_frames: int = 6  # rows of the temporal embedding emb_len (T <= 6)
    max_patches: int = 196  # patch slots of emb_pos besides the frame CLS (14², i.e. frames <= 448 px)
    head_dropout: float = 0.1  # dropout in front of the VTM / MC / MVM heads
    oe_dropout: float = 0.5  # dropout in front of the OE head (fork 0.5; official VIOLET 0.1)
    vtm_temperature: float = 0.05  # VTM training logits are fc(·) / temperature
    mtm_prob: float = 0.15  # probability of masking each non-special token (no 80/10/10 rule)
    # The MELTR fork's bugs, reproduced when True (the golden fixture was made with them); False = the paper:
    # (1) QA-MC MTM masks whole option rows and labels whole rows (CLS/SEP/PAD included, or all [MASK]);
    # (2) QA-MC VTM pairs the first B rows of the option-expanded batch (options of video 0), not B videos;
    # (3) masking is in place, so the answer loss (oe / mc) and VTM see the block-masked video.
    fork_quirks: bool = False

    def __post_init__(self) -> None:
        self.losses = tuple(self.losses) if self.losses else TASK_LOSSES.get(self.task, ())
        if self.target_loss is None and self.losses:
            self.target_loss = self.losses[0]

    @classmethod
    def base(cls, **overrides: Any) -> VioletConfig:
        """Full-size VIOLET (Video Swin-S + bert-base, 12 cross layers, hidden 768)."""
        cfg = cls(**overrides)
        cfg.validate()
        return cfg

    @classmethod
    def tiny(cls, *, vocab_size: int = 512, vq_size: int = 128, n_answers: int = 10, **overrides: Any) -> VioletConfig:
        """The configuration of ``shared/fixtures/violet/golden.pt``: Swin embed 4, depths (2,2,2,2), heads
        (1,1,2,4), window (8,7,7), no drop path; BERT hidden 32, 2 layers, 4 heads, FFN 64, 64 positions,
        dropout 0; 128 VQ classes; 10 answers. ``vocab_size=30522`` makes it usable with the real tokenizer."""
        values: dict[str, Any] = dict(
            swin=SwinConfig(embed_dim=4, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 4), drop_path_rate=0.0),
            bert=BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0),
            vq_size=vq_size, n_answers=n_answers,
        )
        values.update(overrides)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> VioletConfig:
        """A validated copy with ``changes`` applied (``losses`` follow a changed ``task`` unless given, and
        ``target_loss`` changed ``losses`` unless given)."""
        if "task" in changes and "losses" not in changes:
            changes["losses"] = ()
        if "losses" in changes and "target_loss" not in changes:
            changes["target_loss"] = None
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field and the allowed values."""
        if self.task not in TASK_LOSSES:
            raise ValueError(f"VioletConfig.task={self.task!r}; allowed: {sorted(TASK_LOSSES)}")
        order = TASK_LOSSES[self.task]
        if not self.losses or list(self.losses) != [n for n in order if n in self.losses] or len(set(self.losses)) != len(self.losses):
            raise ValueError(f"VioletConfig.losses={self.losses!r}: task {self.task!r} allows a non-empty subsequence "
                             f"of {order}, in that order (the order is the loss transformer's task index)")
        if self.target_loss not in self.losses:
            raise ValueError(f"VioletConfig.target_loss={self.target_loss!r} is not an active loss {self.losses}")
        if not isinstance(self.swin, SwinConfig) or not isinstance(self.bert, BertConfig):
            raise ValueError("VioletConfig.swin must be a SwinConfig and VioletConfig.bert a BertConfig")
        self.swin.validate("swin")
        self.bert.validate("bert")
        if self.bert.hidden_size != self.swin.num_features:
            raise ValueError(f"bert.hidden_size ({self.bert.hidden_size}) must equal the Swin output width "
                             f"({self.swin.num_features} = embed_dim·2^(stages-1)): visual and text tokens share the encoder")
        for name in ("vq_size", "n_answers", "max_frames", "max_patches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"VioletConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("head_dropout", "oe_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"VioletConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.vtm_temperature > 0 or not 0.0 < self.mtm_prob <= 1.0:
            raise ValueError(f"VioletConfig.vtm_temperature must be > 0 and mtm_prob in (0, 1], got "
                             f"{self.vtm_temperature!r}, {self.mtm_prob!r}")
        if not isinstance(self.fork_quirks, bool):
            raise ValueError(f"VioletConfig.fork_quirks must be a bool, got {self.fork_quirks!r}")
