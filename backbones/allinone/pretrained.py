"""All-in-one's official checkpoints: a safe PyTorch-Lightning reader, the fork's loading rules, and export.

**Reading a Lightning ``.ckpt`` without running foreign code.** The file is a ``torch.save`` pickle of a
dict (``epoch``, ``global_step``, ``pytorch-lightning_version``, ``state_dict``, ``optimizer_states``,
``lr_schedulers``, ``callbacks``, ``hparams_name``, ``hyper_parameters``, ...). Under PL 1.1.4 ``callbacks``
is keyed by the callback *class*, so the pickle names ``pytorch_lightning.callbacks.model_checkpoint.
ModelCheckpoint`` and a plain ``weights_only=True`` load refuses it (reference §2.2, §8 item 13). We always
load with ``weights_only=True`` (torch's restricted unpickler; never an unsafe fallback) and allowlist, for
this one load, every global the file names that torch does not already allow, **bound to an inert stand-in**
of ours (:func:`read_lightning_checkpoint`): the foreign module is never imported and nothing it defines
runs. A stand-in called or instantiated by the pickle yields an empty ``OrderedDict`` that may receive
items and attributes, which is all the restricted unpickler lets it do. Modules torch blocks (``os``,
``sys``, ``posix``, ``nt``) stay refused. Only ``state_dict`` is used, and it must hold tensors only; the
optimizer, scheduler and callback states are not restored (the fork's loader reads only ``state_dict``
too). The stand-in names are listed in the load report.

**The fork's loading rules** (``shared/reference/allinone.md`` §2.3), on top of the layout allowlists of
:mod:`backbones.allinone.convert`:

* a text position table of another length (another ``max_text_len``) is dropped and stays at init;
* ``transformer.temporal_embed`` with more frames keeps the first ``num_frames``, with fewer it is
  zero-filled (the fork's ``_inflate_positional_embeds``, mode "zeros");
* ``transformer.pos_embed`` of another size is an error (the fork raises too: no spatial resize).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from backbones.allinone.config import AllInOneConfig
from backbones.allinone.convert import EXPORT_LAYOUT, LAYOUTS, POSITION_IDS
from backbones.common import loading

__all__ = ["PRETRAINED", "LightningCheckpoint", "AllInOneLoadReport", "config_from_official", "read_lightning_checkpoint",
           "load_official", "to_official"]

log = logging.getLogger(__name__)

PRETRAINED = loading.PretrainedSpec(
    filename="all-in-one-plus-224.ckpt",
    layout="cotrain_pretrain",
    source="All-in-one-B+ 'Webvid+YTT+HowTo+CC3+CC12+Coco+VG+SBU' (Google Drive link in showlab/all-in-one's "
    "README, also linked from mlvlab/MELTR allinone/README.md)",
    sha256=None,
    notes="PyTorch-Lightning checkpoint of the CoTraining code (task_mlm_vtm_cotrain_seven, 3 frames). The 168-key "
    "layout is inferred from the official code (keys_shapes.json); the file itself was not available here, so no "
    "digest is recorded.",
)

# Sacred config keys that are AllInOneConfig fields of the same name.
_SACRED_FIELDS = ("vocab_size", "max_text_len", "hidden_size", "num_layers", "num_heads", "mlp_ratio", "image_size",
                  "patch_size", "num_frames", "shared_embedding_dim", "drop_rate")


def config_from_official(official: Mapping[str, Any], **overrides: Any) -> AllInOneConfig:
    """Our :class:`~backbones.allinone.config.AllInOneConfig` from an official sacred config (the ``config`` dict
    a run prints, and a Lightning checkpoint's ``hyper_parameters``).

    Sizes, frames, text length and ``drop_rate`` are read under the same names; ``mlp_ratio`` becomes a float.
    The sacred config does not hold the ViT's stochastic depth (it belongs to the timm variant named by
    ``config["vit"]``; ``vit_base_patch16_224`` keeps timm's 0.1, our default): pass ``drop_path_rate=`` for
    another variant. Every other field (temperature 0.05, fold 8...) is a literal of the official code, i.e.
    our default. ``overrides`` are further :class:`AllInOneConfig` fields.

    Raises:
        ValueError: a missing sacred key or an invalid result.
    """
    missing = [k for k in _SACRED_FIELDS if k not in official]
    if missing:
        raise ValueError(f"official All-in-one config lacks {missing}")
    values: dict[str, Any] = {k: official[k] for k in _SACRED_FIELDS}
    values["mlp_ratio"] = float(values["mlp_ratio"])
    cfg = AllInOneConfig(**{**values, **overrides})
    cfg.validate()
    return cfg


_TEMPORAL = "transformer.temporal_embed"
_TEXT_POSITIONS = "text_embeddings.position_embeddings.weight"
_METADATA_KEYS = ("epoch", "global_step", "pytorch-lightning_version")


@dataclass
class LightningCheckpoint:
    """What :func:`read_lightning_checkpoint` extracts.

    Attributes:
        state_dict: the model weights (tensors only).
        metadata: ``epoch``, ``global_step`` and ``pytorch-lightning_version`` where the file has them.
        stand_ins: foreign globals the file names, each replaced by an inert stand-in (sorted).
    """

    state_dict: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)


@dataclass
class AllInOneLoadReport(loading.LoadReport):
    """:class:`~backbones.common.loading.LoadReport` plus what the Lightning reader and the fork's rules did."""

    metadata: dict[str, Any] = field(default_factory=dict)  # Lightning epoch / global_step / version
    stand_ins: list[str] = field(default_factory=list)  # foreign globals replaced by inert stand-ins
    adapted: list[str] = field(default_factory=list)  # tensors changed by the fork's rules, one note each


class _StandIn:
    """Base of the stand-ins: calling or instantiating one yields an empty ``OrderedDict`` (a type the
    restricted unpickler lets receive items and attributes); nothing else happens."""

    foreign_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return collections.OrderedDict()


def _stand_in(name: str) -> type:
    return type(f"StandIn[{name}]", (_StandIn,), {"foreign_name": name, "__module__": __name__})


def _foreign_globals(path: str) -> list[str]:
    """Globals named by a zip-format ``torch.save`` file that torch's restricted unpickler does not allow by
    itself (read statically; nothing is imported). Legacy (pre-1.6) files cannot be scanned: empty list."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except ValueError:  # not a zip checkpoint
        return []


def _reason(error: Exception) -> str:
    """The informative line of a load error (torch's weights_only message opens with generic advice)."""
    return loading.error_reason(error)


def read_lightning_checkpoint(path: str | os.PathLike) -> LightningCheckpoint:
    """Reads the weights of a Lightning ``.ckpt`` (or any ``torch.save`` state dict) safely.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        loading.CheckpointMismatchError: the file cannot be read by the restricted unpickler, or holds no
            state dict of tensors (the message names the file and the offending keys).
    """
    label = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {label}")
    foreign: list[str] = []
    try:
        # Inside the try: scanning a truncated zip raises torch's own RuntimeError / OSError.
        foreign = _foreign_globals(label)
        # Typed as torch declares its parameter (a list, which is invariant: list[tuple[type, str]] would not do).
        stand_ins: list[Callable[..., object] | tuple[Callable[..., object], str]] = [
            (_stand_in(name), name) for name in foreign]
        with torch.serialization.safe_globals(stand_ins):
            raw = torch.load(label, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # names the file already
    except Exception as e:  # refusal by the restricted unpickler or a corrupt file: never retry unsafely
        raise loading.CheckpointMismatchError(f"{label}: cannot be read safely (weights_only=True, foreign globals "
                                              f"{foreign} as inert stand-ins; truncated or corrupt?): "
                                              f"{_reason(e)}") from e
    return _unwrap(raw, label, foreign)


def _unwrap(raw: Any, label: str, stand_ins: list[str]) -> LightningCheckpoint:
    """``state_dict`` (and metadata) of a Lightning dict, or ``raw`` itself when it is a bare state dict."""
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        state, metadata = raw["state_dict"], {k: raw[k] for k in _METADATA_KEYS if k in raw}
    else:
        state, metadata = raw, {}
    if not isinstance(state, Mapping):
        raise loading.CheckpointMismatchError(f"{label}: holds a {type(raw).__name__}, not a state dict or a "
                                              "Lightning checkpoint with a 'state_dict'")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise loading.CheckpointMismatchError(f"{label}: state_dict entries that are not tensors: {bad[:10]}")
    return LightningCheckpoint(dict(state), metadata, list(stand_ins))


def _apply_fork_rules(state: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """The fork's text-position and temporal-embedding rules; returns (state, keys left at init, notes)."""
    own = model.state_dict()
    state, at_init, notes = dict(state), [], []
    table = state.get(_TEXT_POSITIONS)
    if table is not None and _TEXT_POSITIONS in own and table.shape != own[_TEXT_POSITIONS].shape:
        del state[_TEXT_POSITIONS]
        state.pop(POSITION_IDS, None)
        at_init.append(_TEXT_POSITIONS)
        notes.append(f"{_TEXT_POSITIONS}: checkpoint {tuple(table.shape)} vs model {tuple(own[_TEXT_POSITIONS].shape)}; "
                     "another max_text_len, left at init as the fork does")
    temporal = state.get(_TEMPORAL)
    if temporal is not None and _TEMPORAL in own and temporal.dim() == 3:
        want = own[_TEMPORAL].shape
        have = temporal.shape
        if have[0] == want[0] and have[2] == want[2] and have[1] != want[1]:
            if have[1] > want[1]:
                state[_TEMPORAL] = temporal[:, :want[1]]
                notes.append(f"{_TEMPORAL}: kept the first {want[1]} of {have[1]} frames")
            else:
                state[_TEMPORAL] = torch.cat([temporal, temporal.new_zeros(have[0], want[1] - have[1], have[2])], 1)
                notes.append(f"{_TEMPORAL}: {have[1]} frames zero-filled to {want[1]}")
    return state, at_init, notes


def load_official(model: nn.Module, source: str | os.PathLike | Mapping[str, Any]) -> AllInOneLoadReport:
    """Loads an official All-in-one checkpoint (pre-training or MELTR fine-tuning layout) into ``model``.

    Args:
        model: an :class:`~backbones.allinone.model.AllInOne`.
        source: a Lightning ``.ckpt`` / ``torch.save`` file (read by :func:`read_lightning_checkpoint`), or an
            in-memory state dict or Lightning dict.

    Returns:
        :class:`AllInOneLoadReport` (loaded / ignored / left at init, adaptations, Lightning metadata).

    Raises:
        FileNotFoundError: missing file.
        loading.CheckpointMismatchError: unreadable file, unknown layout, unexpected or missing keys, or
            shapes outside the fork's rules; the message names the file, the layout and the keys.
    """
    if isinstance(source, Mapping):
        label = "<state_dict>"
        checkpoint = _unwrap(source, label, [])
    else:
        label = str(source)
        checkpoint = read_lightning_checkpoint(source)
    weights, _ = loading.read_state_dict(checkpoint.state_dict)  # strips module. / _orig_mod. prefixes
    state, at_init, notes = _apply_fork_rules(weights, model)
    layouts = [dataclasses.replace(lay, may_stay_at_init=lay.may_stay_at_init + tuple(at_init)) for lay in LAYOUTS]
    report = loading.load_official(model, state, layouts, label=label, specs=(PRETRAINED,))
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(loading.LoadReport)}
    full = AllInOneLoadReport(**fields, metadata=checkpoint.metadata,
                              stand_ins=checkpoint.stand_ins, adapted=notes)
    for note in notes:
        log.info("%s: %s", label, note)
    if checkpoint.stand_ins:
        log.info("%s: foreign objects outside state_dict replaced by inert stand-ins: %s", label, checkpoint.stand_ins)
    return full


def to_official(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights in the fork's fine-tuning layout (official order), without the loss network.

    ``text_embeddings.position_ids`` (``arange(max_text_len)``, int64) is written first, as the official
    module's ``state_dict()`` lists it under the pinned transformers 4.2.1.
    """
    weights = loading.to_official(model, EXPORT_LAYOUT)
    length = weights[_TEXT_POSITIONS].shape[0]
    position_ids = torch.arange(length, device=weights[_TEXT_POSITIONS].device)[None]
    return {POSITION_IDS: position_ids, **weights}
