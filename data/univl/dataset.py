"""Plumbing shared by the UniVL feature readers (YouCook2, MSRVTT, CMU-MOSI).

A reader turns its annotation files into a list of :class:`ClipRecord` (one per sample: which features,
which seconds, which encoder text, which caption) and validates everything at construction, so a bad file
fails before training starts, naming the file. :class:`FeatureTextDataset` then builds the per-sample dict
of :data:`SAMPLE_KEYS` tensors on demand, including the MLM/MFM masks.

Per-sample dict (the UniVL batch contract; reference/univl.md §5.7 order, without the pair axis):

=====================  ===========  =======  =================================================================
key                    shape        dtype    meaning
=====================  ===========  =======  =================================================================
input_ids              [L]          int64    ``[CLS] text [SEP]`` then 0
token_type_ids         [L]          int64    all 0 (official ``segment_ids``)
attention_mask         [L]          int64    1 on real tokens
video                  [F, D]       float32  raw features of the clip, zero-padded
video_mask             [F]          int64    1 on valid frames
pairs_masked_text      [L]          int64    ``input_ids`` after MLM corruption
pairs_token_labels     [L]          int64    original id at masked tokens, -1 elsewhere
masked_video           [F, D]       float32  ``video`` with masked frames zeroed
video_labels_index     [F]          int64    frame index at masked frames, -1 elsewhere
input_caption_ids      [L]          int64    ``[CLS] caption`` then 0
decoder_mask           [L]          int64    1 over the decoder input
output_caption_ids     [L]          int64    ``caption [SEP]`` then 0 (not -1)
=====================  ===========  =======  =================================================================

Masks are drawn from a ``torch.Generator`` seeded by ``(seed, epoch, index)``, so a sample's mask does not
depend on worker count, process rank or iteration order, and a resumed run sees the same masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from data.batch import sample_seed
from data.errors import DataFormatError
from data.masking import mask_frames, mask_tokens
from data.safe_pickle import load_pickle
from data.text import PieceFn, SpecialIds, TextEncoder, TextTokenizer

__all__ = ["SAMPLE_KEYS", "ClipRecord", "FeatureTextDataset", "load_features", "slice_clip"]

#: Keys of every per-sample dict, in the official batch-tuple order.
SAMPLE_KEYS: tuple[str, ...] = (
    "input_ids", "token_type_ids", "attention_mask", "video", "video_mask", "pairs_masked_text",
    "pairs_token_labels", "masked_video", "video_labels_index", "input_caption_ids", "decoder_mask",
    "output_caption_ids")


@dataclass(frozen=True)
class ClipRecord:
    """One sample: what a reader resolved from the annotation files."""

    video_id: str  # id in the annotation files
    feature_key: str  # key into the feature pickle
    text: str  # encoder text ("" gives [CLS][SEP])
    caption: str  # decoder target
    start: float | None  # clip start in seconds; None = from the first frame
    end: float | None  # clip end in seconds (inclusive second); None = to the last frame
    clip: int | None  # segment index within the video (YouCook2), None for whole videos
    references: tuple[str, ...]  # every reference caption for captioning evaluation


def load_features(path: str | os.PathLike[str], keys: Iterable[str], feature_dim: int,
                  what: str = "video", require_finite: bool = True) -> dict[str, np.ndarray]:
    """Load a feature pickle (dict key → [n_seconds, D] array) and check the keys a split needs.

    Args:
        path: The feature pickle (read through :func:`data.safe_pickle.load_pickle`).
        keys: Keys the split will read.
        feature_dim: D, expected feature width (1024 for S3D).
        what: Word used for a key in error messages.
        require_finite: Refuse NaN/inf in the features of a key the split reads (MOSI's reader passes False:
            it zeroes them as MMSA does).

    Returns:
        The dict, unchanged (arrays are converted per sample, not copied up front).

    Raises:
        DataFormatError: Not a dict, a key missing, an entry not a 2-D numeric array, width != D, or a NaN/inf
            value (naming the key and the rows).
    """
    source = os.fspath(path)
    features = load_pickle(source)
    if not isinstance(features, dict):
        raise DataFormatError(source, f"expected a dict {what} id → [n_seconds, {feature_dim}] array, "
                                      f"got {type(features).__name__}")
    for key in dict.fromkeys(keys):
        if key not in features:
            raise DataFormatError(source, f"no features for {what} {key!r} ({len(features)} entries in the file)")
        arr = features[key]
        if not isinstance(arr, np.ndarray) or arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            shape = getattr(arr, "shape", None)
            raise DataFormatError(source, f"features of {what} {key!r} must be a 2-D numeric array "
                                          f"[n_seconds, {feature_dim}], got {type(arr).__name__} shape {shape}")
        if arr.shape[1] != feature_dim:
            raise DataFormatError(source, f"features of {what} {key!r} have width {arr.shape[1]}, "
                                          f"expected feature_dim={feature_dim}")
        if require_finite and np.issubdtype(arr.dtype, np.inexact):
            _check_finite(arr, source, f"{what} {key!r}")
    return features


def _check_finite(arr: np.ndarray, source: str, where: str) -> None:
    """Refuse NaN/inf now, naming the file and the video: later they would surface as a model error."""
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1)) if arr.ndim > 1 else np.flatnonzero(bad)
        raise DataFormatError(source, f"features of {where} hold {int(bad.sum())} non-finite value(s) (NaN/inf), "
                                      f"first at row(s) {rows[:5].tolist()} of {arr.shape[0]}")


def _frame_range(n_frames: int, start: float | None, end: float | None, framerate: float) -> tuple[int, int]:
    # Official rule (univl.md §5.2): frames [int(start·fps), int(end·fps) + 1), i.e. the end second is
    # inclusive; Python slicing clips the range to the array.
    lo = 0 if start is None else int(start * framerate)
    hi = n_frames if end is None else int(end * framerate) + 1
    lo = max(lo, 0)  # a negative start would slice from the end of the array
    return lo, max(lo, min(hi, n_frames))


def slice_clip(features: np.ndarray, start: float | None, end: float | None, max_frames: int,
               framerate: float = 1.0) -> tuple[Tensor, Tensor]:
    """Cut a clip out of per-second features, keep the first ``max_frames``, zero-pad.

    Args:
        features: [T, D] features of the whole video.
        start: Clip start in seconds (None = 0).
        end: Clip end in seconds, inclusive (None = the whole video).
        max_frames: F.
        framerate: Features per second (UniVL: 1).

    Returns:
        ``video`` [F, D] float32 and ``video_mask`` [F] int64 (1 on the kept frames).
    """
    lo, hi = _frame_range(features.shape[0], start, end, framerate)
    kept = features[lo:hi][:max_frames]
    video = torch.zeros(max_frames, features.shape[1], dtype=torch.float32)
    video[: kept.shape[0]] = torch.from_numpy(np.array(kept, dtype=np.float32))  # copy: arrays may be read-only
    video_mask = torch.zeros(max_frames, dtype=torch.long)
    video_mask[: kept.shape[0]] = 1
    return video, video_mask


class FeatureTextDataset(Dataset):
    """Base of the UniVL readers: records in, :data:`SAMPLE_KEYS` dicts out.

    Subclasses resolve their files into ``ClipRecord`` s and call :meth:`_set_records`.

    Args:
        tokenizer: BERT tokenizer or ``str -> ids`` callable (see :class:`data.text.TextEncoder`).
        max_words: L.
        max_frames: F.
        feature_dim: D, checked against the feature pickle.
        feature_framerate: Features per second (UniVL: 1.0).
        mask_prob: MLM/MFM probability (official 0.15).
        force_mask: MELTR's at-least-one rule (training loaders); the official test loaders use False.
        seed: Base seed of the per-sample mask generators.
        special: Special ids; read from the tokenizer when omitted.
    """

    def __init__(self, tokenizer: TextTokenizer | PieceFn, *, max_words: int, max_frames: int, feature_dim: int,
                 feature_framerate: float, mask_prob: float, force_mask: bool, seed: int,
                 special: SpecialIds | None) -> None:
        if max_frames < 1 or feature_dim < 1 or feature_framerate <= 0:
            raise ValueError(f"need max_frames >= 1, feature_dim >= 1, feature_framerate > 0; got {max_frames}, "
                             f"{feature_dim}, {feature_framerate}")
        if not 0.0 <= mask_prob <= 1.0 or (force_mask and mask_prob == 0.0):
            raise ValueError(f"mask_prob must be in [0, 1] (and > 0 with force_mask), got {mask_prob}")
        self.text = TextEncoder(tokenizer, max_words, special)
        self.max_words = max_words
        self.max_frames = max_frames
        self.feature_dim = feature_dim
        self.feature_framerate = feature_framerate
        self.mask_prob = mask_prob
        self.force_mask = force_mask
        self.seed = seed
        self.epoch = 0
        self._records: list[ClipRecord] = []
        self._features: Mapping[str, np.ndarray] = {}

    def _set_records(self, records: list[ClipRecord], features: Mapping[str, np.ndarray], features_path: str,
                     source: str) -> None:
        """Install the records after checking that every clip has at least one frame."""
        if not records:
            raise DataFormatError(source, "the split selects no samples")
        for rec in records:
            n = features[rec.feature_key].shape[0]
            lo, hi = _frame_range(n, rec.start, rec.end, self.feature_framerate)
            if hi <= lo:
                # The official loader prints and then loops forever in its frame-masking while-loop.
                raise DataFormatError(features_path, f"clip {rec.clip} of video {rec.video_id!r} "
                                                     f"(start {rec.start}, end {rec.end}) selects no frame of its "
                                                     f"{n}-frame features {rec.feature_key!r}")
        self._records = records
        self._features = features

    def set_epoch(self, epoch: int) -> None:
        """Change the masks drawn for every sample (call before creating each epoch's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._records)

    def record(self, index: int) -> ClipRecord:
        """The resolved :class:`ClipRecord` of sample ``index``."""
        if not 0 <= index < len(self._records):
            raise IndexError(f"sample index {index} out of range for {len(self._records)} samples")
        return self._records[index]

    def meta(self, index: int) -> dict[str, Any]:
        """Non-tensor metadata of sample ``index``.

        Returns:
            ``video_id``, ``clip`` (segment index or None), ``start``/``end`` (seconds or None), ``text`` (the
            encoder text), ``caption`` (the decoder target) and ``references`` (all reference captions).
        """
        rec = self.record(index)
        return {"video_id": rec.video_id, "clip": rec.clip, "start": rec.start, "end": rec.end, "text": rec.text,
                "caption": rec.caption, "references": list(rec.references)}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Build sample ``index``; see the module docstring for the keys, shapes and dtypes."""
        rec = self.record(index)
        gen = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        text = self.text.encode(rec.text)
        masked_text, token_labels = mask_tokens(text["input_ids"], text["attention_mask"], generator=gen,
                                                prob=self.mask_prob, special=self.text.special,
                                                at_least_one=self.force_mask)
        video, video_mask = slice_clip(self._features[rec.feature_key], rec.start, rec.end, self.max_frames,
                                       self.feature_framerate)
        masked_video, video_labels_index = mask_frames(video, video_mask, generator=gen, prob=self.mask_prob,
                                                       at_least_one=self.force_mask)
        dec = self.text.encode_caption(rec.caption)
        return {"input_ids": text["input_ids"], "token_type_ids": text["token_type_ids"],
                "attention_mask": text["attention_mask"], "video": video, "video_mask": video_mask,
                "pairs_masked_text": masked_text, "pairs_token_labels": token_labels, "masked_video": masked_video,
                "video_labels_index": video_labels_index, "input_caption_ids": dec["input_caption_ids"],
                "decoder_mask": dec["decoder_mask"], "output_caption_ids": dec["output_caption_ids"]}
