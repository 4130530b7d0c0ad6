"""UniVL configuration: tower sizes, input lengths, the active MELTR losses and the module layout.

Which optional modules a model builds follows from two facts of the reference code:

* official UniVL builds modules per task (``shared/reference/univl.md`` §3.7): FT-Joint has only the two
  encoders; FT-Align adds ``cross`` + ``similarity_dense``; captioning adds ``cross``, ``decoder`` and an
  unused ``similarity_dense``; stage-two pre-training also has the ``cls``/``cls_visual`` heads;
* MELTR's fork (§4.6) builds *every* module for every task and feeds all 8 losses to MELTR by default,
  for retrieval as well as captioning (so retrieval runs also train the decoder).

``layout="auto"`` (the default) builds exactly the modules the active losses need; with the default
8 losses that is the full stage-two set, as in the MELTR fork, for both tasks. Naming an official
layout instead builds that layout's modules (for checkpoint-exact key sets); it must include what the
active losses need.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from backbones.common.bert import BertConfig

__all__ = ["LOSS_NAMES", "KNOWN_LOSSES", "OPTIONAL_MODULES", "LOSS_MODULES", "LAYOUT_MODULES", "TARGET_LOSS", "Task", "UniVLConfig"]

Task = Literal["retrieval", "caption", "sentiment"]

# MELTR's 8 UniVL losses in its task order (mlvlab/MELTR univl/main.py); the order is the loss
# transformer's task-embedding index. "m_" = computed on the masked text and masked video.
LOSS_NAMES: tuple[str, ...] = ("joint", "alignment", "mlm", "mfm", "m_joint", "m_align", "decoder", "m_decoder")

# "sentiment" (CMU-MOSI regression; neither UniVL nor MELTR released it) comes first: it is the target
# loss of its task, and the order of the active losses is the loss transformer's task index.
KNOWN_LOSSES: tuple[str, ...] = ("sentiment",) + LOSS_NAMES

# Modules beyond bert / visual / normalize_video, which every layout has.
OPTIONAL_MODULES: tuple[str, ...] = ("cross", "decoder", "cls", "cls_visual", "similarity_dense", "sentiment_head")

# What each loss reads besides the two encoders.
LOSS_MODULES: dict[str, tuple[str, ...]] = {
    "sentiment": ("cross", "sentiment_head"),
    "joint": (),
    "alignment": ("cross", "similarity_dense"),
    "mlm": ("cross", "cls"),
    "mfm": ("cross", "cls_visual"),
    "m_joint": (),
    "m_align": ("cross", "similarity_dense"),
    "decoder": ("cross", "decoder"),
    "m_decoder": ("cross", "decoder"),
}

# Official layouts (keys_shapes.json configurations) → optional modules they contain.
LAYOUT_MODULES: dict[str, tuple[str, ...]] = {
    "retrieval_ft_joint": (),
    "pretrain_stage_one": (),
    "retrieval_ft_align": ("cross", "similarity_dense"),
    "caption": ("cross", "decoder", "similarity_dense"),
    "pretrain_stage_two": ("cross", "decoder", "cls", "cls_visual", "similarity_dense"),
}

# MELTR's target (meta-objective) loss per task (MELTR main.py: retrieval → alignment, caption → decoder).
TARGET_LOSS: dict[str, str] = {"retrieval": "alignment", "caption": "decoder", "sentiment": "sentiment"}


def _bert_base() -> BertConfig:
    return BertConfig()


@dataclass
class UniVLConfig:
    """Everything that shapes a UniVL model. Defaults are the full-size (``base``) numbers."""

    text: BertConfig = field(default_factory=_bert_base)  # text encoder `bert.*` (bert-base-uncased)
    visual: BertConfig = field(default_factory=lambda: BertConfig(  # video encoder `visual.*`
        vocab_size=1024, num_hidden_layers=6))  # vocab_size = video_dim (input of the Linear embedding)
    cross: BertConfig = field(default_factory=lambda: BertConfig(  # cross encoder `cross.*`
        vocab_size=768, num_hidden_layers=2, max_position_embeddings=1024))  # vocab unused (no word table)
    decoder: BertConfig = field(default_factory=lambda: BertConfig(  # caption decoder `decoder.*`
        num_hidden_layers=3))  # max_position_embeddings = official max_target_embeddings (tied to bert's)
    video_dim: int = 1024  # S3D feature size per frame
    max_words: int = 48  # padded text / caption length L
    max_frames: int = 48  # padded number of frames F
    margin: float = 0.1  # max-margin ranking margin (joint / m_joint)
    task: Task = "retrieval"  # fine-tuning task; picks the default target_loss
    losses: tuple[str, ...] = LOSS_NAMES  # active losses = forward's keys, a subsequence of LOSS_NAMES
    layout: str = "auto"  # "auto" (what the losses need) or a LAYOUT_MODULES key
    target_loss: str | None = None  # the loss the meta step optimises, one of losses; None = TARGET_LOSS[task]
    visual_input_dim: int = 0  # raw visual feature width; 0 = video_dim. Otherwise a new Linear projects it to video_dim
    sentiment_loss: Literal["l1", "mse"] = "l1"  # CMU-MOSI regression loss (MMSA trains with L1)

    def __post_init__(self) -> None:
        self.losses = tuple(self.losses)
        if not self.target_loss:  # None; also "", what configs stored before it was optional
            self.target_loss = TARGET_LOSS.get(self.task)

    @classmethod
    def base(cls, **overrides: object) -> UniVLConfig:
        """Full-size UniVL (BERT-base text 12 / visual 6 / cross 2 / decoder 3 layers, hidden 768)."""
        cfg = cls(**overrides)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    @classmethod
    def tiny(cls, **overrides: object) -> UniVLConfig:
        """The configuration of ``shared/fixtures/univl/golden.pt``: hidden 32, 4 heads, FFN 64, vocab 512,
        2 layers per tower, L=12, F=10 (dropout 0.1 as configured there; the fixture numbers are taken
        with dropout off, i.e. in eval mode)."""

        def tower(vocab_size: int, max_position_embeddings: int) -> BertConfig:
            return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                              vocab_size=vocab_size, max_position_embeddings=max_position_embeddings)

        values: dict[str, object] = dict(
            text=tower(vocab_size=512, max_position_embeddings=64),
            visual=tower(vocab_size=1024, max_position_embeddings=64),
            cross=tower(vocab_size=32, max_position_embeddings=128),
            decoder=tower(vocab_size=512, max_position_embeddings=64),
            video_dim=1024, max_words=12, max_frames=10, margin=0.1,
        )
        values.update(overrides)
        cfg = cls(**values)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    def replace(self, **changes: object) -> UniVLConfig:
        """A validated copy with ``changes`` applied (``target_loss`` follows a changed ``task`` unless given)."""
        if "task" in changes and "target_loss" not in changes:
            changes["target_loss"] = None  # re-derive the target loss for the new task
        cfg = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    def modules(self) -> frozenset[str]:
        """The optional modules (subset of :data:`OPTIONAL_MODULES`) this configuration builds."""
        if self.layout == "auto":
            return frozenset(m for name in self.losses for m in LOSS_MODULES[name])
        return frozenset(LAYOUT_MODULES[self.layout])

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field and the allowed values."""
        for name in ("text", "visual", "cross", "decoder"):
            tower = getattr(self, name)
            if not isinstance(tower, BertConfig):
                raise ValueError(f"UniVLConfig.{name} must be a BertConfig, got {type(tower).__name__}")
            tower.validate(name)
        if self.task not in TARGET_LOSS:
            raise ValueError(f"UniVLConfig.task={self.task!r}; allowed: {sorted(TARGET_LOSS)}")
        unknown = [n for n in self.losses if n not in KNOWN_LOSSES]
        if unknown or not self.losses:
            raise ValueError(f"UniVLConfig.losses={self.losses!r}: unknown {unknown}; allowed (non-empty, "
                             f"in this order): {KNOWN_LOSSES}")
        if list(self.losses) != [n for n in KNOWN_LOSSES if n in self.losses]:
            raise ValueError(f"UniVLConfig.losses={self.losses!r} must follow MELTR's order {KNOWN_LOSSES} "
                             "without repeats (the order is the loss transformer's task index)")
        if self.visual_input_dim < 0 or self.sentiment_loss not in ("l1", "mse"):
            raise ValueError(f"UniVLConfig.visual_input_dim must be >= 0 and sentiment_loss l1|mse, got "
                             f"{self.visual_input_dim}, {self.sentiment_loss!r}")
        if self.target_loss not in self.losses:
            raise ValueError(f"UniVLConfig.target_loss={self.target_loss!r} is not an active loss {self.losses}")
        if self.layout != "auto" and self.layout not in LAYOUT_MODULES:
            raise ValueError(f"UniVLConfig.layout={self.layout!r}; allowed: 'auto', {sorted(LAYOUT_MODULES)}")
        if self.layout != "auto":
            built = set(LAYOUT_MODULES[self.layout])
            lacking = {n: [m for m in LOSS_MODULES[n] if m not in built] for n in self.losses}
            lacking = {n: ms for n, ms in lacking.items() if ms}
            if lacking:
                raise ValueError(f"UniVLConfig.layout={self.layout!r} lacks modules that active losses need: {lacking}")
        hidden = {n: getattr(self, n).hidden_size for n in ("text", "visual", "cross", "decoder")}
        if len(set(hidden.values())) != 1:
            # The cross encoder concatenates text and video states, the decoder attends to them.
            raise ValueError(f"all towers need one hidden_size, got {hidden}")
        if self.visual.vocab_size != self.video_dim:
            raise ValueError(f"visual.vocab_size ({self.visual.vocab_size}) must equal video_dim ({self.video_dim}): "
                             "it is the input size of the visual Linear embedding")
        # The decoder shares bert's word and position tables (official weight tying).
        if self.decoder.vocab_size != self.text.vocab_size:
            raise ValueError(f"decoder.vocab_size ({self.decoder.vocab_size}) must equal text.vocab_size "
                             f"({self.text.vocab_size}): the decoder shares bert's word table")
        if self.decoder.max_position_embeddings != self.text.max_position_embeddings:
            raise ValueError(f"decoder.max_position_embeddings ({self.decoder.max_position_embeddings}) must equal "
                             f"text.max_position_embeddings ({self.text.max_position_embeddings}): shared table")
        if self.max_words < 2 or self.max_frames < 1:
            raise ValueError(f"max_words ({self.max_words}) must be >= 2 ([CLS] [SEP]) and max_frames "
                             f"({self.max_frames}) >= 1")
        # The official model asserts the same length limits.
        limits = {"max_words <= text.max_position_embeddings": self.max_words <= self.text.max_position_embeddings,
                  "max_frames <= visual.max_position_embeddings": self.max_frames <= self.visual.max_position_embeddings,
                  "max_words + max_frames <= cross.max_position_embeddings":
                      self.max_words + self.max_frames <= self.cross.max_position_embeddings}
        broken = [k for k, ok in limits.items() if not ok]
        if broken:
            raise ValueError(f"UniVLConfig lengths break {broken} (max_words={self.max_words}, "
                             f"max_frames={self.max_frames})")
        if not self.margin >= 0:
            raise ValueError(f"UniVLConfig.margin must be >= 0, got {self.margin!r}")
