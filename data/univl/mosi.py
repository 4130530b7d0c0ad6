"""CMU-MOSI: three public layouts read into one record type, and a UniVL dataset over those records.

Inputs (reference/datasets.md §6):

* ``"mmsa"``: MMSA's ``aligned_50.pkl`` / ``unaligned_50.pkl``, a dict ``{"train", "valid", "test"}`` of
  parallel arrays; ``raw_text``, ``vision`` [N, T, 20], ``vision_lengths`` (unaligned file only),
  ``regression_labels`` [N] and ``id`` (``"<video_id>$_$<clip_id>"``) are read, everything else is ignored.
* ``"univl"``: UniVL-style features the user extracts from the raw clips, a pickle ``{id: float[T, 1024]}``
  plus a csv with columns ``id,text,label,split``.
* ``"csd"``: the CMU-MultimodalSDK computational sequences (HDF5: one top-level group holding
  ``data/<video_id>/{features, intervals}`` and ``metadata``): the timestamped words, one visual sequence
  and the opinion labels, cut into segments by the label intervals and split by the standard folds.

Every reader returns a list of :class:`MosiRecord` and validates while reading, so a bad file fails before
training, with a :class:`~data.errors.DataFormatError` that names the file. Non-finite feature values
(MMSA's audio holds ``-inf``, which MMSA's own loader sets to 0; FACET rows can hold NaN) are replaced by 0
in every format, so one bad frame cannot turn a loss into NaN.

:class:`MosiDataset` turns the records of one split into UniVL samples: the keys of
:data:`data.univl.dataset.SAMPLE_KEYS` (shapes in :mod:`data.univl.dataset`) plus ``label``. The encoder text is the
transcript, and so is the decoder target: UniVL's pretext decoder losses, which MELTR keeps as auxiliary
tasks, reconstruct the transcript because MOSI has no captions.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from data.errors import DataFormatError, MissingDataFileError
from data.files import read_csv_rows
from data.safe_pickle import load_pickle
from data.text import PieceFn, SpecialIds, TextTokenizer
from data.univl.config import UniVLDataConfig
from data.univl.dataset import SAMPLE_KEYS, ClipRecord, FeatureTextDataset, load_features

__all__ = ["MosiRecord", "MosiDataset", "read_mmsa", "read_univl", "read_csd", "load_mosi", "STANDARD_FOLDS",
           "SPLITS", "FORMATS", "MOSI_SAMPLE_KEYS", "PAUSE_TOKENS", "UNIVL_FEATURES_FILE", "UNIVL_CSV_FILE", "build"]

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
FORMATS = ("mmsa", "univl", "csd")
LABEL_RANGE = (-3.0, 3.0)  # mean of 7-point Likert scores
#: Per-sample keys of :class:`MosiDataset`: the UniVL batch keys, then the regression target.
MOSI_SAMPLE_KEYS: tuple[str, ...] = SAMPLE_KEYS + ("label",)
#: Tokens of the SDK word sequence that mark silence, not speech (P2FA aligner output).
PAUSE_TOKENS = frozenset({"sp", "sil"})
#: Default file names of the ``univl`` layout under :func:`load_mosi` (our convention; no official file).
UNIVL_FEATURES_FILE = "mosi_videos_features.pickle"
UNIVL_CSV_FILE = "mosi_data.csv"
# Interval comparisons use the SDK's tolerance (dataset.py: ``epsilon=10e-6``).
_EPS = 1e-5

# The standard CMU-MOSI folds: the lists standard_train_fold / standard_valid_fold / standard_test_fold of
# CMU-MultimodalSDK mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSI/cmu_mosi_std_folds.py, by video id.
# That file itself is not in our reference index; these ids were taken from public repositories that embed
# its three variables under the same names, six copies, which agree id for id and in order. The sizes
# (52 / 10 / 31 videos) match reference/datasets.md §6.1.
STANDARD_FOLDS: dict[str, tuple[str, ...]] = {
    "train": (
        "2iD-tVS8NPw", "8d-gEyoeBzc", "Qr1Ca94K55A", "Ci-AH39fi3Y", "8qrpnFRGt2A", "Bfr499ggo-0",
        "QN9ZIUWUXsY", "9T9Hf74oK10", "7JsX8y1ysxY", "1iG0909rllw", "Oz06ZWiO20M", "BioHAh1qJAQ",
        "9c67fiY0wGQ", "Iu2PFX3z_1s", "Nzq88NnDkEk", "Clx4VXItLTE", "9J25DZhivz8", "Af8D0E4ZXaw",
        "TvyZBvOMOTc", "W8NXH0Djyww", "8OtFthrtaJM", "0h-zjBukYpk", "Vj1wYRQjB-o", "GWuJjcEuzt8",
        "BI97DNYfe5I", "PZ-lDQFboO8", "1DmNV9C1hbY", "OQvJTdtJ2H4", "I5y0__X72p0", "9qR7uwkblbs",
        "G6GlGvlkxAQ", "6_0THN4chvY", "Njd1F0vZSm4", "BvYR0L6f2Ig", "03bSnISJMiM", "Dg_0XKD0Mf4",
        "5W7Z1C_fDaE", "VbQk4H8hgr0", "G-xst2euQUc", "MLal-t_vJPM", "BXuRRbG0Ugk", "LSi-o-IrDMs",
        "Jkswaaud0hk", "2WGyTLYerpo", "6Egk_28TtTM", "Sqr0AcuoNnk", "POKffnXeBds", "73jzhE8R1TQ",
        "OtBXNcAL_lE", "HEsqda8_d0Q", "VCslbP0mgZI", "IumbAb8q2dM"),
    "valid": (
        "WKA5OygbEKI", "c5xsKMxpXnc", "atnd_PF-Lbs", "bvLlb-M3UXU", "bOL9jKpeJRs", "_dI--eQ6qVU",
        "ZAIRrfG22O0", "X3j2zQgwYgE", "aiEXnCPZubE", "ZUXBRvtny7o"),
    "test": (
        "tmZoasNr4rU", "zhpQhgha_KU", "lXPQBPVc5Cw", "iiK8YX8oH1E", "tStelxIAHjw", "nzpVDcQ0ywM",
        "etzxEpPuc6I", "cW1FSBF59ik", "d6hH302o4v8", "k5Y_838nuGo", "pLTX3ipuDJI", "jUzDDGyPkXU",
        "f_pcplsH_V0", "yvsjCA6Y5Fc", "nbWiPyCm4g0", "rnaNMUZpvvg", "wMbj6ajWbic", "cM3Yna7AavY",
        "yDtzw_Y-7RU", "vyB00TXsimI", "dq3Nf_lMPnE", "phBUpBr1hSo", "d3_k5Xpfmik", "v0zCBqDeKcE",
        "tIrG4oNLFzE", "fvVhgmXxadc", "ob23OKe5a9Q", "cXypl4FnoZo", "vvZ4IcEtiZc", "f9O3YtZ2VfI",
        "c7UH_rxdZv4"),
}


@dataclass(frozen=True, eq=False)
class MosiRecord:
    """One opinion segment, whichever file it came from.

    Attributes:
        id: Segment id as its source spells it (MMSA ``"<video>$_$<clip>"``, SDK ``"<video>[<row>]"``, csv id).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        text: The transcript, never empty.
        video: float32 [T, D] visual features, T >= 1, all finite.
        label: Sentiment in [-3, 3].
    """

    id: str
    split: str
    text: str
    video: np.ndarray
    label: float


# ----------------------------------------------------------------------------------------------- helpers
def _label(value: Any, source: str, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        shown = value.item() if isinstance(value, np.generic) else value  # 'x', not np.str_('x')
        raise DataFormatError(source, f"{where}: label {shown!r} is not a number") from None
    lo, hi = LABEL_RANGE
    if not (math.isfinite(out) and lo <= out <= hi):
        raise DataFormatError(source, f"{where}: label {out} is outside [{lo:g}, {hi:g}]")
    return out


def _string(value: Any, source: str, where: str, what: str = "text") -> str:
    if isinstance(value, bytes):  # includes np.bytes_
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise DataFormatError(source, f"{where}: {what} is not valid utf-8 ({value[:40]!r})") from None
    if not isinstance(value, str):
        raise DataFormatError(source, f"{where}: {what} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise DataFormatError(source, f"empty {what}: {where} has {value!r}")
    return str(value).strip()


def _finite(features: np.ndarray, zeroed: list[str] | None = None, sid: str = "") -> np.ndarray:
    """float32 features with every non-finite value replaced by 0 (see the module docstring); ``sid`` is
    appended to ``zeroed`` when something was replaced, for :func:`_report_zeroed`."""
    out = np.asarray(features, dtype=np.float32)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    if zeroed is not None:
        zeroed.append(sid)
    return np.where(bad, np.float32(0.0), out)


def _report_zeroed(source: str, zeroed: Sequence[str]) -> None:
    # MMSA's own loader zeroes these silently; we keep its numbers but say which file and segments.
    if zeroed:
        log.warning("%s: non-finite feature values (NaN/inf) replaced by 0, as MMSA does, in %d segment(s): %s%s",
                    source, len(zeroed), ", ".join(zeroed[:10]), " ..." if len(zeroed) > 10 else "")


def _check_unique(records: Sequence[MosiRecord], source: str) -> None:
    seen: dict[str, str] = {}
    for r in records:
        if r.id in seen:
            raise DataFormatError(source, f"segment id {r.id!r} appears twice ({seen[r.id]} and {r.split})")
        seen[r.id] = r.split


# --------------------------------------------------------------------------------------------------- MMSA
def read_mmsa(path: str | os.PathLike[str], feature_dim: int = 20, max_frames: int | None = None, *,
              use_lengths: bool = True) -> list[MosiRecord]:
    """Read MMSA's ``aligned_50.pkl`` or ``unaligned_50.pkl`` (through :func:`data.safe_pickle.load_pickle`).

    Args:
        path: The pickle.
        feature_dim: D, the expected width of ``vision`` (20 FACET dims in the MMSA release).
        max_frames: Keep at most this many leading frames per segment (None: all).
        use_lengths: Trim ``vision[i]`` to its first ``vision_lengths[i]`` rows when that key is present (the
            unaligned file pads every sequence at the end to a common T).

    Returns:
        Records of the splits ``train``, ``valid``, ``test``, in that order and in file order within a split;
        ``video`` is [T_i, D] (T_i = ``vision_lengths[i]`` or T, cut to ``max_frames``).

    Raises:
        MissingDataFileError: No such file.
        UnsafePickleError: The pickle names a global outside the allow-list.
        DataFormatError: A split key or a per-split key is missing, arrays of one split differ in length,
            ``vision`` is not [N, T, feature_dim], a length is outside [1, T], a label is not a number in
            [-3, 3], a text is empty, or an id repeats.
    """
    source = os.fspath(path)
    data = load_pickle(source)
    if not isinstance(data, dict):
        raise DataFormatError(source, f"expected a dict with split keys {list(SPLITS)}, got {type(data).__name__}")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise DataFormatError(source, f"missing split key(s) {missing}; top-level keys are {sorted(map(str, data))}")
    records: list[MosiRecord] = []
    zeroed: list[str] = []
    for split in SPLITS:
        records += _mmsa_split(source, split, data[split], feature_dim, max_frames, use_lengths, zeroed)
    _report_zeroed(source, zeroed)
    _check_unique(records, source)
    return records


def _mmsa_split(source: str, split: str, block: Any, feature_dim: int, max_frames: int | None,
                use_lengths: bool, zeroed: list[str]) -> list[MosiRecord]:
    if not isinstance(block, dict):
        raise DataFormatError(source, f"split {split!r} must be a dict of arrays, got {type(block).__name__}")
    needed = ("raw_text", "vision", "regression_labels", "id")
    missing = [k for k in needed if k not in block]
    if missing:
        raise DataFormatError(source, f"split {split!r} lacks key(s) {missing} (has {sorted(map(str, block))})")
    vision = block["vision"]
    if not (isinstance(vision, np.ndarray) and vision.ndim == 3 and np.issubdtype(vision.dtype, np.number)):
        raise DataFormatError(source, f"split {split!r}: 'vision' must be a 3-D numeric array [N, T, D], got "
                                      f"{type(vision).__name__} shape {getattr(vision, 'shape', None)}")
    n, t, width = vision.shape
    if width != feature_dim:
        raise DataFormatError(source, f"split {split!r}: 'vision' has width {width}, expected "
                                      f"feature_dim={feature_dim}")
    try:
        texts, ids = list(block["raw_text"]), list(block["id"])
        labels = np.asarray(block["regression_labels"]).reshape(-1)  # MMSA stores [N]; tolerate [N, 1]
    except TypeError as exc:
        raise DataFormatError(source, f"split {split!r}: raw_text / id / regression_labels must be sequences "
                                      f"({exc})") from None
    sizes = {"raw_text": len(texts), "id": len(ids), "regression_labels": len(labels), "vision": n}
    lengths = np.full(n, t, dtype=np.int64)
    if use_lengths and "vision_lengths" in block:
        raw = np.asarray(block["vision_lengths"]).reshape(-1)
        sizes["vision_lengths"] = len(raw)
        if len(raw) == n:
            if not np.issubdtype(raw.dtype, np.number) or not np.all(raw == np.round(raw)):
                raise DataFormatError(source, f"split {split!r}: 'vision_lengths' must be integers")
            lengths = raw.astype(np.int64)
    if len(set(sizes.values())) != 1:
        raise DataFormatError(source, f"split {split!r} has arrays of unequal length {sizes}")
    records = []
    for i in range(n):
        where = f"split {split!r} sample {i}"
        sid = _string(ids[i], source, where, "id")
        where = f"{where} (id {sid!r})"
        if not 1 <= lengths[i] <= t:
            raise DataFormatError(source, f"{where}: vision_lengths {int(lengths[i])} is outside [1, {t}]")
        video = vision[i, : int(lengths[i])][:max_frames]
        records.append(MosiRecord(sid, split, _string(texts[i], source, where), _finite(video, zeroed, sid),
                                  _label(labels[i], source, where)))
    return records


# -------------------------------------------------------------------------------------------------- UniVL
def read_univl(features_path: str | os.PathLike[str], csv_path: str | os.PathLike[str], feature_dim: int = 1024,
               max_frames: int | None = None) -> list[MosiRecord]:
    """Read UniVL-style MOSI features: a pickle ``{id: float[T, D]}`` plus a csv ``id,text,label,split``.

    Args:
        features_path: The feature pickle (e.g. S3D features at 1 fps of ``MOSI/Raw/<video>/<clip>.mp4``).
        csv_path: One row per segment; ``split`` is ``train``, ``valid`` or ``test``; ``label`` in [-3, 3].
        feature_dim: D (1024 for UniVL's S3D), checked for every id used.
        max_frames: Keep at most this many leading frames per segment (None: all).

    Returns:
        One record per csv row, in csv order; ``video`` is [T_i, D].

    Raises:
        MissingDataFileError: A file does not exist.
        DataFormatError: A column is missing, an id is empty or repeated, a split is unknown, a label is not
            a number in [-3, 3], a text is empty (all naming the csv); an id has no features, features are not
            [T >= 1, feature_dim] (naming the pickle).
    """
    csv_file, feat_file = os.fspath(csv_path), os.fspath(features_path)
    rows = read_csv_rows(csv_file, ("id", "text", "label", "split"))
    parsed: list[tuple[str, str, str, float]] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        sid, split = row["id"], row["split"]
        if not sid:
            raise DataFormatError(csv_file, f"line {n}: empty id")
        if sid in seen:
            raise DataFormatError(csv_file, f"line {n}: id {sid!r} appears twice")
        seen.add(sid)
        if split not in SPLITS:
            raise DataFormatError(csv_file, f"line {n} (id {sid!r}): split {split!r} is not one of {list(SPLITS)}")
        where = f"line {n} (id {sid!r})"
        parsed.append((sid, split, _string(row["text"], csv_file, where), _label(row["label"], csv_file, where)))
    features = load_features(feat_file, (p[0] for p in parsed), feature_dim, what="segment", require_finite=False)
    records = []
    zeroed: list[str] = []
    for sid, split, text, label in parsed:
        video = features[sid]
        if video.shape[0] == 0:
            raise DataFormatError(feat_file, f"features of segment {sid!r} have no frame")
        records.append(MosiRecord(sid, split, text, _finite(video[:max_frames], zeroed, sid), label))
    _report_zeroed(feat_file, zeroed)
    return records


# -------------------------------------------------------------------------------------------- SDK .csd
class _CsdFile:
    """An open computational sequence; validates the layout and one entry at a time (context manager)."""

    def __init__(self, path: str) -> None:
        import h5py  # lazy: only the csd reader needs HDF5

        self.path = path
        self._h5py = h5py
        if not os.path.isfile(path):
            raise MissingDataFileError(path, "file not found")
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise DataFormatError(path, f"not a readable HDF5 file ({exc})") from None
        try:
            keys = list(self._file.keys())
            # The SDK takes the first key as the root name; a real .csd has exactly one.
            if len(keys) != 1 or not isinstance(self._file[keys[0]], h5py.Group):
                raise DataFormatError(path, "a .csd must hold exactly one top-level group (the sequence's root "
                                            f"name), found {[(k, type(self._file[k]).__name__) for k in keys]}")
            self.root_name = keys[0]
            data = self._file[keys[0]].get("data")
            if not isinstance(data, h5py.Group):
                raise DataFormatError(path, f"group {keys[0]!r} has no 'data' group (has "
                                            f"{sorted(self._file[keys[0]])})")
            self._data = data
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> _CsdFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def ids(self) -> list[str]:
        """Entry (video) ids, in HDF5 name order."""
        return list(self._data.keys())

    def __contains__(self, vid: str) -> bool:
        return vid in self._data

    def entry(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features [N, D], intervals [N, 2] float64)`` of one entry, checked."""
        group = self._data[vid]
        if not isinstance(group, self._h5py.Group):
            raise DataFormatError(self.path, f"data/{vid} must be a group with 'features' and 'intervals'")
        for key in ("features", "intervals"):
            if not isinstance(group.get(key), self._h5py.Dataset):
                raise DataFormatError(self.path, f"data/{vid} lacks the {key!r} dataset (has {sorted(group)})")
        features, intervals = group["features"][()], group["intervals"][()]
        if not (intervals.ndim == 2 and intervals.shape[1] == 2 and np.issubdtype(intervals.dtype, np.number)
                and np.isfinite(intervals).all()):
            raise DataFormatError(self.path, f"data/{vid}/intervals must be a finite numeric [N, 2] array, got "
                                             f"shape {intervals.shape} dtype {intervals.dtype}")
        if features.ndim == 1:  # tolerate [N] for one-value rows; the SDK writes [N, 1]
            features = features[:, None]
        if features.ndim != 2:
            raise DataFormatError(self.path, f"data/{vid}/features must be [N, D], got shape {features.shape}")
        if features.shape[0] != intervals.shape[0]:
            raise DataFormatError(self.path, f"data/{vid}: features has {features.shape[0]} rows but intervals "
                                             f"has {intervals.shape[0]}")
        return features, intervals.astype(np.float64)

    def numeric(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`entry`, for sequences whose features must be numbers (labels, visual)."""
        features, intervals = self.entry(vid)
        if not np.issubdtype(features.dtype, np.number):
            raise DataFormatError(self.path, f"data/{vid}/features must be numeric, got dtype {features.dtype}")
        return features, intervals

    def words(self, vid: str) -> tuple[list[str], np.ndarray]:
        """Decoded words (stripped) and their intervals."""
        features, intervals = self.entry(vid)
        if features.dtype.kind not in "SOU":
            raise DataFormatError(self.path, f"data/{vid}/features must hold words as strings, got dtype "
                                             f"{features.dtype}")
        words = []
        for j, value in enumerate(features[:, 0]):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataFormatError(self.path, f"data/{vid}/features row {j} is not utf-8 ({value!r})") from None
            if not isinstance(value, str):
                raise DataFormatError(self.path, f"data/{vid}/features row {j} is {type(value).__name__}, not a word")
            words.append(value.strip())
        return words, intervals


def _fold_index(folds: Mapping[str, Iterable[str]] | None) -> dict[str, str]:
    """video id → split, checking that no video is in two folds."""
    chosen = STANDARD_FOLDS if folds is None else folds
    unknown = sorted(set(chosen) - set(SPLITS))
    if unknown:
        raise ValueError(f"folds has unknown split(s) {unknown}; allowed: {list(SPLITS)}")
    out: dict[str, str] = {}
    for split, ids in chosen.items():
        if isinstance(ids, (str, bytes)):
            raise ValueError(f"folds[{split!r}] must be a collection of video ids, not one string")
        for vid in ids:
            if vid in out and out[vid] != split:
                raise ValueError(f"video {vid!r} is in both the {out[vid]!r} and the {split!r} fold")
            out[vid] = split
    return out


def read_csd(folder: str | os.PathLike[str], visual_file: str = "CMU_MOSI_Visual_Facet_42.csd",
             words_file: str = "CMU_MOSI_TimestampedWords.csd", labels_file: str = "CMU_MOSI_Opinion_Labels.csd",
             folds: Mapping[str, Iterable[str]] | None = None, feature_dim: int | None = None, *,
             strict: bool = False) -> list[MosiRecord]:
    """Read CMU-MultimodalSDK ``.csd`` files and cut them into opinion segments.

    Per video of the labels file, label row i is segment ``"<video_id>[<i>]"`` (the SDK's key after
    aligning to the labels) with interval [s, e] and label ``features[i, 0]``:

    * text: the words whose interval lies inside [s, e] (within 1e-5 s), in time order, pause tokens
      (:data:`PAUSE_TOKENS`) dropped, joined by spaces. Unlike the SDK's ``align``, which keeps any word that
      overlaps, a word straddling a boundary is left to the neighbouring segment;
    * video: the visual rows whose interval overlaps [s, e] by more than 1e-5 s, in time order (the SDK's
      intersection rule), non-finite values set to 0;
    * split: the fold of ``video_id`` in ``folds``. Videos in no fold are skipped, as the SDK's
      ``get_tensors`` skips them.

    Rows with a zero-length interval are dropped, as the SDK's ``align`` drops them, so ids can skip an i.

    Args:
        folder: Folder holding the three files.
        visual_file: Visual sequence (FACET 4.2 by default; any [N, D] numeric sequence works).
        words_file: ``CMU_MOSI_TimestampedWords.csd`` (one word per row, as bytes).
        labels_file: ``CMU_MOSI_Opinion_Labels.csd``.
        folds: ``{"train": ids, "valid": ids, "test": ids}`` video ids; replaces :data:`STANDARD_FOLDS`.
        feature_dim: Expected visual width D; None takes the width of the first video read.
        strict: Raise instead of skipping (with a logged count) when a labelled fold video is missing from the
            words or visual file, or a segment has no word or no visual row. Skipping mirrors the SDK, whose
            ``hard_unify`` drops segments that any sequence lacks.

    Returns:
        Records in labels-file video order (HDF5 name order), segments in row order; ``video`` is [T_i, D].

    Raises:
        MissingDataFileError: The folder or a file does not exist.
        DataFormatError: Not HDF5, not exactly one top-level group, no ``data`` group, an entry without
            ``features`` / ``intervals``, mismatched row counts, intervals not [N, 2], words that are not strings,
            visual features of another width, a label not a number in [-3, 3], a segment ending before it starts
            (each naming the file); or, with ``strict``, a missing video or an empty segment.
        ValueError: ``folds`` has an unknown split or a video in two folds.
    """
    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise MissingDataFileError(root, "folder not found")
    split_of = _fold_index(folds)
    records: list[MosiRecord] = []
    skipped = {"videos in no fold": 0, "videos missing from words/visual": 0, "empty segments": 0}
    with (_CsdFile(os.path.join(root, labels_file)) as labels, _CsdFile(os.path.join(root, words_file)) as words,
          _CsdFile(os.path.join(root, visual_file)) as visual):
        for vid in labels.ids():
            split = split_of.get(vid)
            if split is None:
                skipped["videos in no fold"] += 1
                continue
            absent = [f.path for f in (words, visual) if vid not in f]
            if absent:
                if strict:
                    raise DataFormatError(absent[0], f"no entry for video {vid!r} of {labels.path}")
                skipped["videos missing from words/visual"] += 1
                continue
            v_feats, v_ints = visual.numeric(vid)
            if feature_dim is None:
                feature_dim = int(v_feats.shape[1])
            if v_feats.shape[1] != feature_dim:
                raise DataFormatError(visual.path, f"data/{vid}/features has width {v_feats.shape[1]}, expected "
                                                   f"feature_dim={feature_dim}")
            cut, empty = _cut_video(vid, split, labels, words, (v_feats, v_ints), visual.path, strict)
            records += cut
            skipped["empty segments"] += empty
    if any(skipped.values()):
        log.warning("read_csd %s: skipped %s", root, ", ".join(f"{n} {k}" for k, n in skipped.items() if n))
    return records


def _cut_video(vid: str, split: str, labels: _CsdFile, words: _CsdFile, visual: tuple[np.ndarray, np.ndarray],
               visual_path: str, strict: bool) -> tuple[list[MosiRecord], int]:
    """Segments of one video (see :func:`read_csd`); returns the records and the count of empty ones."""
    l_feats, l_ints = labels.numeric(vid)
    tokens, w_ints = words.words(vid)
    v_feats, v_ints = visual
    # Time order, as the SDK sorts every entry by start time before intersecting.
    w_order = np.argsort(w_ints[:, 0], kind="stable")
    v_order = np.argsort(v_ints[:, 0], kind="stable")
    records, empty = [], 0
    for i, (start, end) in enumerate(l_ints.tolist()):
        where = f"segment {vid}[{i}] ({start:g}-{end:g} s)"
        if end < start - _EPS:
            raise DataFormatError(labels.path, f"{where} ends before it starts")
        if end - start < _EPS:
            continue
        label = _label(l_feats[i, 0], labels.path, where)
        inside = (w_ints[w_order, 0] >= start - _EPS) & (w_ints[w_order, 1] <= end + _EPS)
        text = " ".join(t for t in (tokens[j] for j in w_order[inside]) if t and t.lower() not in PAUSE_TOKENS)
        overlap = np.minimum(v_ints[v_order, 1], end) - np.maximum(v_ints[v_order, 0], start) > _EPS
        frames = v_order[overlap]
        if not text or frames.size == 0:
            if strict:
                path, what = (words.path, "no word") if not text else (visual_path, "no visual row")
                raise DataFormatError(path, f"{where} has {what}")
            empty += 1
            continue
        records.append(MosiRecord(f"{vid}[{i}]", split, text, _finite(v_feats[frames]), label))
    return records, empty


# ------------------------------------------------------------------------------------------------ dispatch
def load_mosi(format: str, root: str | os.PathLike[str], **kw: Any) -> list[MosiRecord]:  # noqa: A002
    """Read CMU-MOSI in one of :data:`FORMATS`.

    Args:
        format: ``"mmsa"``, ``"univl"`` or ``"csd"``.
        root: ``mmsa``: the pickle, or a folder holding ``filename`` (keyword, default ``aligned_50.pkl``).
            ``univl``: a folder holding ``features_file`` / ``csv_file`` (keywords, defaults
            :data:`UNIVL_FEATURES_FILE` / :data:`UNIVL_CSV_FILE`). ``csd``: the folder of ``.csd`` files.
        **kw: Passed on to :func:`read_mmsa`, :func:`read_univl` or :func:`read_csd`.

    Returns:
        The records of every split.

    Raises:
        ValueError: Unknown format.
        MissingDataFileError / DataFormatError: From the reader.
    """
    path = os.fspath(root)
    if format == "mmsa":
        filename = kw.pop("filename", "aligned_50.pkl")
        return read_mmsa(os.path.join(path, filename) if os.path.isdir(path) else path, **kw)
    if format == "univl":
        features = os.path.join(path, kw.pop("features_file", UNIVL_FEATURES_FILE))
        return read_univl(features, os.path.join(path, kw.pop("csv_file", UNIVL_CSV_FILE)), **kw)
    if format == "csd":
        return read_csd(path, **kw)
    raise ValueError(f"unknown MOSI format {format!r}; choose one of {list(FORMATS)}")


# ------------------------------------------------------------------------------------------------- dataset
class MosiDataset(FeatureTextDataset):
    """The records of one split as UniVL samples plus the sentiment label.

    Each item is a dict with the keys :data:`MOSI_SAMPLE_KEYS`, in that order: the UniVL keys of
    :data:`data.univl.dataset.SAMPLE_KEYS` (``input_ids`` [L] … ``output_caption_ids`` [L]; ``video`` /
    ``masked_video`` [F, D] float32; see :mod:`data.univl.dataset`) and ``label``, a float32 0-dim tensor.
    ``video`` holds the first F frames of the segment, zero-padded. Encoder text and decoder target are both
    the transcript. :func:`data.collate` stacks ``label`` to [N].

    Args:
        records: Records of any splits (e.g. from :func:`load_mosi`); those of ``split`` are kept, in order.
        tokenizer: BERT tokenizer or ``str -> ids`` callable (see :class:`data.text.TextEncoder`).
        max_words: L.
        max_frames: F.
        feature_dim: D; every kept record's video must be [T >= 1, D].
        split: ``"train"``, ``"valid"`` or ``"test"``.
        mask_prob: MLM/MFM probability.
        seed: Base seed of the per-sample masks (see :meth:`set_epoch`).
        force_mask: MELTR's at-least-one rule (training); pass False for evaluation loaders.
        special: Special ids; read from the tokenizer when omitted.

    Raises:
        ValueError: Unknown split, no record of that split, a video of the wrong shape, or a repeated id.
    """

    def __init__(self, records: Sequence[MosiRecord], tokenizer: TextTokenizer | PieceFn, *, max_words: int,
                 max_frames: int, feature_dim: int, split: str, mask_prob: float = 0.15, seed: int = 0,
                 force_mask: bool = True, special: SpecialIds | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        super().__init__(tokenizer, max_words=max_words, max_frames=max_frames, feature_dim=feature_dim,
                         feature_framerate=1.0, mask_prob=mask_prob, force_mask=force_mask, seed=seed,
                         special=special)
        kept = [r for r in records if r.split == split]
        if not kept:
            raise ValueError(f"no record of split {split!r} among {len(records)} records")
        features: dict[str, np.ndarray] = {}
        clips = []
        for r in kept:
            shape = getattr(r.video, "shape", None)
            if not (isinstance(r.video, np.ndarray) and r.video.ndim == 2 and r.video.shape[0] >= 1
                    and r.video.shape[1] == feature_dim):
                raise ValueError(f"record {r.id!r}: video must be an array [T >= 1, {feature_dim}], got shape {shape}")
            if r.id in features:
                raise ValueError(f"record id {r.id!r} appears twice in split {split!r}")
            features[r.id] = r.video
            # Whole segment (start/end None); the transcript is both encoder text and decoder target.
            clips.append(ClipRecord(video_id=r.id, feature_key=r.id, text=r.text, caption=r.text, start=None,
                                    end=None, clip=None, references=(r.text,)))
        self._set_records(clips, features, "<MosiDataset records>", "<MosiDataset records>")
        self.split = split
        self._mosi = kept

    def labels(self) -> Tensor:
        """All labels of the split, float32 [N], in sample order (for evaluation)."""
        return torch.tensor([r.label for r in self._mosi], dtype=torch.float32)

    def meta(self, index: int) -> dict[str, Any]:
        """``id``, ``split``, ``text``, ``label`` and ``n_frames`` (before the cut to F) of sample ``index``."""
        self.record(index)  # bounds check
        r = self._mosi[index]
        return {"id": r.id, "split": r.split, "text": r.text, "label": r.label, "n_frames": int(r.video.shape[0])}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Sample ``index``: :data:`MOSI_SAMPLE_KEYS` tensors (see the class docstring)."""
        item = super().__getitem__(index)
        item["label"] = torch.tensor(self._mosi[index].label, dtype=torch.float32)
        return item


def build(cfg: UniVLDataConfig, tokenizer: TextTokenizer | PieceFn) -> tuple[MosiDataset, dict[str, MosiDataset]]:
    """The training split and ``{"valid": ..., "test": ...}`` of ``cfg.root`` in ``cfg.mosi_format``
    (the valid split selects the checkpoint, the test split is the reported table)."""
    extra = {"filename": cfg.mosi_file} if cfg.mosi_format == "mmsa" else {}
    records = load_mosi(cfg.mosi_format, cfg.root, feature_dim=cfg.feature_dim, **extra)
    kw = cfg.reader_kwargs()
    train = MosiDataset(records, tokenizer, split="train", **kw)
    return train, {s: MosiDataset(records, tokenizer, split=s, force_mask=False, **kw) for s in ("valid", "test")}
