"""One entry per backbone (and task variant): everything the contract tests need to check it.

A new backbone gets every guarantee MELTR relies on (``tests/contract/test_*.py``) from one :class:`Entry`
in :data:`ENTRIES`: exact ``loss_names``; each loss back-propagated alone reaches its own head and no other
loss's head; forward-mode AD and double backward against finite differences in float64; a batch without a
required key names it; eval mode is deterministic while dropout acts in train mode.

The head maps were tuned on these tiny models (they were the per-backbone tests before): parameter names are
``named_parameters`` names (a tied alias appears under its owner), ``*`` patterns are globs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor, nn

from backbones.allinone import AllInOne, AllInOneConfig
from backbones.univl import UniVL
from backbones.univl.config import KNOWN_LOSSES
from backbones.univl.pretrained import load_official
from backbones.violet import TASK_LOSSES, Violet, VioletConfig
from tests.golden import _allinone as allinone_fixtures
from tests.golden import _univl as univl_fixtures
from tests.golden import _violet as violet_fixtures

__all__ = ["Tolerance", "Entry", "ENTRIES", "entry_ids"]


@dataclass(frozen=True)
class Tolerance:
    """How close an exact derivative must be to its central finite difference:
    ``|exact - fd| <= atol * max|fd| + rtol * |fd|``."""

    rtol: float
    atol: float


@dataclass(frozen=True)
class Entry:
    """How to build and check one backbone.

    Attributes:
        name: the test id, ``backbone/task``.
        build: a fresh tiny model in train mode with dropout > 0 (the tests switch to eval where they need
            determinism); seeded, so two calls give equal weights.
        batch: a valid batch for ``model``; it fixes every random draw the model would make itself (VIOLET's
            masks), so ``model.eval()(batch)`` is a deterministic function of the parameters.
        loss_names: exactly what ``forward`` must return, in order.
        reaches: per loss, parameter-name prefixes it must reach (every parameter under each prefix, except
            :attr:`unreached` ones, gets a gradient above :data:`GRAD_EPS` from that loss alone).
        heads: prefixes of the loss heads; a loss may reach only ``own_heads[loss]`` among them.
        own_heads: per loss, the head prefixes it owns (an empty tuple for losses on the encoders alone).
        unreached: globs of the parameters no loss reaches by construction (unused poolers; biases that
            softmax or CrossEn ignore, e.g. every attention key bias). Exactly these stay below GRAD_EPS.
        weak: globs of parameters whose gradient may fall below GRAD_EPS without being zero by construction
            (a bias that acts as a near-constant shift of a softmax row's logits); they are exempt from both
            checks.
        small_batch: a cheaper valid batch for the float64 derivative checks (default: :attr:`batch`); the
            reach checks keep :attr:`batch`, on which the head maps were tuned.
        required_key: a batch key every forward needs; without it, forward raises an error naming it.
        eps: the finite-difference step along a unit-norm direction (float64).
        jvp, hvp: tolerances of ``torch.func.jvp`` and of the double-backward Hessian-vector product.
    """

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[Any], dict[str, Tensor]]
    loss_names: tuple[str, ...]
    reaches: dict[str, tuple[str, ...]]
    heads: tuple[str, ...]
    own_heads: dict[str, tuple[str, ...]]
    unreached: tuple[str, ...]
    required_key: str
    eps: float
    jvp: Tolerance
    hvp: Tolerance
    weak: tuple[str, ...] = ()
    small_batch: Callable[[Any], dict[str, Tensor]] | None = None

    def never_reached(self, name: str) -> bool:
        """Whether parameter ``name`` gets no gradient by construction (see :attr:`unreached`)."""
        return any(fnmatchcase(name, pattern) for pattern in self.unreached)

    def exempt(self, name: str) -> bool:
        """Whether parameter ``name`` is exempt from the reach checks (see :attr:`weak`)."""
        return any(fnmatchcase(name, pattern) for pattern in self.weak)


GRAD_EPS = 1e-6  # |grad| sum below this counts as "not reached" (float32 rounding noise is ~1e-8)


# ---------------------------------------------------------------------------------------------- UniVL
# Encoders' poolers are unused (the official model has them too); CrossEn (alignment, m_align) is invariant
# to a constant added to every logit, so similarity_dense.bias gets ~0; an attention key bias adds q·b_k to a
# whole row of scores, which softmax ignores.
_UNIVL_UNREACHED = ("bert.pooler.*", "visual.pooler.*", "similarity_dense.bias", "*key.bias")
_UNIVL_HEADS = ("cross.", "similarity_dense.", "cls.", "cls_visual.", "decoder.", "sentiment_head.")
_UNIVL_REACHES: dict[str, tuple[str, ...]] = {
    "joint": ("bert.encoder.", "visual.encoder.", "normalize_video."),
    "alignment": ("bert.encoder.", "visual.encoder.", "cross.encoder.", "cross.pooler.", "similarity_dense.weight"),
    "mlm": ("cross.encoder.", "cls.predictions.transform.", "cls.predictions.bias",
            "bert.embeddings.word_embeddings.weight"),  # = cls.predictions.decoder.weight (tied)
    "mfm": ("cross.encoder.", "cls_visual.predictions.transform.", "cls_visual.predictions.bias",
            "visual.embeddings.word_embeddings.weight", "normalize_video."),  # = cls_visual.predictions.weight
    "m_joint": ("bert.encoder.", "visual.encoder.", "normalize_video."),
    "m_align": ("cross.encoder.", "cross.pooler.", "similarity_dense.weight"),
    "decoder": ("cross.encoder.", "decoder.embeddings.LayerNorm.", "decoder.decoder.layer.",
                "decoder.classifier.cls.predictions.", "bert.embeddings.position_embeddings.weight"),
    "m_decoder": ("cross.encoder.", "decoder.decoder.layer.", "decoder.classifier.cls.predictions."),
    "sentiment": ("bert.encoder.", "visual.encoder.", "cross.encoder.", "cross.pooler.",
                  "sentiment_head."),
}
_UNIVL_OWN: dict[str, tuple[str, ...]] = {
    "joint": (), "m_joint": (),
    "alignment": ("cross.", "similarity_dense."), "m_align": ("cross.", "similarity_dense."),
    "mlm": ("cross.", "cls."), "mfm": ("cross.", "cls_visual."),
    "decoder": ("cross.", "decoder."), "m_decoder": ("cross.", "decoder."),
    "sentiment": ("cross.", "sentiment_head."),
}
_UNIVL_TOL = (1e-4, Tolerance(rtol=1e-6, atol=1e-9), Tolerance(rtol=1e-4, atol=1e-6))


def _univl(name: str, build: Callable[[], UniVL], batch: Callable[[UniVL], dict[str, Tensor]],
           losses: tuple[str, ...]) -> Entry:
    return Entry(name, build, batch, losses, {k: _UNIVL_REACHES[k] for k in losses}, _UNIVL_HEADS,
                 {k: _UNIVL_OWN[k] for k in losses}, _UNIVL_UNREACHED, "output_caption_ids", *_UNIVL_TOL)


def _univl_all_tasks() -> UniVL:
    """Every UniVL loss: MELTR's 8 (retrieval and captioning train on all of them with every module; the tasks
    differ only in target_loss) plus CMU-MOSI's sentiment (MSE here: L1's gradient on the head's bias is a mean
    of signs, which two rows may cancel). Golden weights (dropout 0.1, as the fixture's config) where the
    official checkpoint has them; the sentiment head stays at init."""
    torch.manual_seed(0)
    model = UniVL(univl_fixtures.golden_config(task="sentiment", losses=KNOWN_LOSSES, sentiment_loss="mse"))
    load_official(model, univl_fixtures.load_golden()["state_dict"])
    return model


def _univl_batch(model: UniVL) -> dict[str, Tensor]:
    """The fixture's inputs, first two rows (half the cost of the derivative checks; contrastive losses need
    two), with sentiment labels."""
    inputs = univl_fixtures.load_golden()["inputs"]
    return {**{k: v[:2] for k, v in inputs.items()}, "label": torch.tensor([-2.5, 1.9])}


# ---------------------------------------------------------------------------------------------- VIOLET
def _violet_build(task: str) -> Callable[[], Violet]:
    def build() -> Violet:
        torch.manual_seed(0)
        return Violet(VioletConfig.tiny(task=task))  # heads' dropout 0.1 (OE 0.5)
    return build


def _violet_batch(model: Violet, frames: int = 2, size: int = 64, length: int = 8, options: int = 3) -> dict[str, Tensor]:
    batch = violet_fixtures.random_batch(model.cfg.task, batch=2, frames=frames, size=size, length=length, options=options)
    masks = model.draw_masks(batch, torch.Generator().manual_seed(0))
    return {**batch, "masked_video": masks["masked_video"], "mvm_labels": masks["mvm_labels"],
            "masked_text_ids": masks["masked_text_ids"], "mtm_labels": masks["mtm_labels"]}


def _violet_small_batch(model: Violet) -> dict[str, Tensor]:
    """One 32 px frame (Swin's last stage on one patch), 4 tokens, 2 options: a fifth of the derivative checks' cost."""
    return _violet_batch(model, frames=1, size=32, length=4, options=2)


# The VTM / MC heads end in a Linear whose bias is added to every logit of a softmax row: ~0 gradient.
_VIOLET_UNREACHED = ("fc.3.bias", "fc_vtm.3.bias", "fc_mc.3.bias", "*key.bias")
_VIOLET_ENCODERS = ("enc_img.", "enc_txt.", "trsfr.")
# The answer and VTM heads read the cross encoder's CLS through an MLP whose ReLU pattern is nearly the same
# for every pair of a softmax row, so the last LayerNorm bias and the MLP's first bias act as a near-constant
# logit shift (|grad| ~1e-7, or exactly 0).
_VIOLET_WEAK = ("trsfr.layer.1.output.LayerNorm.bias", "fc*.1.bias")
_VIOLET_HEAD = {"vtm": "fc_vtm.", "mtm": "fc_mtm.", "mvm": "fc_mvm.", "oe": "fc_oe.", "mc": "fc_mc."}


def _violet(task: str) -> Entry:
    losses = TASK_LOSSES[task]
    head = dict(_VIOLET_HEAD, vtm="fc.") if task == "retrieval" else _VIOLET_HEAD
    return Entry(f"violet/{task}", _violet_build(task), _violet_batch, losses,
                 {k: _VIOLET_ENCODERS + (head[k],) for k in losses},
                 tuple(head[k] for k in losses),
                 {k: (head[k],) for k in losses}, _VIOLET_UNREACHED, "text_ids",
                 1e-4, Tolerance(rtol=1e-6, atol=1e-9), Tolerance(rtol=1e-4, atol=1e-6),
                 weak=_VIOLET_WEAK, small_batch=_violet_small_batch)


# ---------------------------------------------------------------------------------------------- All-in-one
def _allinone_build() -> AllInOne:
    torch.manual_seed(0)
    return AllInOne(AllInOneConfig.tiny(drop_rate=0.1, drop_path_rate=0.1))


def _allinone_batch(model: AllInOne) -> dict[str, Tensor]:
    # No [PAD] inside a caption here: the word table's padding row gets no gradient (padding_idx 0, as
    # officially) although forward reads it, so the finite differences would disagree there.
    return allinone_fixtures.random_batch(model.cfg)


_ALLINONE = Entry(
    "allinone/retrieval", _allinone_build, _allinone_batch, ("ind_itc", "mlm"),
    reaches={"ind_itc": ("transformer.", "text_embeddings.", "token_type_embeddings.", "txt_proj.", "vid_proj."),
             "mlm": ("transformer.", "text_embeddings.", "token_type_embeddings.", "mlm_score.")},
    heads=("mlm_score.", "txt_proj.", "vid_proj."),
    own_heads={"ind_itc": ("txt_proj.", "vid_proj."), "mlm": ("mlm_score.",)},
    unreached=("pooler.*",),  # unused by both losses, as officially
    required_key="mlm_labels",
    eps=1e-4, jvp=Tolerance(rtol=1e-6, atol=1e-8), hvp=Tolerance(rtol=1e-5, atol=1e-7),
)


ENTRIES: tuple[Entry, ...] = (
    _univl("univl/retrieval+caption+sentiment", _univl_all_tasks, _univl_batch, KNOWN_LOSSES),
    _violet("retrieval"),
    _violet("qa_oe"),
    _violet("qa_mc"),
    _ALLINONE,
)


def entry_ids(entry: Entry) -> str:
    """pytest id of an entry."""
    return entry.name

