"""UniVL's official pretrained checkpoint and the entry points to it: its configuration, load, and export back."""

from __future__ import annotations

import dataclasses
import os
from typing import Any
from collections.abc import Mapping

from torch import Tensor, nn

from backbones.common import loading
from backbones.common.bert import BertConfig
from backbones.univl.config import UniVLConfig
from backbones.univl.convert import LAYOUTS

__all__ = ["PRETRAINED", "config_from_official", "load_official", "to_official"]

# BertConfig fields spelled as in the official JSON configs (layer_norm_eps and attention are ours only).
_JSON_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "hidden_dropout_prob", "attention_probs_dropout_prob",
                "initializer_range")
# Our tower -> (its official JSON config, the task flag that overrides its depth, official update_attr).
_TOWERS = {"text": ("bert", "text_num_hidden_layers"), "visual": ("visual", "visual_num_hidden_layers"),
           "cross": ("cross", "cross_num_hidden_layers"), "decoder": ("decoder", "decoder_num_hidden_layers")}
# Task flags that are UniVLConfig fields of the same name.
_TASK_FIELDS = ("video_dim", "max_words", "max_frames", "margin")


def config_from_official(official: Mapping[str, Any], **overrides: Any) -> UniVLConfig:
    """Our :class:`~backbones.univl.config.UniVLConfig` from the official configuration, combined as the
    official ``UniVL.from_pretrained`` combines it (``shared/reference/univl.md`` §2).

    Args:
        official: ``{"bert", "visual", "cross", "decoder"}``: the four official JSON configs as dicts
            (``bert-base-uncased/bert_config.json``, ``modules/{visual,cross,decoder}-base/*_config.json``),
            and ``"task"``: the run's flags (``text/visual/cross/decoder_num_hidden_layers``, ``max_words``,
            ``max_frames``, ``video_dim``, ``margin``; any may be absent). The task's layer counts override
            the JSON ones; the decoder's depth is ``num_decoder_layers`` and its position table
            ``max_target_embeddings`` (its JSON ``num_hidden_layers`` is unused); ``type_vocab_size`` is
            forced to 2 on every tower, as ``get_config`` does.
        overrides: further :class:`UniVLConfig` fields (``task``, ``losses``, ``layout``...).

    Raises:
        ValueError: a tower whose ``hidden_act`` is not the erf GELU we implement, or an invalid result.
    """
    task = dict(official.get("task", {}))
    towers: dict[str, BertConfig] = {}
    for ours, (name, depth_flag) in _TOWERS.items():
        source = dict(official[name])
        if source.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"official {name} config: hidden_act={source['hidden_act']!r}; only 'gelu' (erf) is implemented")
        values = {k: source[k] for k in _JSON_FIELDS if k in source}
        values["type_vocab_size"] = 2
        if ours == "decoder":
            values["num_hidden_layers"] = source["num_decoder_layers"]
            values["max_position_embeddings"] = source["max_target_embeddings"]
        if depth_flag in task:
            values["num_hidden_layers"] = task[depth_flag]
        towers[ours] = BertConfig(**values)
    fields = {f.name for f in dataclasses.fields(UniVLConfig)}
    values = {**towers, **{k: task[k] for k in _TASK_FIELDS if k in task}, **overrides}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"config_from_official: unknown UniVLConfig fields {unknown}")
    cfg = UniVLConfig(**values)
    cfg.validate()
    return cfg

PRETRAINED = loading.PretrainedSpec(
    filename="univl.pretrained.bin",
    layout="pretrain_stage_two",
    source="microsoft/UniVL, release v0 (see its README, 'Pretrained weights')",
    sha256=None,
    notes="Stage-two pre-training on HowTo100M. The 444-key layout is taken from keys_shapes.json (built by "
    "running the official code); the weights themselves were not downloaded here, so no digest is recorded.",
)


def load_official(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor]) -> loading.LoadReport:
    """Loads an official UniVL checkpoint (any of :data:`~backbones.univl.convert.LAYOUTS`) into ``model``.

    Returns:
        The load report (loaded / ignored / left at init). Anything outside the layout's allowlists
        raises :class:`~backbones.common.loading.CheckpointMismatchError` naming the file and keys.
    """
    return loading.load_official(model, source, LAYOUTS, specs=(PRETRAINED,))


def to_official(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights under official names (the identity table, tied aliases included)."""
    return loading.to_official(model, LAYOUTS[-1])
