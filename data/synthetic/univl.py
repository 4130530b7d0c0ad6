"""Tiny UniVL datasets (YouCook2, MSR-VTT, CMU-MOSI) written in the official file formats, for tests and the demo.

What is written (same names, layouts and container types as UniVL's ``youcookii.zip`` / ``msrvtt.zip``):

* YouCook2: ``youcookii_train.csv``, ``youcookii_val.csv``, ``youcookii_data.transcript.pickle`` (ASR-like
  transcripts), ``youcookii_data.no_transcript.pickle`` (every transcript ``'NONE'``, like the public
  file), ``youcookii_videos_features.pickle`` (one extra video that no csv lists, like the real file's test
  videos). Segment arrays are numpy object arrays, as in the official pickle.
* MSR-VTT: ``MSRVTT_data.json`` (no transcripts), ``MSRVTT_transcript_data_v2.json`` (MELTR's layout: a
  ``transcript`` per video, ``'none'`` for some), ``MSRVTT_train.9k.csv``, ``MSRVTT_JSFUSION_test.csv``,
  ``msrvtt_videos_features.pickle``. Sentences are shuffled, as in the real json, so "all captions of a
  video" and "its first caption" are non-trivial.

Split sizes are scaled down with the official proportions and written to ``synthetic_info.json``; pass
them to :class:`data.univl.msrvtt.MSRVTT` (``n_train_videos``/``n_test_videos``): of N videos, the test tail is
``round(0.299·N)`` (2990/10000), the train head the rest (7010/10000), the JSFusion test ``round(0.1·N)``
videos from the tail (1000/10000), and the 9k list every other video (9000/10000).

* CMU-MOSI (:func:`write_mosi`, reference/datasets.md §6), one layout per ``--format``: ``mmsa`` writes
  ``aligned_50.pkl`` and ``unaligned_50.pkl``; ``univl`` writes ``mosi_videos_features.pickle`` and
  ``mosi_data.csv``; ``csd`` writes ``CMU_MOSI_TimestampedWords.csd``, ``CMU_MOSI_Visual_Facet_42.csd`` and
  ``CMU_MOSI_Opinion_Labels.csd`` in the SDK's HDF5 layout. All three hold the same segments (texts, labels,
  splits) of videos whose ids come from :data:`data.univl.mosi.STANDARD_FOLDS`, so the default folds apply; the csd
  files add one video in no fold. ``synthetic_info.json`` lists the sizes per split and, per segment, the id,
  split, text, label and frame count each reader must return.

Captions are real English built from a small word list, so the real BERT vocabulary tokenises them into
ordinary word pieces. Features are random ``float32 [n_seconds, D]`` arrays of varying length. Output is a
pure function of the arguments (same seed → byte-identical files). Pickles are written with plain
``pickle.dump`` (:func:`data.synthetic.base.dump_pickle`); readers always load them through :mod:`data.safe_pickle`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from data.synthetic.base import (dump_pickle, object_array, random_features, sentence, transcript, write_csv,
                                 write_text, youtube_id)
from data.univl.mosi import STANDARD_FOLDS, UNIVL_CSV_FILE, UNIVL_FEATURES_FILE

__all__ = ["write_youcook2", "write_msrvtt", "msrvtt_split_sizes", "write_mosi", "mosi_corpus", "mosi_split_sizes",
           "MOSI_DEFAULT_DIMS"]


def write_youcook2(out_dir: str | os.PathLike[str], *, n_videos: int = 6, seed: int = 0,
                   feature_dim: int = 1024) -> dict[str, Path]:
    """Write a tiny YouCook2 in UniVL's layout.

    Args:
        out_dir: Folder to write into (created if needed).
        n_videos: Annotated videos (>= 2); ``n_videos // 3`` (at least 1) go to validation.
        seed: Everything written is a function of the seed.
        feature_dim: D of the S3D-like features.

    Returns:
        Paths by role: ``train_csv``, ``val_csv``, ``data_transcript``, ``data_no_transcript``, ``features``.
    """
    if n_videos < 2:
        raise ValueError(f"need at least 2 videos (one train, one val), got {n_videos}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video_ids: list[str] = []
    while len(video_ids) < n_videos + 1:  # + 1 unlisted video, like the real file's test videos
        vid = youtube_id(rng)
        if vid not in video_ids:
            video_ids.append(vid)
    data_t: dict[str, dict[str, np.ndarray]] = {}
    data_n: dict[str, dict[str, np.ndarray]] = {}
    features: dict[str, np.ndarray] = {}
    for vid in video_ids:
        n_seconds = int(rng.integers(20, 60))
        features[vid] = random_features(rng, n_seconds, feature_dim)
        starts, ends, texts, transcripts = [], [], [], []
        t = float(rng.integers(0, 4))
        for _ in range(int(rng.integers(2, 5))):
            # Half-second times exercise the int() flooring of the official slice; ends stay inside the video.
            start = t + 0.5 * float(rng.integers(0, 2))
            end = min(start + float(rng.integers(2, 16)) + 0.5 * float(rng.integers(0, 2)), n_seconds - 1.0)
            if end <= start:
                break
            starts.append(start)
            ends.append(end)
            texts.append(sentence(rng, "cooking"))
            transcripts.append(transcript(rng, "cooking"))
            t = end + float(rng.integers(0, 3))
        obj = object_array
        data_t[vid] = {"start": obj(starts), "end": obj(ends), "text": obj(texts), "transcript": obj(transcripts)}
        data_n[vid] = {"start": obj(starts), "end": obj(ends), "text": obj(texts),
                       "transcript": obj(["NONE"] * len(texts))}
    listed = video_ids[:n_videos]
    n_val = max(1, n_videos // 3)
    paths = {"train_csv": out / "youcookii_train.csv", "val_csv": out / "youcookii_val.csv",
             "data_transcript": out / "youcookii_data.transcript.pickle",
             "data_no_transcript": out / "youcookii_data.no_transcript.pickle",
             "features": out / "youcookii_videos_features.pickle"}
    write_csv(paths["train_csv"], ["video_id", "feature_file"], [(v, v) for v in listed[: n_videos - n_val]])
    write_csv(paths["val_csv"], ["video_id", "feature_file"], [(v, v) for v in listed[n_videos - n_val:]])
    # The data pickle holds train + val videos only (the real one has 1,790 of the 1,905 featured videos).
    dump_pickle({v: data_t[v] for v in listed}, paths["data_transcript"])
    dump_pickle({v: data_n[v] for v in listed}, paths["data_no_transcript"])
    dump_pickle(features, paths["features"])
    return paths


def msrvtt_split_sizes(n_videos: int) -> dict[str, int]:
    """Official MSR-VTT split proportions scaled to ``n_videos`` (see the module docstring)."""
    n_test = max(1, round(0.299 * n_videos))
    n_jsfusion = max(1, min(n_test, round(0.1 * n_videos)))
    return {"n_videos": n_videos, "n_train_videos": n_videos - n_test, "n_test_videos": n_test,
            "n_jsfusion": n_jsfusion, "n_9k": n_videos - n_jsfusion}


def write_msrvtt(out_dir: str | os.PathLike[str], *, n_videos: int = 20, seed: int = 0, feature_dim: int = 1024,
                 min_captions: int = 3, max_captions: int = 5) -> dict[str, Any]:
    """Write a tiny MSR-VTT in UniVL's layout, plus MELTR's transcript json.

    Args:
        out_dir: Folder to write into (created if needed).
        n_videos: Videos ``video0 … video{N-1}`` (>= 4 so that every split is non-empty).
        seed: Everything written is a function of the seed.
        feature_dim: D of the features.
        min_captions: Fewest captions per video.
        max_captions: Most captions per video.

    Returns:
        Paths by role (``json``, ``transcript_json``, ``train_9k_csv``, ``jsfusion_csv``, ``features``,
        ``info``) and the scaled split sizes of :func:`msrvtt_split_sizes`.
    """
    if n_videos < 4:
        raise ValueError(f"need at least 4 videos so every split is non-empty, got {n_videos}")
    if not 1 <= min_captions <= max_captions:
        raise ValueError(f"need 1 <= min_captions <= max_captions, got {min_captions}, {max_captions}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = msrvtt_split_sizes(n_videos)
    n_train = sizes["n_train_videos"]
    video_ids = [f"video{i}" for i in range(n_videos)]
    videos: list[dict[str, Any]] = []
    sentences: list[dict[str, Any]] = []
    features: dict[str, np.ndarray] = {}
    for i, vid in enumerate(video_ids):
        split = "train" if i < n_train else "test"
        videos.append({"category": int(rng.integers(20)), "url": f"https://www.youtube.com/watch?v={youtube_id(rng)}",
                       "video_id": vid, "start time": 0.0, "end time": 0.0, "split": split, "id": i})
        for _ in range(int(rng.integers(min_captions, max_captions + 1))):
            sentences.append({"caption": sentence(rng, "video"), "video_id": vid})
        features[vid] = random_features(rng, int(rng.integers(10, 33)), feature_dim)
    order = rng.permutation(len(sentences))
    sentences = [dict(sentences[j], sen_id=k) for k, j in enumerate(order)]
    data = {"info": {"description": "synthetic MSR-VTT in the official layout", "year": 2016},
            "videos": videos, "sentences": sentences}
    with_transcripts = dict(data, videos=[
        dict(v, transcript=transcript(rng, "video") if rng.random() < 0.6 else "none") for v in videos])

    test_tail = video_ids[n_videos - sizes["n_test_videos"]:]
    jsfusion = sorted(rng.choice(len(test_tail), size=sizes["n_jsfusion"], replace=False).tolist())
    jsfusion_ids = [test_tail[j] for j in jsfusion]
    captions_of: dict[str, list[str]] = {}
    for s in sentences:
        captions_of.setdefault(s["video_id"], []).append(s["caption"])
    # key,vid_key,video_id,sentence as in the real file (e.g. ret0,msr9770,video9770,<one of its captions>).
    js_rows = []
    for k, vid in enumerate(jsfusion_ids):
        pick = captions_of[vid][int(rng.integers(len(captions_of[vid])))]
        js_rows.append((f"ret{k}", f"msr{vid[len('video'):]}", vid, pick))

    paths: dict[str, Any] = {
        "json": out / "MSRVTT_data.json", "transcript_json": out / "MSRVTT_transcript_data_v2.json",
        "train_9k_csv": out / "MSRVTT_train.9k.csv", "jsfusion_csv": out / "MSRVTT_JSFUSION_test.csv",
        "features": out / "msrvtt_videos_features.pickle", "info": out / "synthetic_info.json"}
    write_text(paths["json"], json.dumps(data))
    write_text(paths["transcript_json"], json.dumps(with_transcripts))
    write_csv(paths["train_9k_csv"], ["video_id"], [(v,) for v in video_ids if v not in jsfusion_ids])
    write_csv(paths["jsfusion_csv"], ["key", "vid_key", "video_id", "sentence"], js_rows)
    dump_pickle(features, paths["features"])
    write_text(paths["info"], json.dumps(sizes, indent=1) + "\n")
    return {**paths, **sizes}


# ------------------------------------------------------------------------------------------------ CMU-MOSI
_REVIEW_OPENERS = ["", "honestly", "i think", "overall", "um", "i mean", "so", "but"]
_REVIEW_TOPICS = ["the movie", "this film", "the acting", "the story", "the ending", "the music", "the main character",
                  "the plot", "the dialogue", "the special effects"]
_REVIEW_VERBS = ["was", "is", "felt", "seemed"]
_REVIEW_OPINIONS = ["really good", "terrible", "pretty boring", "amazing", "just okay", "way too long", "very funny",
                    "kind of predictable", "beautiful", "awful", "not bad at all"]
_REVIEW_TAILS = ["and i loved it", "but i would not watch it again", "to be honest", "for a sequel",
                 "and the kids liked it"]
# Means of 7-point Likert scores: halves, fifths and exact 0 occur in the real labels.
_MOSI_LABELS = (-3.0, -2.5, -2.0, -1.4, -0.8, -0.5, 0.0, 0.5, 0.6, 1.0, 1.5, 2.0, 2.5, 3.0)
_MOSI_FIRST_LABELS = (0.0, -0.5, 2.5, -3.0, 3.0)  # guaranteed in every corpus: exact 0, halves, both ends
_MOSI_FILLERS = ["uh", "um", "yeah", "okay", "so"]  # speech between opinion segments
MOSI_DEFAULT_DIMS = {"mmsa": 20, "univl": 1024, "csd": 35}  # FACET in MMSA, S3D, FACET 4.2 in the SDK
_FACET_STEP_CS = 25  # visual rows every 0.25 s in the csd files (times are kept in centiseconds)
_CSD_FILES = {"words": "CMU_MOSI_TimestampedWords.csd", "visual": "CMU_MOSI_Visual_Facet_42.csd",
              "labels": "CMU_MOSI_Opinion_Labels.csd"}
_CSD_ROOTS = {"words": "words", "visual": "FACET_4.2", "labels": "Opinion Segment Labels"}


def _review(rng: np.random.Generator) -> str:
    """One spoken-review sentence in lower case without punctuation, like a MOSI transcript."""
    words = [_REVIEW_OPENERS[rng.integers(len(_REVIEW_OPENERS))], _REVIEW_TOPICS[rng.integers(len(_REVIEW_TOPICS))],
             _REVIEW_VERBS[rng.integers(len(_REVIEW_VERBS))], _REVIEW_OPINIONS[rng.integers(len(_REVIEW_OPINIONS))]]
    if rng.random() < 0.5:
        words.append(_REVIEW_TAILS[rng.integers(len(_REVIEW_TAILS))])
    return " ".join(w for w in words if w)


def mosi_split_sizes(n_videos: int) -> dict[str, int]:
    """Videos per split with the standard proportions (52 / 10 / 31 of 93), at least one each."""
    if not 3 <= n_videos <= 93:
        raise ValueError(f"need 3 to 93 videos (one per split at least, the standard folds have 93), got {n_videos}")
    n_valid = max(1, round(n_videos * 10 / 93))
    n_test = max(1, round(n_videos * 31 / 93))
    return {"train": n_videos - n_valid - n_test, "valid": n_valid, "test": n_test}


def mosi_corpus(n_videos: int = 6, seed: int = 0) -> list[dict[str, Any]]:
    """The videos and opinion segments that :func:`write_mosi` writes, the same for every format.

    Args:
        n_videos: Videos in the standard folds (3 to 93); split as :func:`mosi_split_sizes`.
        seed: Everything is a function of the seed.

    Returns:
        One dict per video: ``video_id`` (a real id of that split's standard fold), ``split``, and
        ``segments``, a list of ``{"text", "label"}``; followed by one video with ``split`` None whose id is in
        no fold (only the csd layout writes it).
    """
    rng = np.random.default_rng(seed)
    videos: list[dict[str, Any]] = []
    for split, count in mosi_split_sizes(n_videos).items():
        pool = STANDARD_FOLDS[split]
        for k in sorted(rng.choice(len(pool), size=count, replace=False).tolist()):
            videos.append({"video_id": pool[k], "split": split, "segments": []})
    folded = {vid for ids in STANDARD_FOLDS.values() for vid in ids}
    extra = youtube_id(rng)
    while extra in folded:
        extra = youtube_id(rng)
    videos.append({"video_id": extra, "split": None, "segments": []})
    n_seen = 0
    for video in videos:
        for _ in range(int(rng.integers(2, 5))):
            label = _MOSI_FIRST_LABELS[n_seen] if n_seen < len(_MOSI_FIRST_LABELS) else \
                _MOSI_LABELS[rng.integers(len(_MOSI_LABELS))]
            video["segments"].append({"text": _review(rng), "label": float(label)})
            n_seen += 1
    return videos


def _mosi_mmsa(out: Path, videos: list[dict[str, Any]], rng: np.random.Generator, dim: int
               ) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """``aligned_50.pkl`` (T = 50) and ``unaligned_50.pkl`` (end-padded, with ``*_lengths``), MMSA's layout."""
    frames: dict[str, dict[str, int]] = {}
    files = {"aligned": out / "aligned_50.pkl", "unaligned": out / "unaligned_50.pkl"}
    aligned: dict[str, dict[str, Any]] = {}
    unaligned: dict[str, dict[str, Any]] = {}
    for split in ("train", "valid", "test"):
        segs = [(v["video_id"], k, s) for v in videos if v["split"] == split for k, s in enumerate(v["segments"])]
        n = len(segs)
        ids = [f"{vid}$_${k + 1}" for vid, k, _ in segs]  # "<video_id>$_$<clip_id>", clip ids from 1
        labels = np.array([s["label"] for _, _, s in segs], dtype=np.float32)
        common = {"raw_text": object_array([s["text"] for _, _, s in segs]), "id": object_array(ids),
                  "regression_labels": labels,
                  "classification_labels": np.digitize(labels, [-1e-9, 1e-9]).astype(np.float32),
                  "annotations": object_array(["Negative" if x < 0 else "Neutral" if x == 0 else "Positive"
                                                for x in labels])}
        vision = rng.standard_normal((n, 50, dim)).astype(np.float32)
        audio = rng.standard_normal((n, 50, 5)).astype(np.float32)
        audio[:, ::7, 0] = -np.inf  # COVAREP -inf, which MMSA zeroes
        lengths = rng.integers(4, 41, size=n)
        t_max = 40
        v_un = np.zeros((n, t_max, dim), dtype=np.float32)
        for i, length in enumerate(lengths):
            v_un[i, :length] = rng.standard_normal((length, dim))
        if split == "train":  # one non-finite visual value per file: readers must zero it
            vision[0, 3, 1] = -np.inf
            v_un[0, 0, 2] = np.nan
        aligned[split] = dict(common, vision=vision, audio=audio)
        unaligned[split] = dict(common, vision=v_un, audio=np.repeat(audio, 2, axis=1),
                                vision_lengths=[int(x) for x in lengths], audio_lengths=[100] * n)
        for sid, length in zip(ids, lengths):
            frames[sid] = {files["aligned"].name: 50, files["unaligned"].name: int(length)}
    dump_pickle(aligned, files["aligned"])
    dump_pickle(unaligned, files["unaligned"])
    return files, frames


def _mosi_univl(out: Path, videos: list[dict[str, Any]], rng: np.random.Generator, dim: int
                ) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """A feature pickle ``{id: float32[T, D]}`` and the csv ``id,text,label,split``."""
    files = {"features": out / UNIVL_FEATURES_FILE, "csv": out / UNIVL_CSV_FILE}
    features: dict[str, np.ndarray] = {}
    rows, frames = [], {}
    for video in videos:
        for k, seg in enumerate(video["segments"]):
            sid = f"{video['video_id']}_{k + 1}"  # the raw clip's name, MOSI/Raw/<video_id>/<clip_id>.mp4
            features[sid] = random_features(rng, int(rng.integers(3, 21)), dim)
            if video["split"] is not None:  # the unlisted video's clips have features but no csv row
                rows.append((sid, seg["text"], repr(seg["label"]), video["split"]))
                frames[sid] = {files["features"].name: int(features[sid].shape[0])}
    dump_pickle(features, files["features"])
    write_csv(files["csv"], ["id", "text", "label", "split"], rows)
    return files, frames


def _csd_write(path: Path, root: str, entries: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]
               ) -> None:
    """One computational sequence: ``<root>/data/<id>/{features, intervals}`` and ``<root>/metadata``."""
    import h5py  # lazy: only the csd layout needs HDF5

    with h5py.File(path, "w", track_order=False) as f:
        group = f.create_group(root)
        data = group.create_group("data")
        for vid, (features, intervals) in entries.items():
            entry = data.create_group(vid)
            entry.create_dataset("features", data=features, track_times=False)
            entry.create_dataset("intervals", data=intervals, track_times=False)
        metadata = group.create_group("metadata")
        for key, value in meta.items():  # JSON strings in (1,)-shaped variable-length string datasets
            metadata.create_dataset(key, data=[json.dumps(value)], dtype=h5py.string_dtype(), track_times=False)


