"""MSR-VTT reader for UniVL features, in the official file layout (``msrvtt.zip`` of UniVL release v0).

Files (reference/datasets.md §3.3, reference/univl.md §5.4, reference/meltr_official.md §5.1):

* ``MSRVTT_data.json`` (or MELTR's ``MSRVTT_transcript_data_v2.json``): ``videos`` (list of
  ``{video_id, url, …, transcript?}``; **the list order defines the splits**) and ``sentences`` (list of
  ``{video_id, caption}``);
* ``MSRVTT_train.9k.csv``: column ``video_id``;
* ``MSRVTT_JSFUSION_test.csv``: columns ``key,vid_key,video_id,sentence`` (``video_id`` and ``sentence`` are
  used);
* ``msrvtt_videos_features.pickle``: dict ``video_id → float [n_seconds, 1024]``.

Splits (``split``), as MELTR's UniVL loaders build them:

===============  ============================================================================================
``train_7k``     first ``n_train_videos`` (7010 = official train 6513 + val 497) videos of ``videos``; one
                 sample per caption, in ``sentences`` order (140,200 samples on the real file)
``train_9k``     videos listed in the 9k csv; one sample per caption, in ``sentences`` order (180,000)
``test_jsfusion``  one sample per csv row (1000), text and target = the row's ``sentence``
``train_full``   captioning train: the same samples as ``train_7k``
``test_full``    captioning test: the last ``n_test_videos`` (2990) videos, one sample per video whose target
                 is its first caption; ``meta(i)["references"]`` holds all its captions for evaluation
===============  ============================================================================================

The split sizes are parameters so that tiny synthetic data (``data/synthetic/univl.py``) can scale them down; the
defaults are the official ones. The full splits require ``n_train_videos + n_test_videos <= len(videos)``
so train and test never overlap (on the real json: 7010 + 2990 = 10000, i.e. the official ``[:7010]`` /
``[7010:]`` cut).

Encoder text (``text_source``): ``"caption"`` (retrieval), ``"transcript"`` (captioning: the video's
``transcript`` field; missing, empty or ``"none"`` gives ``[CLS][SEP]``, as MELTR does) or ``"empty"``
(``[CLS][SEP]``, UniVL's video-only captioning). The whole video is the clip (first ``max_frames``
seconds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import DataFormatError
from data.files import read_csv_rows, read_json
from data.text import PieceFn, SpecialIds, TextTokenizer
from data.univl.config import UniVLDataConfig
from data.univl.dataset import ClipRecord, FeatureTextDataset, load_features

__all__ = ["MSRVTT", "SPLITS", "TEXT_SOURCES", "FILES", "load_msrvtt_json", "build"]

SPLITS = ("train_7k", "train_9k", "test_jsfusion", "train_full", "test_full")
TEXT_SOURCES = ("caption", "transcript", "empty")


class _MsrvttJson:
    """Validated content of the data json: video order, transcripts, captions per video."""

    def __init__(self, path: str, videos: list[str], transcripts: dict[str, str],
                 sentences: list[tuple[int, str, str]]) -> None:
        self.path = path
        self.videos = videos  # video ids in file order
        self.transcripts = transcripts  # video id → transcript ("" when absent or "none")
        self.sentences = sentences  # (index in the file, video id, caption), file order
        captions: dict[str, list[str]] = {}
        for _, vid, cap in sentences:
            captions.setdefault(vid, []).append(cap)
        # One tuple per video, shared by all of its samples (180k samples would otherwise copy 20 refs each).
        self.captions: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in captions.items()}


def _field(item: Any, key: str, where: str, path: str) -> Any:
    if not isinstance(item, dict) or key not in item:
        raise DataFormatError(path, f"{where} lacks key {key!r}")
    return item[key]


def load_msrvtt_json(path: str | os.PathLike[str]) -> _MsrvttJson:
    """Read and check ``MSRVTT_data.json``.

    Raises:
        MissingDataFileError: The file does not exist.
        DataFormatError: Not json, or ``videos`` / ``sentences`` / a ``video_id`` / ``caption`` is missing,
            or a video id is listed twice.
    """
    source = os.fspath(path)
    data = read_json(source)
    if not isinstance(data, dict):
        raise DataFormatError(source, f"expected a json object with 'videos' and 'sentences', got "
                                      f"{type(data).__name__}")
    for key in ("videos", "sentences"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(source, f"missing list {key!r} (top-level keys: {sorted(data)})")
    videos: list[str] = []
    transcripts: dict[str, str] = {}
    for i, item in enumerate(data["videos"]):
        vid = str(_field(item, "video_id", f"videos[{i}]", source))
        if vid in transcripts:
            raise DataFormatError(source, f"videos[{i}]: video id {vid!r} listed twice (the list order defines "
                                          "the splits)")
        transcript = item.get("transcript", "")
        transcript = transcript.strip() if isinstance(transcript, str) else ""
        # MELTR's v2 json writes 'none' for videos without ASR; its loader then feeds an empty text.
        transcripts[vid] = "" if transcript.lower() == "none" else transcript
        videos.append(vid)
    sentences = []
    for j, item in enumerate(data["sentences"]):
        vid = str(_field(item, "video_id", f"sentences[{j}]", source))
        sentences.append((j, vid, _field(item, "caption", f"sentences[{j}]", source)))
    return _MsrvttJson(source, videos, transcripts, sentences)


def _check_caption(caption: Any, path: str, where: str) -> str:
    if not isinstance(caption, str) or not caption.strip():
        raise DataFormatError(path, f"empty caption: {where} has {caption!r}")
    return caption


class MSRVTT(FeatureTextDataset):
    """MSR-VTT videos with UniVL inputs.

    Args:
        json_path: ``MSRVTT_data.json`` or ``MSRVTT_transcript_data_v2.json``.
        features_path: ``msrvtt_videos_features.pickle``.
        tokenizer: BERT tokenizer or ``str -> ids`` callable (see :class:`data.text.TextEncoder`).
        split: One of :data:`SPLITS` (module docstring).
        csv_path: ``MSRVTT_train.9k.csv`` for ``train_9k``, ``MSRVTT_JSFUSION_test.csv`` for
            ``test_jsfusion``; unused otherwise.
        text_source: ``"caption"``, ``"transcript"`` or ``"empty"``.
        n_train_videos: Videos at the head of ``videos`` forming the 7k / full-caption train split (7010).
        n_test_videos: Videos at the tail of ``videos`` forming the full-caption test split (2990).
        max_words: L (README: 48).
        max_frames: F (README: 48).
        feature_dim: D, checked against every feature array used.
        feature_framerate: Features per second (1.0).
        mask_prob: MLM/MFM probability.
        force_mask: MELTR's at-least-one rule (train loaders); official test loaders use False.
        seed: Base seed of the per-sample masks (see :meth:`set_epoch`).
        special: Special ids; read from the tokenizer when omitted.

    Raises:
        ValueError: Unknown split or text source, or ``csv_path`` missing for a csv split.
        MissingDataFileError: A file does not exist.
        DataFormatError: Bad json/csv structure, an empty caption, a video without captions (9k/test) or
            without features, features of the wrong width, or split sizes larger than the json.

    Each item is a dict of :data:`data.univl.dataset.SAMPLE_KEYS` tensors; metadata via :meth:`meta`:
    ``video_id``, ``clip`` (None), ``start``/``end`` (None: whole video), ``text``, ``caption``, and
    ``references`` (all json captions of the video; the csv sentence for ``test_jsfusion``).
    """

    def __init__(self, json_path: str | os.PathLike[str], features_path: str | os.PathLike[str],
                 tokenizer: TextTokenizer | PieceFn, *, split: str, csv_path: str | os.PathLike[str] | None = None,
                 text_source: str = "caption", n_train_videos: int = 7010, n_test_videos: int = 2990,
                 max_words: int = 48, max_frames: int = 48, feature_dim: int = 1024, feature_framerate: float = 1.0,
                 mask_prob: float = 0.15, force_mask: bool = True, seed: int = 0,
                 special: SpecialIds | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if text_source not in TEXT_SOURCES:
            raise ValueError(f"text_source must be one of {TEXT_SOURCES}, got {text_source!r}")
        if n_train_videos < 1 or n_test_videos < 1:
            raise ValueError(f"split sizes must be >= 1, got n_train_videos={n_train_videos}, "
                             f"n_test_videos={n_test_videos}")
        super().__init__(tokenizer, max_words=max_words, max_frames=max_frames, feature_dim=feature_dim,
                         feature_framerate=feature_framerate, mask_prob=mask_prob, force_mask=force_mask, seed=seed,
                         special=special)
        self.split = split
        self.text_source = text_source
        self.n_train_videos = n_train_videos
        self.n_test_videos = n_test_videos
        meta = load_msrvtt_json(json_path)
        csv_file = ""
        if split in ("train_9k", "test_jsfusion"):
            if csv_path is None:
                name = "MSRVTT_train.9k.csv" if split == "train_9k" else "MSRVTT_JSFUSION_test.csv"
                raise ValueError(f"split {split!r} needs csv_path (the {name})")
            csv_file = os.fspath(csv_path)
        if split in ("train_7k", "train_full"):
            records = self._per_caption(meta, set(self._head_tail(meta)[0]))
        elif split == "test_full":
            records = self._first_caption(meta, self._head_tail(meta)[1])
        elif split == "train_9k":
            wanted = [r["video_id"] for r in read_csv_rows(csv_file, ("video_id",))]
            missing = [v for v in wanted if v not in meta.captions]
            if missing:
                # Official code would silently train on fewer videos; a mismatched json/csv pair is likelier.
                raise DataFormatError(csv_file, f"{len(missing)} video(s) of the 9k list have no caption in "
                                                f"{meta.path}, e.g. {missing[:3]}")
            records = self._per_caption(meta, set(wanted))
        else:
            records = self._jsfusion(meta, csv_file)
        features = load_features(features_path, (r.feature_key for r in records), feature_dim)
        self._set_records(records, features, os.fspath(features_path), csv_file or meta.path)

    def _head_tail(self, meta: _MsrvttJson) -> tuple[Sequence[str], Sequence[str]]:
        """The 7k/full train videos (head) and full test videos (tail) of the json order."""
        n_train, n_test = self.n_train_videos, self.n_test_videos
        if len(meta.videos) < n_train + n_test:
            raise DataFormatError(meta.path, f"has {len(meta.videos)} videos but n_train_videos + n_test_videos = "
                                             f"{n_train} + {n_test} = {n_train + n_test}; pass smaller split sizes "
                                             "for a subset of MSR-VTT")
        return meta.videos[:n_train], meta.videos[len(meta.videos) - n_test:]

    def _text(self, meta: _MsrvttJson, vid: str, caption: str, where: str) -> str:
        if self.text_source == "caption":
            return caption
        if self.text_source == "empty":
            return ""
        if vid not in meta.transcripts:
            raise DataFormatError(meta.path, f"{where}: video {vid!r} is not in 'videos', so it has no transcript")
        return meta.transcripts[vid]

    def _per_caption(self, meta: _MsrvttJson, videos: set[str]) -> list[ClipRecord]:
        """One record per caption of ``videos``, in sentence order (official ``expand`` behaviour)."""
        records = []
        for j, vid, caption in meta.sentences:
            if vid in videos:
                _check_caption(caption, meta.path, f"sentences[{j}] (video {vid!r})")
                records.append(ClipRecord(video_id=vid, feature_key=vid, text=self._text(meta, vid, caption,
                                                                                         f"sentences[{j}]"),
                                          caption=caption, start=None, end=None, clip=None,
                                          references=meta.captions[vid]))
        return records

    def _first_caption(self, meta: _MsrvttJson, videos: Sequence[str]) -> list[ClipRecord]:
        """One record per video, target = its first caption, references = all of them."""
        records = []
        for vid in videos:
            refs = meta.captions.get(vid, ())
            if not refs:
                raise DataFormatError(meta.path, f"test video {vid!r} has no caption in 'sentences'")
            for r in refs:
                _check_caption(r, meta.path, f"a caption of test video {vid!r}")
            records.append(ClipRecord(video_id=vid, feature_key=vid, text=self._text(meta, vid, refs[0], vid),
                                      caption=refs[0], start=None, end=None, clip=None, references=refs))
        return records

    def _jsfusion(self, meta: _MsrvttJson, csv_path: str) -> list[ClipRecord]:
        """One record per row of the JSFusion csv (1000 video–sentence pairs)."""
        records = []
        for n, row in enumerate(read_csv_rows(csv_path, ("video_id", "sentence")), start=2):
            vid, sentence = row["video_id"], row["sentence"]
            if not vid:
                raise DataFormatError(csv_path, f"line {n}: empty video_id")
            _check_caption(sentence, csv_path, f"line {n} (video {vid!r})")
            records.append(ClipRecord(video_id=vid, feature_key=vid, text=self._text(meta, vid, sentence,
                                                                                     f"{csv_path} line {n}"),
                                      caption=sentence, start=None, end=None, clip=None, references=(sentence,)))
        return records


#: Official file names of UniVL's ``msrvtt.zip`` besides the data json (``UniVLDataConfig.json_file``).
FILES = {"train_9k": "MSRVTT_train.9k.csv", "jsfusion": "MSRVTT_JSFUSION_test.csv",
         "features": "msrvtt_videos_features.pickle"}


def build(cfg: UniVLDataConfig, tokenizer: TextTokenizer | PieceFn) -> tuple[MSRVTT, dict[str, MSRVTT]]:
    """The training set and ``{"test": ...}`` of ``cfg.split`` under ``cfg.root``.

    ``7k`` / ``9k``: retrieval, trained on ``train_7k`` / ``train_9k``, tested on ``test_jsfusion``;
    ``full``: captioning, ``train_full`` / ``test_full`` (module docstring).
    """
    root = Path(cfg.root)
    json_path, feats = root / cfg.json_file, root / FILES["features"]
    kw = dict(text_source=cfg.text_source, n_train_videos=cfg.n_train_videos, n_test_videos=cfg.n_test_videos,
              **cfg.reader_kwargs())
    if cfg.split == "full":
        train = MSRVTT(json_path, feats, tokenizer, split="train_full", **kw)
        test = MSRVTT(json_path, feats, tokenizer, split="test_full", force_mask=False, **kw)
        return train, {"test": test}
    if cfg.split == "7k":
        train = MSRVTT(json_path, feats, tokenizer, split="train_7k", **kw)
    else:
        train = MSRVTT(json_path, feats, tokenizer, split="train_9k", csv_path=root / FILES["train_9k"], **kw)
    test = MSRVTT(json_path, feats, tokenizer, split="test_jsfusion", csv_path=root / FILES["jsfusion"],
                  force_mask=False, **kw)
    return train, {"test": test}
