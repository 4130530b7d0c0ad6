"""VIOLET's official checkpoint layouts as data for :mod:`backbones.common.loading`.

Our modules carry the official names, so every VIOLET layout maps by identity. The official ``load_ckpt``
copies each checkpoint tensor whose key and shape exist in the model and silently keeps the rest; here the
same outcome is spelled out as allowlists (``shared/reference/violet.md`` §2.3):

* head keys the model does not have are ignored (a QA model ignores the pretrained VTM head ``fc``: the fork
  renamed its heads, so ``fc_vtm``, ``fc_oe`` and ``fc_mc`` start untrained);
* heads the checkpoint lacks stay at init;
* ``enc_txt.emb_txt.position_ids`` (a persistent buffer in transformers 4.18, which wrote the released files)
  is ignored;
* anything else (an unknown key, a missing backbone key, a shape mismatch) raises, where the official loader
  would skip it silently.

``ckpt_video-swin.pt`` is a bare ``SwinTransformer3D`` state dict (no prefix; the official ``EncImg`` loads it
strictly); its table maps every key under ``enc_img.swin.`` and everything outside Swin stays at init.

=================  ==================================  ===========================================
layout             heads                               written by
=================  ==================================  ===========================================
pretrain           fc, fc_mtm, fc_mvm                  ``main_pretrain.py`` (``ckpt_violet_pretrain.pt``), fork retrieval fine-tuning
eval_retrieval     fc                                  ``eval_retrieval.py``'s model
qa_oe              fc_oe, fc_vtm, fc_mtm, fc_mvm       fork ``main_qaoe.py``
qa_mc              fc_mc, fc_vtm, fc_mtm, fc_mvm       fork ``main_qamc.py``
video_swin         (Swin only, no prefix)              ``ckpt_video-swin.pt``
=================  ==================================  ===========================================
"""

from __future__ import annotations

from backbones.common.loading import Layout

__all__ = ["LAYOUTS", "SWIN_LAYOUT", "HEADS", "HEAD_SENTINELS", "TIED", "IGNORED_OFFICIAL", "layout"]

# Every task head of any VIOLET model, with the key that proves a checkpoint has it.
HEAD_SENTINELS: dict[str, str] = {
    "fc": "fc.1.weight",
    "fc_oe": "fc_oe.1.weight",
    "fc_mc": "fc_mc.1.weight",
    "fc_vtm": "fc_vtm.1.weight",
    "fc_mtm": "fc_mtm.predictions.bias",
    "fc_mvm": "fc_mvm.1.weight",
}
HEADS: tuple[str, ...] = tuple(f"{name}.*" for name in HEAD_SENTINELS)

# Tied aliases (alias -> owner): one tensor under two keys, in our model as in the official one.
TIED: dict[str, str] = {"fc_mtm.predictions.decoder.bias": "fc_mtm.predictions.bias"}

# Official keys no model of ours has: transformers 4.18's persistent position-id buffer.
IGNORED_OFFICIAL: tuple[str, ...] = ("enc_txt.emb_txt.position_ids",)

# Present in every full VIOLET checkpoint (Swin, visual embedding, text embedding, cross encoder).
_BASE = ("enc_img.emb_cls", "enc_img.swin.patch_embed.proj.weight", "enc_txt.emb_txt.word_embeddings.weight",
         "trsfr.layer.0.attention.self.query.weight")


def layout(name: str, heads: tuple[str, ...]) -> Layout:
    """A full-model layout holding ``heads`` (names of :data:`HEAD_SENTINELS`)."""
    return Layout(
        name=name,
        sentinels=_BASE + tuple(HEAD_SENTINELS[h] for h in heads),
        ignorable=HEADS + IGNORED_OFFICIAL,  # heads a smaller model lacks
        may_stay_at_init=tuple(f"{h}.*" for h in HEAD_SENTINELS if h not in heads),  # heads this file lacks
    )


LAYOUTS: tuple[Layout, ...] = (
    layout("pretrain", ("fc", "fc_mtm", "fc_mvm")),
    layout("eval_retrieval", ("fc",)),
    layout("qa_oe", ("fc_oe", "fc_vtm", "fc_mtm", "fc_mvm")),
    layout("qa_mc", ("fc_mc", "fc_vtm", "fc_mtm", "fc_mvm")),
)

SWIN_LAYOUT = Layout(
    name="video_swin",
    sentinels=("patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight", "norm.weight"),
    key_map={"{}": "enc_img.swin.{}"},
    may_stay_at_init=("enc_img.emb_*", "enc_img.norm.*", "enc_txt.*", "trsfr.*") + HEADS,
)