def _mosi_csd(out: Path, videos: list[dict[str, Any]], rng: np.random.Generator, dim: int
              ) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """The SDK's words, FACET-like visual and opinion-label sequences on one timeline per video."""
    files = {k: out / name for k, name in _CSD_FILES.items()}
    words: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    visual: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    frames: dict[str, dict[str, int]] = {}
    for video in videos:
        vid = video["video_id"]
        tokens: list[tuple[str, int, int]] = []  # (word, start, end) in centiseconds
        segments: list[tuple[int, int]] = []
        t = int(rng.integers(20, 100))
        for seg in video["segments"]:
            if rng.random() < 0.7:  # speech outside the opinion segment, which no segment may take
                dur = int(rng.integers(15, 40))
                tokens.append((_MOSI_FILLERS[rng.integers(len(_MOSI_FILLERS))], t, t + dur))
                t += dur + int(rng.integers(5, 30))
            start = t
            said = seg["text"].split()
            for j, word in enumerate(said):
                dur = int(rng.integers(15, 50))
                tokens.append((word, t, t + dur))
                t += dur
                if j < len(said) - 1 and rng.random() < 0.3:  # a pause inside the segment
                    tokens.append(("sp", t, t + 10))
                    t += 10
            segments.append((start, t))
            gap = int(rng.integers(30, 100))
            tokens.append(("sp", t, t + gap))
            t += gap
        n_rows = -(-(t + 100) // _FACET_STEP_CS)  # visual rows cover the whole video and one more second
        starts = np.arange(n_rows) * _FACET_STEP_CS
        feats = random_features(rng, n_rows, dim)
        if video is videos[0]:
            feats[2, 0] = np.nan  # FACET can miss a face; readers must zero it
        visual[vid] = (feats, np.stack([starts, starts + _FACET_STEP_CS], axis=1) / 100.0)
        words[vid] = (np.array([w.encode() for w, _, _ in tokens], dtype="S")[:, None],
                      np.array([(a, b) for _, a, b in tokens], dtype=np.float64) / 100.0)
        labels[vid] = (np.array([[s["label"]] for s in video["segments"]], dtype=np.float64),
                       np.array(segments, dtype=np.float64) / 100.0)
        for i, (a, b) in enumerate(segments):
            # Rows [25k, 25k + 25) overlapping (a, b) by a positive amount: integer arithmetic, no tolerance.
            frames[f"{vid}[{i}]"] = {files["visual"].name: int(((starts < b) & (starts + _FACET_STEP_CS > a)).sum())}
    base = {"dataset name": "CMU-MOSI (synthetic)", "dataset version": "1.0", "creator": "meltr data.synthetic",
            "computational sequence version": "1.0", "alignment compatible": True}
    described = {"words": ("Word alignment (P2FA-style), one word per row", ["word"]),
                 "visual": ("FACET-like facial features", [f"facet_{j}" for j in range(dim)]),
                 "labels": ("Opinion segment sentiment in [-3, 3]", ["sentiment"])}
    for key, entries in (("words", words), ("visual", visual), ("labels", labels)):
        description, names = described[key]
        meta = dict(base, **{"root name": _CSD_ROOTS[key], "computational sequence description": description,
                             "dimension names": names})
        _csd_write(files[key], _CSD_ROOTS[key], entries, meta)
    return files, frames


def write_mosi(out_dir: str | os.PathLike[str], *, fmt: str, n_videos: int = 6, seed: int = 0,
               feature_dim: int | None = None) -> dict[str, Any]:
    """Write a tiny CMU-MOSI in one public layout (see the module docstring).

    Args:
        out_dir: Folder to write into (created if needed).
        fmt: ``"mmsa"``, ``"univl"`` or ``"csd"``.
        n_videos: Videos in the standard folds (3 to 93); the corpus is :func:`mosi_corpus`.
        seed: Everything written is a function of the seed (and independent of ``fmt`` for the corpus).
        feature_dim: Visual width D; default :data:`MOSI_DEFAULT_DIMS` of the format (20 / 1024 / 35).

    Returns:
        Paths by role (format-specific, plus ``info``), ``format``, ``feature_dim`` and the number of segments
        per split (``train``, ``valid``, ``test``).
    """
    writers = {"mmsa": _mosi_mmsa, "univl": _mosi_univl, "csd": _mosi_csd}
    if fmt not in writers:
        raise ValueError(f"unknown MOSI format {fmt!r}; choose one of {sorted(writers)}")
    dim = MOSI_DEFAULT_DIMS[fmt] if feature_dim is None else feature_dim
    if dim < 1:
        raise ValueError(f"feature_dim must be >= 1, got {dim}")
    videos = mosi_corpus(n_videos, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The feature generator is seeded apart from the corpus, so every format holds the same segments.
    files, frames = writers[fmt](out, videos, np.random.default_rng([seed, 1]), dim)
    segments, sizes = [], {"train": 0, "valid": 0, "test": 0}
    for video in videos:
        if video["split"] is None:
            continue
        for k, seg in enumerate(video["segments"]):
            sid = {"mmsa": f"{video['video_id']}$_${k + 1}", "univl": f"{video['video_id']}_{k + 1}",
                   "csd": f"{video['video_id']}[{k}]"}[fmt]
            segments.append({"id": sid, "split": video["split"], "text": seg["text"], "label": seg["label"],
                             "frames": frames[sid]})
            sizes[video["split"]] += 1
    info = {"dataset": "mosi", "format": fmt, "feature_dim": dim, "n_videos": n_videos, "sizes": sizes,
            "segments": segments}
    info_path = out / "synthetic_info.json"
    write_text(info_path, json.dumps(info, indent=1) + "\n")
    return {**files, "info": info_path, "format": fmt, "feature_dim": dim, **sizes}
