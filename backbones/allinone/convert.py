"""All-in-one's official checkpoint layouts as data for :mod:`backbones.common.loading`.

Our modules carry the official names, so the key table is the identity. The fork's loader is
``load_state_dict(strict=False)`` (``shared/reference/allinone.md`` §2.3); its non-strictness is replaced by
these allowlists, and every other difference raises. Layouts (full size, from ``keys_shapes.json``):

==================  =======  ===============================================================================
layout              entries  what
==================  =======  ===============================================================================
cotrain_pretrain    168      ``all-in-one-plus-224.ckpt`` (CoTraining, losses vtm + mlm): has ``vtm_score.*``
                             (ignored), lacks ``txt_proj``/``vid_proj`` (left at init, as in the fork)
meltr_finetune      188      what the MELTR fork saves: our keys plus ``aux_model.*`` (the loss network,
                             ignored here: it lives in :mod:`meltr`, and the fork never restores it either)
==================  =======  ===============================================================================

Both may carry ``text_embeddings.position_ids`` (a persistent buffer under the pinned transformers 4.2.1,
always ``arange(max_text_len)``); our model has no such buffer, so it is ignored on load and written back by
``to_official``. ``itm_score.*`` (the image-text matching head of other All-in-one pre-training configs) is
ignored like ``vtm_score.*``.
"""

from __future__ import annotations

from backbones.common.loading import Layout

__all__ = ["POSITION_IDS", "PRETRAIN_HEADS", "LOSS_NETWORK", "RETRIEVAL_PROJECTIONS", "LAYOUTS", "EXPORT_LAYOUT"]

# transformers 4.2.1's persistent buffer; content arange(max_text_len).
POSITION_IDS = "text_embeddings.position_ids"

# Pre-training heads the fine-tuning model does not build.
PRETRAIN_HEADS: tuple[str, ...] = ("vtm_score.*", "itm_score.*")

# The MELTR fork's loss network inside its LightningModule.
LOSS_NETWORK: tuple[str, ...] = ("aux_model.*",)

# Fine-tuning heads that the pre-training checkpoint lacks.
RETRIEVAL_PROJECTIONS: tuple[str, ...] = ("txt_proj.*", "vid_proj.*")

_CORE = ("text_embeddings.word_embeddings.weight", "transformer.pos_embed", "transformer.temporal_embed",
         "mlm_score.decoder.weight")

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        name="cotrain_pretrain",
        sentinels=_CORE + ("vtm_score.fc.weight",),
        ignorable=PRETRAIN_HEADS + (POSITION_IDS,),
        may_stay_at_init=RETRIEVAL_PROJECTIONS,
    ),
    Layout(
        name="meltr_finetune",
        sentinels=_CORE + ("txt_proj.weight", "vid_proj.weight"),
        ignorable=LOSS_NETWORK + PRETRAIN_HEADS + (POSITION_IDS,),
    ),
)

# ``to_official`` writes the fine-tuning layout (without the loss network).
EXPORT_LAYOUT: Layout = LAYOUTS[1]
