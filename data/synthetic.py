"""Tiny YouCook2 / MSR-VTT datasets written in the official file formats, for tests and the demo.

Usage::

    python -m data.synthetic youcook2 --out DIR [--videos N] [--seed S] [--feature-dim D]
    python -m data.synthetic msrvtt   --out DIR [--videos N] [--seed S] [--feature-dim D]

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
them to :class:`data.msrvtt.MSRVTT` (``n_train_videos``/``n_test_videos``): of N videos, the test tail is
``round(0.299·N)`` (2990/10000), the train head the rest (7010/10000), the JSFusion test ``round(0.1·N)``
videos from the tail (1000/10000), and the 9k list every other video (9000/10000).

Captions are real English built from a small word list, so the real BERT vocabulary tokenises them into
ordinary word pieces. Features are random ``float32 [n_seconds, D]`` arrays of varying length. Output is a
pure function of the arguments (same seed → byte-identical files). Pickles are written with plain
``pickle.dump``; readers always load them through :mod:`data.safe_pickle`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_youcook2", "write_msrvtt", "sentence", "main"]

_SUBJECTS = ["a man", "a woman", "the chef", "a girl", "a boy", "the cook", "someone", "a person"]
_COOK_VERBS = ["is slicing", "chops", "stirs", "adds", "mixes", "pours", "fries", "boils", "cuts", "peels",
               "is washing", "seasons"]
_FOODS = ["tomatoes", "the onions", "some garlic", "the chicken", "rice", "the sauce", "fresh basil", "a potato",
          "the noodles", "olive oil", "the eggs", "butter", "carrots", "the dough", "some salt"]
_PLACES = ["in a pan", "into the bowl", "on the board", "with a knife", "in the pot", "for two minutes",
           "until it is brown", "on the table"]
_VTT_VERBS = ["is playing", "is talking about", "is driving", "is singing with", "is watching", "is holding",
              "is cooking", "is showing", "is running with", "is laughing at"]
_VTT_OBJECTS = ["a guitar", "a red car", "the news", "a small dog", "a football", "the crowd", "a video game",
                "a cartoon", "the weather", "a black cat", "some friends", "the camera"]
_FILLERS = ["so", "now", "okay", "and then", "next", "right"]


def sentence(rng: np.random.Generator, kind: str = "cooking") -> str:
    """One English caption from the word lists (``kind``: ``cooking`` or ``video``)."""
    subject = _SUBJECTS[rng.integers(len(_SUBJECTS))]
    if kind == "cooking":
        words = [subject, _COOK_VERBS[rng.integers(len(_COOK_VERBS))], _FOODS[rng.integers(len(_FOODS))]]
    else:
        words = [subject, _VTT_VERBS[rng.integers(len(_VTT_VERBS))], _VTT_OBJECTS[rng.integers(len(_VTT_OBJECTS))]]
    for _ in range(int(rng.integers(0, 3))):  # 0-2 trailing phrases → captions of 3 to ~14 words
        words.append(_PLACES[rng.integers(len(_PLACES))])
    text = " ".join(words)
    return text + "." if rng.random() < 0.3 else text


def _transcript(rng: np.random.Generator, kind: str) -> str:
    """An ASR-like run-on text: fillers, lower case, no punctuation, longer than a caption."""
    parts = []
    for _ in range(int(rng.integers(2, 4))):
        parts += [_FILLERS[rng.integers(len(_FILLERS))], sentence(rng, kind).rstrip(".")]
    return " ".join(parts)


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=11))


def _features(rng: np.random.Generator, n_seconds: int, feature_dim: int) -> np.ndarray:
    return rng.standard_normal((n_seconds, feature_dim)).astype(np.float32)


def _object_array(items: Sequence[Any]) -> np.ndarray:
    """1-D numpy object array (the official data pickle stores every segment field this way)."""
    arr = np.empty(len(items), dtype=object)
    arr[:] = list(items)
    return arr


def _dump_pickle(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # the protocol of the measured official pickles


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


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
        vid = _youtube_id(rng)
        if vid not in video_ids:
            video_ids.append(vid)
    data_t: dict[str, dict[str, np.ndarray]] = {}
    data_n: dict[str, dict[str, np.ndarray]] = {}
    features: dict[str, np.ndarray] = {}
    for vid in video_ids:
        n_seconds = int(rng.integers(20, 60))
        features[vid] = _features(rng, n_seconds, feature_dim)
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
            transcripts.append(_transcript(rng, "cooking"))
            t = end + float(rng.integers(0, 3))
        obj = _object_array
        data_t[vid] = {"start": obj(starts), "end": obj(ends), "text": obj(texts), "transcript": obj(transcripts)}
        data_n[vid] = {"start": obj(starts), "end": obj(ends), "text": obj(texts),
                       "transcript": obj(["NONE"] * len(texts))}
    listed = video_ids[:n_videos]
    n_val = max(1, n_videos // 3)
    paths = {"train_csv": out / "youcookii_train.csv", "val_csv": out / "youcookii_val.csv",
             "data_transcript": out / "youcookii_data.transcript.pickle",
             "data_no_transcript": out / "youcookii_data.no_transcript.pickle",
             "features": out / "youcookii_videos_features.pickle"}
    _write_csv(paths["train_csv"], ["video_id", "feature_file"], [(v, v) for v in listed[: n_videos - n_val]])
    _write_csv(paths["val_csv"], ["video_id", "feature_file"], [(v, v) for v in listed[n_videos - n_val:]])
    # The data pickle holds train + val videos only (the real one has 1,790 of the 1,905 featured videos).
    _dump_pickle({v: data_t[v] for v in listed}, paths["data_transcript"])
    _dump_pickle({v: data_n[v] for v in listed}, paths["data_no_transcript"])
    _dump_pickle(features, paths["features"])
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
    videos, sentences, features = [], [], {}
    for i, vid in enumerate(video_ids):
        split = "train" if i < n_train else "test"
        videos.append({"category": int(rng.integers(20)), "url": f"https://www.youtube.com/watch?v={_youtube_id(rng)}",
                       "video_id": vid, "start time": 0.0, "end time": 0.0, "split": split, "id": i})
        for _ in range(int(rng.integers(min_captions, max_captions + 1))):
            sentences.append({"caption": sentence(rng, "video"), "video_id": vid})
        features[vid] = _features(rng, int(rng.integers(10, 33)), feature_dim)
    order = rng.permutation(len(sentences))
    sentences = [dict(sentences[j], sen_id=k) for k, j in enumerate(order)]
    data = {"info": {"description": "synthetic MSR-VTT in the official layout", "year": 2016},
            "videos": videos, "sentences": sentences}
    with_transcripts = dict(data, videos=[
        dict(v, transcript=_transcript(rng, "video") if rng.random() < 0.6 else "none") for v in videos])

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
    paths["json"].write_text(json.dumps(data), encoding="utf-8")
    paths["transcript_json"].write_text(json.dumps(with_transcripts), encoding="utf-8")
    _write_csv(paths["train_9k_csv"], ["video_id"], [(v,) for v in video_ids if v not in jsfusion_ids])
    _write_csv(paths["jsfusion_csv"], ["key", "vid_key", "video_id", "sentence"], js_rows)
    _dump_pickle(features, paths["features"])
    paths["info"].write_text(json.dumps(sizes, indent=1) + "\n", encoding="utf-8")
    return {**paths, **sizes}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["youcook2", "msrvtt"])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--videos", type=int, default=None, help="number of videos (youcook2: 6, msrvtt: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-dim", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        if args.dataset == "youcook2":
            n = 6 if args.videos is None else args.videos
            written: dict[str, Any] = dict(write_youcook2(args.out, n_videos=n, seed=args.seed,
                                                          feature_dim=args.feature_dim))
        else:
            n = 20 if args.videos is None else args.videos
            written = write_msrvtt(args.out, n_videos=n, seed=args.seed, feature_dim=args.feature_dim)
    except ValueError as exc:
        parser.error(str(exc))
    for key, value in written.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
