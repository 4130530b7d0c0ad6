"""VIOLET's official checkpoints and the two entry points to them: load (as ``load_ckpt`` does), and export back.

The official start-up loads two files: ``EncImg`` always loads ``./_snapshot/ckpt_video-swin.pt`` into Swin
(strict), then ``load_ckpt`` copies ``ckpt_violet_pretrain.pt`` over the whole model. :func:`load_official`
does the same in that order; either file may be left out (the pretrain file already holds ``enc_img.swin.*``,
so the Swin file is only needed to start from Kinetics-400 Swin without VIOLET pre-training).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any
from collections.abc import Mapping

from torch import Tensor, nn

from backbones.common import loading
from backbones.common.bert import BertConfig
from backbones.violet.config import SwinConfig, VioletConfig
from backbones.violet.convert import LAYOUTS, SWIN_LAYOUT

__all__ = ["PRETRAINED", "config_from_official", "load_official", "to_official"]

Source = str | os.PathLike | Mapping[str, Tensor]

PRETRAINED: dict[str, loading.PretrainedSpec] = {
    "violet_pretrain": loading.PretrainedSpec(
        filename="ckpt_violet_pretrain.pt",
        layout="pretrain",
        source="tsujuifu/pytorch_violet README (Google Drive link 'ckpt_violet_pretrain.pt'); MELTR's violet/README",
        notes="model.module.state_dict() of main_pretrain.VIOLET_Pretrain (568 keys, keys_shapes.json "
        "'pretrain_official'), written with transformers 4.18, so it should also hold enc_txt.emb_txt.position_ids "
        "(ignored). Not downloaded here: no digest recorded, the layout comes from running the official code.",
    ),
    "video_swin": loading.PretrainedSpec(
        filename="ckpt_video-swin.pt",
        layout="video_swin",
        source="tsujuifu/pytorch_violet README (Google Drive link, placed in ./_snapshot/)",
        notes="Bare SwinTransformer3D state dict (Swin-S, Kinetics-400) incl. the relative_position_index buffers; "
        "its conversion from the mmaction checkpoint is in neither repository. Not downloaded here.",
    ),
}


# Both files are recognised by either entry point, so one passed as the other is named as such.
_SPECS = tuple(PRETRAINED.values())


def _known(values: Mapping[str, Any], kind: type, where: str) -> dict[str, Any]:
    """The entries of ``values`` that are fields of the dataclass ``kind``; unknown keys raise, naming ``where``."""
    fields = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"official VIOLET config: unknown {where} keys {unknown}; known: {sorted(fields)}")
    return dict(values)


def config_from_official(official: Mapping[str, Any], task: str = "retrieval", **overrides: Any) -> VioletConfig:
    """Our :class:`~backbones.violet.config.VioletConfig` from a description of an official VIOLET build.

    The official code has no model config file: Video Swin-S and bert-base are literals in its source, the
    OE answer count comes from the run's arguments. A build with other sizes (as the fixture's, see
    ``shared/fixtures/violet/README.md``) records them as below.

    Args:
        official: ``"swin"`` (``SwinTransformer3D`` arguments: ``embed_dim``, ``depths``, ``num_heads``,
            ``window_size``, ``patch_size``, ``drop_path_rate``...), ``"bert"`` (BERT JSON config fields),
            ``"bert_layer_norm_eps"``, ``"bert_hidden_act"``, ``"D"`` (the literal 768: the token width),
            ``"VQ"`` (the literal 8192: the DALL-E codebook) and ``"size_vocab_oe"`` (the OE answer count).
            Absent entries keep the official literals (our defaults); other keys (input sizes) are ignored.
        task: our task name (``retrieval``, ``qa_oe``, ``qa_mc``).
        overrides: further :class:`VioletConfig` fields (``losses``, ``fork_quirks``...).

    Raises:
        ValueError: unknown Swin / BERT keys, a ``hidden_act`` other than the erf GELU, a ``D`` that is not the
            BERT width, or an invalid result.
    """
    if official.get("bert_hidden_act", "gelu") != "gelu":
        raise ValueError(f"official VIOLET config: bert_hidden_act={official['bert_hidden_act']!r}; only 'gelu' (erf)")
    bert = _known(official.get("bert", {}), BertConfig, "bert")
    if "bert_layer_norm_eps" in official:
        bert["layer_norm_eps"] = official["bert_layer_norm_eps"]
    values: dict[str, Any] = {"task": task, "swin": SwinConfig(**_known(official.get("swin", {}), SwinConfig, "swin")),
                              "bert": BertConfig(**bert)}
    for theirs, ours in (("VQ", "vq_size"), ("size_vocab_oe", "n_answers")):
        if theirs in official:
            values[ours] = official[theirs]
    cfg = VioletConfig(**{**values, **overrides})
    cfg.validate()
    if "D" in official and official["D"] != cfg.bert.hidden_size:
        raise ValueError(f"official VIOLET config: D={official['D']} but bert.hidden_size={cfg.bert.hidden_size}")
    return cfg


def _merge(first: loading.LoadReport, second: loading.LoadReport) -> loading.LoadReport:
    """One report for two loads in sequence (the second overwrites what both fill)."""
    loaded = sorted(set(first.loaded) | set(second.loaded))
    return loading.LoadReport(
        file=f"{first.file} + {second.file}",
        layout=f"{first.layout} + {second.layout}",
        loaded=loaded,
        ignored=sorted(set(first.ignored) | set(second.ignored)),
        left_at_init=sorted(set(first.left_at_init) & set(second.left_at_init)),
        renamed={**first.renamed, **second.renamed},
        pretrained=" + ".join(name for name in (first.pretrained, second.pretrained) if name),
    )


def load_official(model: nn.Module, pretrain: Source | None = None, swin: Source | None = None) -> loading.LoadReport:
    """Loads official VIOLET weights into ``model`` (a :class:`~backbones.violet.model.Violet`).

    Args:
        model: the model to fill.
        pretrain: ``ckpt_violet_pretrain.pt`` or any full VIOLET checkpoint (fork fine-tuned retrieval / QA
            files, the eval model), as a path or a state dict. Layout detected by sentinel keys.
        swin: ``ckpt_video-swin.pt`` (bare Swin state dict), loaded first when both are given.

    Returns:
        The load report (merged when both files are given): loaded, ignored (e.g. ``fc`` for a QA model,
        ``position_ids``) and left at init (e.g. ``fc_oe``/``fc_vtm`` from the pretrain file, as in the fork).

    Raises:
        FileNotFoundError: a path does not exist.
        CheckpointMismatchError: unreadable with ``weights_only=True``, unknown layout, unexpected or missing
            keys, or shape mismatches; the message names the file, the layout and the offending keys.
    """
    if pretrain is None and swin is None:
        raise ValueError("load_official needs pretrain=... and/or swin=...")
    reports = []
    if swin is not None:
        reports.append(loading.load_official(model, swin, (SWIN_LAYOUT,), specs=_SPECS))
    if pretrain is not None:
        reports.append(loading.load_official(model, pretrain, LAYOUTS, specs=_SPECS))
    return reports[0] if len(reports) == 1 else _merge(*reports)


def to_official(model: nn.Module, part: str = "model") -> dict[str, Tensor]:
    """``model``'s weights under official names: the whole model (``part="model"``; identity keys, buffers and
    the tied ``decoder.bias`` alias included) or the bare Swin state dict (``part="swin"``, the layout of
    ``ckpt_video-swin.pt``)."""
    if part == "swin":
        return dict(model.get_submodule("enc_img.swin").state_dict())
    if part != "model":
        raise ValueError(f"part must be 'model' or 'swin', got {part!r}")
    return loading.to_official(model, LAYOUTS[0])
