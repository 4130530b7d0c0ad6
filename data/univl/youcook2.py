"""YouCook2 reader for UniVL features, in the official file layout (``youcookii.zip`` of UniVL release v0).

Files (reference/datasets.md §2.2, reference/univl.md §5.3):

* ``youcookii_train.csv`` / ``youcookii_val.csv``: columns ``video_id,feature_file`` (equal values);
* ``youcookii_data.no_transcript.pickle`` (public) or MELTR's private ``youcookii_data.transcript.pickle``:
  dict ``video_id → {'start', 'end', 'text', 'transcript'}``, four equal-length arrays (numpy object arrays
  in the official file), one entry per annotated segment, times in seconds;
* ``youcookii_videos_features.pickle``: dict ``feature_file → float [n_seconds, 1024]`` S3D features, one
  row per second.

One sample per (video, segment), in csv order then segment order, as the official loaders enumerate them.
The clip is frames ``int(start·fps) … int(end·fps)`` inclusive, cut to ``max_frames`` and zero-padded.

Encoder text (``text_source``):

* ``"caption"``: the segment caption (retrieval; MELTR YouCook2 retrieval);
* ``"transcript"``: the segment's ASR transcript, verbatim (captioning "video + transcript"). In the public
  no-transcript pickle every transcript is ``'NONE'``, so the official video-only model sees
  ``[CLS] none [SEP]``; that is what this option reproduces with that file;
* ``"empty"``: ``[CLS][SEP]``, video-only captioning without the ``none`` word.

The decoder target is always the caption. All files are read through :mod:`data.safe_pickle`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data.errors import DataFormatError
from data.files import read_csv_rows
from data.safe_pickle import load_pickle
from data.text import PieceFn, SpecialIds, TextTokenizer
from data.univl.config import UniVLDataConfig
from data.univl.dataset import ClipRecord, FeatureTextDataset, load_features

__all__ = ["YouCook2", "TEXT_SOURCES", "FILES", "build"]

TEXT_SOURCES = ("caption", "transcript", "empty")
_SEGMENT_KEYS = ("start", "end", "text")


def _seconds(value: Any, data_path: str, video_id: str, field: str, seg: int) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(data_path, f"video {video_id!r} segment {seg}: {field} {value!r} is not a number"
                              ) from None
    if not math.isfinite(out):
        raise DataFormatError(data_path, f"video {video_id!r} segment {seg}: {field} is {out}")
    return out


def _segments(entry: Any, data_path: str, video_id: str, text_source: str) -> list[tuple[float, float, str, str]]:
    """Validate one data-pickle entry; return ``(start, end, caption, transcript)`` per segment."""
    if not isinstance(entry, Mapping):
        raise DataFormatError(data_path, f"entry of video {video_id!r} must be a dict with keys "
                                         f"{list(_SEGMENT_KEYS)}, got {type(entry).__name__}")
    needed = _SEGMENT_KEYS + (("transcript",) if text_source == "transcript" else ())
    missing = [k for k in needed if k not in entry]
    if missing:
        raise DataFormatError(data_path, f"entry of video {video_id!r} lacks key(s) {missing} "
                                         f"(has {sorted(map(str, entry))})")
    try:
        columns = {k: list(entry[k]) for k in needed}
    except TypeError:
        raise DataFormatError(data_path, f"entry of video {video_id!r}: {list(needed)} must be arrays or lists, got "
                                         f"{ {k: type(entry[k]).__name__ for k in needed} }") from None
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise DataFormatError(data_path, f"entry of video {video_id!r} has arrays of unequal length {lengths}")
    out = []
    for i in range(lengths["start"]):
        caption = columns["text"][i]
        if not isinstance(caption, str) or not caption.strip():
            raise DataFormatError(data_path, f"empty caption: video {video_id!r} segment {i} has text {caption!r}")
        transcript = columns["transcript"][i] if "transcript" in columns else ""
        if not isinstance(transcript, str):
            raise DataFormatError(data_path, f"video {video_id!r} segment {i}: transcript must be a string, got "
                                             f"{type(transcript).__name__}")
        start = _seconds(columns["start"][i], data_path, video_id, "start", i)
        end = _seconds(columns["end"][i], data_path, video_id, "end", i)
        out.append((start, end, str(caption), str(transcript)))
    return out


class YouCook2(FeatureTextDataset):
    """YouCook2 clips with UniVL inputs; one sample per annotated segment.

    Args:
        csv_path: ``youcookii_train.csv`` or ``youcookii_val.csv``.
        data_path: ``youcookii_data.transcript.pickle`` or ``youcookii_data.no_transcript.pickle``.
        features_path: ``youcookii_videos_features.pickle``.
        tokenizer: BERT tokenizer or ``str -> ids`` callable (see :class:`data.text.TextEncoder`).
        text_source: ``"caption"``, ``"transcript"`` or ``"empty"`` (module docstring).
        max_words: L (README: 48 retrieval, 128 captioning).
        max_frames: F (README: 48 retrieval, 96 captioning).
        feature_dim: D, checked against every feature array used.
        feature_framerate: Features per second (1.0 for UniVL's S3D).
        mask_prob: MLM/MFM probability.
        force_mask: MELTR's at-least-one rule (train loaders); official test loaders use False.
        seed: Base seed of the per-sample masks (see :meth:`set_epoch`).
        special: Special ids; read from the tokenizer when omitted.

    Raises:
        MissingDataFileError: A file does not exist.
        DataFormatError: A csv column, data-pickle key or video entry is missing; a caption is empty; a
            video has no features or features of the wrong width; a clip selects no frame.

    Each item is a dict of :data:`data.univl.dataset.SAMPLE_KEYS` tensors (see :mod:`data.univl.dataset`); metadata via
    :meth:`meta`: ``video_id``, ``clip`` (segment index), ``start``, ``end``, ``text``, ``caption``,
    ``references`` (``[caption]``).
    """

    def __init__(self, csv_path: str | os.PathLike[str], data_path: str | os.PathLike[str],
                 features_path: str | os.PathLike[str], tokenizer: TextTokenizer | PieceFn, *,
                 text_source: str = "caption", max_words: int = 48, max_frames: int = 48, feature_dim: int = 1024,
                 feature_framerate: float = 1.0, mask_prob: float = 0.15, force_mask: bool = True, seed: int = 0,
                 special: SpecialIds | None = None) -> None:
        if text_source not in TEXT_SOURCES:
            raise ValueError(f"text_source must be one of {TEXT_SOURCES}, got {text_source!r}")
        super().__init__(tokenizer, max_words=max_words, max_frames=max_frames, feature_dim=feature_dim,
                         feature_framerate=feature_framerate, mask_prob=mask_prob, force_mask=force_mask, seed=seed,
                         special=special)
        self.text_source = text_source
        csv_path, data_path, features_path = (os.fspath(p) for p in (csv_path, data_path, features_path))
        rows = read_csv_rows(csv_path, ("video_id", "feature_file"))
        for n, row in enumerate(rows, start=2):  # line 1 is the header
            if not row["video_id"] or not row["feature_file"]:
                raise DataFormatError(csv_path, f"line {n}: empty video_id or feature_file")

        data = load_pickle(data_path)
        if not isinstance(data, dict):
            raise DataFormatError(data_path, f"expected a dict video_id → segments, got {type(data).__name__}")
        records: list[ClipRecord] = []
        for row in rows:
            vid = row["video_id"]
            if vid not in data:
                raise DataFormatError(data_path, f"no entry for video {vid!r} listed in {csv_path}")
            for i, (start, end, caption, transcript) in enumerate(_segments(data[vid], data_path, vid, text_source)):
                text = {"caption": caption, "transcript": transcript, "empty": ""}[text_source]
                records.append(ClipRecord(video_id=vid, feature_key=row["feature_file"], text=text, caption=caption,
                                          start=start, end=end, clip=i, references=(caption,)))
        features = load_features(features_path, (r["feature_file"] for r in rows), feature_dim)
        self._set_records(records, features, features_path, csv_path)


#: Official file names of UniVL's ``youcookii.zip`` (the transcript pickle is MELTR's private one).
FILES = {"train": "youcookii_train.csv", "val": "youcookii_val.csv",
         "transcript": "youcookii_data.transcript.pickle", "no_transcript": "youcookii_data.no_transcript.pickle",
         "features": "youcookii_videos_features.pickle"}


def build(cfg: UniVLDataConfig, tokenizer: TextTokenizer | PieceFn) -> tuple[YouCook2, dict[str, YouCook2]]:
    """The training set (``youcookii_train.csv``) and ``{"test": youcookii_val.csv}`` under ``cfg.root``.

    The data pickle is the transcript one for ``text_source="transcript"``, else the public no-transcript one;
    when only the transcript pickle exists it serves every text source (it also holds the captions).
    """
    root = Path(cfg.root)
    data_file = FILES["transcript"] if cfg.text_source == "transcript" else FILES["no_transcript"]
    if not (root / data_file).exists() and (root / FILES["transcript"]).exists():
        data_file = FILES["transcript"]
    files = (root / data_file, root / FILES["features"])
    kw = cfg.reader_kwargs()
    train = YouCook2(root / FILES["train"], *files, tokenizer, text_source=cfg.text_source, **kw)
    test = YouCook2(root / FILES["val"], *files, tokenizer, text_source=cfg.text_source, force_mask=False, **kw)
    return train, {"test": test}
