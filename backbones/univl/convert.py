"""UniVL's official checkpoint layouts as data for :mod:`backbones.common.loading`.

Our UniVL modules carry the official names, so the key table is the identity. The official loader
renames ``gamma``/``beta`` to ``weight``/``bias`` (old BERT checkpoints) and is non-strict; we apply the
same renames and replace non-strictness by explicit allowlists: a model without a head may ignore its
keys, and a checkpoint from a smaller layout may leave the larger model's extra modules at init (both
are listed in the load report). Layouts, from ``keys_shapes.json`` (all 12/6/2/3 layers, hidden 768):

=====================  =======  ==========================================================
layout                 entries  modules
=====================  =======  ==========================================================
encoders               304      bert, visual, normalize_video (FT-Joint, pre-training stage one)
retrieval_ft_align     344      + cross, similarity_dense
caption                432      + decoder (similarity_dense present, unused)
pretrain_stage_two     444      + cls, cls_visual (``univl.pretrained.bin``; assumed, not downloaded)
=====================  =======  ==========================================================
"""

from __future__ import annotations

from backbones.common.loading import Layout

__all__ = ["LAYOUTS", "LEGACY_RENAMES", "TIED", "HEADS"]

# Old BERT LayerNorm parameter names, renamed by the official loader before matching.
LEGACY_RENAMES: tuple[tuple[str, str], ...] = (("gamma", "weight"), ("beta", "bias"))

# Tied aliases (alias -> canonical). Both names appear in state_dict() and in official checkpoints.
TIED: dict[str, str] = {
    "decoder.embeddings.word_embeddings.weight": "bert.embeddings.word_embeddings.weight",
    "decoder.classifier.cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "decoder.embeddings.position_embeddings.weight": "bert.embeddings.position_embeddings.weight",
    "cls_visual.predictions.weight": "visual.embeddings.word_embeddings.weight",
}

# Module groups beyond the two encoders; which of them a model builds depends on its losses.
HEADS = ("cross.*", "similarity_dense.*", "decoder.*", "cls.*", "cls_visual.*")

# Modules of ours that no official checkpoint has: they always start at init (listed in the report).
OURS_ONLY = ("sentiment_head.*", "visual_projection.*")


def _layout(name: str, sentinels: tuple[str, ...], provides: tuple[str, ...]) -> Layout:
    return Layout(
        name=name,
        sentinels=sentinels,
        legacy_renames=LEGACY_RENAMES,
        ignorable=provides,  # a model without these heads ignores their keys
        may_stay_at_init=tuple(h for h in HEADS if h not in provides) + OURS_ONLY,  # heads this layout lacks
    )


# Sentinels are cumulative (each layout contains the previous one's), so the most specific match wins.
_ENC = ("bert.embeddings.word_embeddings.weight", "visual.embeddings.word_embeddings.weight")
_ALIGN = _ENC + ("similarity_dense.weight", "cross.embeddings.position_embeddings.weight")
_CAPTION = _ALIGN + ("decoder.classifier.cls.predictions.bias",)
_STAGE_TWO = _CAPTION + ("cls.predictions.bias", "cls_visual.predictions.bias")

LAYOUTS: tuple[Layout, ...] = (
    _layout("encoders", _ENC, ()),
    _layout("retrieval_ft_align", _ALIGN, ("cross.*", "similarity_dense.*")),
    _layout("caption", _CAPTION, ("cross.*", "similarity_dense.*", "decoder.*")),
    _layout("pretrain_stage_two", _STAGE_TWO, HEADS),
)
