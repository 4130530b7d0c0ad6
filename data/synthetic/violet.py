"""Tiny VIOLET datasets (MSR-VTT retrieval, TGIF-QA, MSVD-QA) in the official file formats, for tests and demos.

Ready-to-read files (what :mod:`data.violet` reads; reference/violet.md §4, reference/datasets.md §3.4, §4.2, §5.2):

* :func:`write_violet_msrvtt`: ``img_msrvtt.pkl``, ``msrvtt_vq.pkl``, the fork's ``train_7k.json``,
  ``train_9k.json``, ``test.json`` (``{"sentences": [{"video_id", "caption"}]}``) and the official
  ``txt_msrvtt-retrieval.json`` (``{"train", "val", "test"}`` lists of ``{"video", "caption"}``, same videos).
* :func:`write_tgif`: ``img_tgif.pkl``, ``tgif_vq.pkl`` and ``txt_tgif-action.json`` / ``txt_tgif-transition.json``
  (MC: ``option_0..4``) or ``txt_tgif-frame.json`` (OE, with ``vocab`` and some out-of-vocabulary ``-1`` test
  answers).
* :func:`write_msvd`: ``img_msvd.pkl``, ``msvd_vq.pkl``, ``txt_msvd-qa.json`` (``train``, ``val``, ``test``,
  ``vocab``), keyed by YouTube-style clip names.

Frames are real JPEGs (PIL defaults, as the official extraction tool writes them) of varying sizes and aspect
ratios per video: landscape, portrait, square, and odd side differences (the one-pixel-short padding case).
VQ arrays are int16 ``[n_frames, vq_grid, vq_grid]``; pass ``vq_grid = size_img // 32`` of the config you read
them with (7 at 224 px).

Raw official annotations, for :mod:`data.violet.qa_convert`:

* :func:`write_tgif_raw`: ``Train_<task>_question.csv`` and ``Test_<task>_question.csv``, tab-separated with CRLF
  line ends and a header, one question holding quote characters (the official files do).
* :func:`write_msvd_raw`: ``train_qa.json``, ``val_qa.json``, ``test_qa.json`` (JSON arrays of ``{answer, id,
  question, video_id: int}``) and ``youtube_mapping.txt``.

Answers follow a skewed distribution over a word list, and test draws include words never seen in train, so a
small vocabulary leaves out-of-vocabulary questions. Output is a pure function of the arguments.
"""

from __future__ import annotations

import base64
import io
import os
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from data.synthetic.base import dump_pickle, sentence, write_json, write_text

__all__ = ["write_violet_msrvtt", "write_tgif", "write_msvd", "write_tgif_raw", "write_msvd_raw", "TGIF_JSON"]

#: Annotation file name per TGIF-QA task (VIOLET's sample names).
TGIF_JSON = {"action": "txt_tgif-action.json", "transition": "txt_tgif-transition.json",
             "frameqa": "txt_tgif-frame.json"}
TgifTask = Literal["action", "transition", "frameqa"]

_ACTIONS = ["nod head", "wave hand", "shake head", "jump", "clap hands", "turn around", "smile", "blink eyes",
            "raise arms", "kiss", "dance", "laugh", "walk away", "sit down", "stand up", "look around"]
_PEOPLE = ["the man", "the woman", "the girl", "the boy", "the cat", "the dog", "the person"]
# Skewed answer pool (earlier = likelier); the last words are only drawn for test questions.
_ANSWERS = ["man", "two", "white", "black", "dog", "cat", "woman", "car", "three", "red", "room", "table", "blue",
            "girl", "ball", "street", "one", "green", "water", "bed", "hat", "horse", "stage", "piano"]
_TEST_ONLY = ["zebra", "violin", "kayak"]


def _frame_size(rng: np.random.Generator, image_size: int, i: int) -> tuple[int, int]:
    """(width, height): cycles landscape, portrait, square; side differences odd or even at random."""
    long = int(rng.integers(max(8, image_size // 2), image_size + 1))
    short = int(rng.integers(max(4, long // 3), long))
    kind = i % 3
    return (long, short) if kind == 0 else (short, long) if kind == 1 else (long, long)


def _jpeg_b64(rng: np.random.Generator, width: int, height: int) -> str:
    """A smooth random RGB picture (gradients + noise, so the JPEG is not trivial) as base64 JPEG text."""
    y, x = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-3, 3, (3, 2))
    img = base[:, None, None] + slope[:, 0, None, None] * x + slope[:, 1, None, None] * y
    img = img.transpose(1, 2, 0) + rng.normal(0, 12, (height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _start(out_dir: str | os.PathLike[str], name: str, seed: int, n_videos: int,
           make_id: Callable[[np.random.Generator, int], str], *, n_frames: int, image_size: int, vq_grid: int,
           vq_vocab: int) -> tuple[Path, np.random.Generator, list[str], dict[str, Path]]:
    """Create the folder, draw the video ids, write ``img_<name>.pkl`` and ``<name>_vq.pkl``.

    Returns:
        (folder, the generator to continue drawing from, video ids, paths ``img`` and ``vq``).
    """
    if n_frames < 1 or image_size < 8 or vq_grid < 1 or vq_vocab < 1:
        raise ValueError(f"need n_frames >= 1, image_size >= 8, vq_grid >= 1, vq_vocab >= 1; got {n_frames}, "
                         f"{image_size}, {vq_grid}, {vq_vocab}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video_ids = [make_id(rng, i) for i in range(n_videos)]
    img, vq = {}, {}
    for i, vid in enumerate(video_ids):
        width, height = _frame_size(rng, image_size, i)
        img[vid] = [_jpeg_b64(rng, width, height) for _ in range(n_frames)]
        vq[vid] = rng.integers(0, vq_vocab, (n_frames, vq_grid, vq_grid)).astype(np.int16)
    paths = {"img": out / f"img_{name}.pkl", "vq": out / f"{name}_vq.pkl"}
    dump_pickle(img, paths["img"])
    dump_pickle(vq, paths["vq"])
    return out, rng, video_ids, paths


def _check_answers(n_answers: int) -> None:
    if not 2 <= n_answers <= len(_ANSWERS):
        raise ValueError(f"n_answers must be in [2, {len(_ANSWERS)}], got {n_answers}")


def _token(rng: np.random.Generator, n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(alphabet[k] for k in rng.integers(len(alphabet), size=n))


def _answer(rng: np.random.Generator, test: bool) -> str:
    """A skewed draw (Zipf-like weights); test draws sometimes hit words never used in train."""
    if test and rng.random() < 0.15:
        return _TEST_ONLY[int(rng.integers(len(_TEST_ONLY)))]
    weights = 1.0 / np.arange(1, len(_ANSWERS) + 1)
    return _ANSWERS[int(rng.choice(len(_ANSWERS), p=weights / weights.sum()))]


def _question(rng: np.random.Generator, task: str) -> str:
    who = _PEOPLE[int(rng.integers(len(_PEOPLE)))]
    if task == "action":
        return f"what does {who} do {int(rng.integers(2, 6))} times ?"
    if task == "transition":
        when = "after" if rng.random() < 0.5 else "before"
        return f"what does {who} do {when} {_ACTIONS[int(rng.integers(len(_ACTIONS)))]} ?"
    return f"what is {who} looking at ?" if rng.random() < 0.5 else f"how many things does {who} hold ?"


def _options(rng: np.random.Generator) -> list[str]:
    return [_ACTIONS[k] for k in rng.choice(len(_ACTIONS), size=5, replace=False)]


def _split(ids: Sequence[str], n_val: int) -> dict[str, list[str]]:
    """About 60 % train, ``n_val`` val, the rest test (each non-empty)."""
    n_test = max(1, (len(ids) - n_val) * 2 // 5)
    n_train = len(ids) - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{len(ids)} videos are too few for train, val ({n_val}) and test")
    return {"train": list(ids[:n_train]), "val": list(ids[n_train:n_train + n_val]),
            "test": list(ids[n_train + n_val:])}


def _label(rng: np.random.Generator, vocab: Sequence[str], test: bool) -> int:
    """Vocabulary id of a drawn answer; a test answer outside ``vocab`` is -1, a train answer is redrawn."""
    while True:
        word = _answer(rng, test)
        if word in vocab:
            return vocab.index(word)
        if test:
            return -1


def _qa_lists(rng: np.random.Generator, ids: Sequence[str], task: str, vocab: Sequence[str], per_video: int
              ) -> dict[str, Any]:
    """``train``/``val``/``test`` item lists: MC items for action/transition, OE items (vocab ids) otherwise."""
    data: dict[str, Any] = {}
    for split, vids in _split(ids, 1).items():
        items = []
        for vid in vids:
            for _ in range(per_video):
                item: dict[str, Any] = {"video": vid, "question": _question(rng, task)}
                if task in ("action", "transition"):
                    item.update({f"option_{k}": o for k, o in enumerate(_options(rng))})
                    item["answer"] = int(rng.integers(5))
                else:
                    item["answer"] = _label(rng, vocab, split != "train")
                items.append(item)
        data[split] = items
    return data


def write_violet_msrvtt(out_dir: str | os.PathLike[str], *, n_videos: int = 8, seed: int = 0, n_frames: int = 5,
                        image_size: int = 48, vq_grid: int = 7, vq_vocab: int = 8192, max_captions: int = 3
                        ) -> dict[str, Path]:
    """Write a tiny MSR-VTT for VIOLET retrieval.

    Test = the last ``max(1, n_videos // 4)`` videos with one caption each (the 1k-A shape); ``train_9k`` = all
    other videos with 1..``max_captions`` captions each; ``train_7k`` = the first ~78 % of those (7010/9000).

    Returns:
        Paths by role: ``img``, ``vq``, ``train_7k``, ``train_9k``, ``test``, ``official`` (txt_msrvtt-retrieval.json).
    """
    if n_videos < 3 or max_captions < 1:
        raise ValueError(f"need n_videos >= 3 and max_captions >= 1, got {n_videos}, {max_captions}")
    out, rng, ids, paths = _start(out_dir, "msrvtt", seed, n_videos, lambda rng, i: f"video{i}",
                                  n_frames=n_frames, image_size=image_size, vq_grid=vq_grid, vq_vocab=vq_vocab)
    n_test = max(1, n_videos // 4)
    train_ids, test_ids = ids[:-n_test], ids[-n_test:]
    n_7k = max(1, round(len(train_ids) * 7010 / 9000))
    captions = {v: [sentence(rng, "video") for _ in range(int(rng.integers(1, max_captions + 1)))] for v in train_ids}
    test = [{"video_id": v, "caption": sentence(rng, "video")} for v in test_ids]
    train = [{"video_id": v, "caption": c} for v in train_ids for c in captions[v]]
    rng.shuffle(train)  # the real files are not grouped by video
    files = {"train_9k": {"sentences": train},
             "train_7k": {"sentences": [s for s in train if s["video_id"] in set(train_ids[:n_7k])]},
             "test": {"sentences": test}}
    for role, obj in files.items():
        paths[role] = out / f"{role}.json"
        write_json(obj, paths[role])
    as_official = [{"video": s["video_id"], "caption": s["caption"]} for s in test]
    paths["official"] = out / "txt_msrvtt-retrieval.json"
    write_json({"train": [{"video": s["video_id"], "caption": s["caption"]} for s in train], "val": as_official,
                 "test": as_official}, paths["official"])
    return paths


def write_tgif(out_dir: str | os.PathLike[str], *, task: TgifTask = "action", n_videos: int = 8, seed: int = 0,
               n_frames: int = 5, image_size: int = 48, vq_grid: int = 7, vq_vocab: int = 8192, n_answers: int = 12,
               questions_per_video: int = 2) -> dict[str, Path]:
    """Write a tiny TGIF-QA for one task in VIOLET's layout (``train``, ``val``, ``test``; FrameQA adds ``vocab``).

    Args:
        task: ``"action"`` / ``"transition"`` (MC, 5 options) or ``"frameqa"`` (OE over ``n_answers`` words,
            the json's ``vocab``; test answers outside it are -1).

    Returns:
        Paths by role: ``img``, ``vq``, ``json``.
    """
    if task not in TGIF_JSON:
        raise ValueError(f"task must be one of {tuple(TGIF_JSON)}, got {task!r}")
    _check_answers(n_answers)
    out, rng, ids, paths = _start(out_dir, "tgif", seed, n_videos, lambda rng, i: f"tumblr_{_token(rng, 17)}_400",
                                  n_frames=n_frames, image_size=image_size, vq_grid=vq_grid, vq_vocab=vq_vocab)
    vocab = _ANSWERS[:n_answers]
    data = _qa_lists(rng, ids, task, vocab, questions_per_video)
    if task == "frameqa":
        data["vocab"] = vocab
    paths["json"] = out / TGIF_JSON[task]
    write_json(data, paths["json"])
    return paths


def _clip_name(rng: np.random.Generator) -> str:
    start = int(rng.integers(0, 300))
    return f"{_token(rng, 11, string.ascii_letters + string.digits + '-_')}_{start}_{start + int(rng.integers(5, 30))}"


def write_msvd(out_dir: str | os.PathLike[str], *, n_videos: int = 8, seed: int = 0, n_frames: int = 5,
               image_size: int = 48, vq_grid: int = 7, vq_vocab: int = 8192, n_answers: int = 12,
               questions_per_video: int = 3) -> dict[str, Path]:
    """Write a tiny MSVD-QA in VIOLET's layout: ``txt_msvd-qa.json`` with ``train``, ``val``, ``test``, ``vocab``.

    The vocabulary is listed alphabetically, as in VIOLET's sample file; some val/test answers are -1.

    Returns:
        Paths by role: ``img``, ``vq``, ``json``.
    """
    _check_answers(n_answers)
    out, rng, ids, paths = _start(out_dir, "msvd", seed, n_videos, lambda rng, i: _clip_name(rng),
                                  n_frames=n_frames, image_size=image_size, vq_grid=vq_grid, vq_vocab=vq_vocab)
    vocab = sorted(_ANSWERS[:n_answers])
    data = _qa_lists(rng, ids, "frameqa", vocab, questions_per_video)
    data["vocab"] = vocab
    paths["json"] = out / "txt_msvd-qa.json"
    write_json(data, paths["json"])
    return paths


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Tab-separated, CRLF line ends, no quoting: the layout of the official TGIF-QA "csv" files."""
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    write_text(path, "\r\n".join(lines) + "\r\n")


def write_tgif_raw(out_dir: str | os.PathLike[str], *, task: TgifTask = "frameqa", n_train: int = 60,
                   n_test: int = 30, seed: int = 0) -> dict[str, Path]:
    """Write the official ``Train_<task>_question.csv`` and ``Test_<task>_question.csv``.

    Returns:
        Paths by role: ``train``, ``test``.
    """
    if task not in TGIF_JSON:
        raise ValueError(f"task must be one of {tuple(TGIF_JSON)}, got {task!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    gifs = [f"tumblr_{_token(rng, 17)}_{250 * int(rng.integers(1, 3))}" for _ in range(max(2, (n_train + n_test) // 2))]
    prefix = {"action": "ACTION", "transition": "TRANS", "frameqa": "FRAMEQA"}[task]
    paths = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for q in range(n):
            gif = gifs[int(rng.integers(len(gifs)))]
            question = _question(rng, task)
            if q == 1:  # an unmatched quote opening the field: default csv quoting would swallow the next rows
                question = '"' + question
            key = int(rng.integers(1, 100000))
            if task == "frameqa":
                answer = _answer(rng, split == "test")
                rows.append([gif, question, answer, int(rng.integers(4)), f"{prefix}{q + 1}", key,
                             sentence(rng, "video")])
            else:
                rows.append([gif, question, *_options(rng), int(rng.integers(5)), f"{prefix}{q + 1}", key])
        header = (["gif_name", "question", "answer", "type", "vid_id", "key", "description"] if task == "frameqa"
                  else ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"])
        paths[split] = out / f"{split.capitalize()}_{task}_question.csv"
        _write_tsv(paths[split], header, rows)
    return paths


def write_msvd_raw(out_dir: str | os.PathLike[str], *, n_videos: int = 12, n_train: int = 60, n_val: int = 15,
                   n_test: int = 30, seed: int = 0) -> dict[str, Path]:
    """Write the official MSVD-QA files: ``{train,val,test}_qa.json`` and ``youtube_mapping.txt``.

    Videos ``vid1 … vidN`` are split 60/15/25 % in id order, as the official 1,200/250/520 split is.

    Returns:
        Paths by role: ``train``, ``val``, ``test``, ``mapping``.
    """
    if n_videos < 3:
        raise ValueError(f"need n_videos >= 3, got {n_videos}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = [_clip_name(rng) for _ in range(n_videos)]
    paths = {"mapping": out / "youtube_mapping.txt"}
    write_text(paths["mapping"], "".join(f"{c} vid{i + 1}\n" for i, c in enumerate(clips)))
    n_tr = max(1, n_videos * 60 // 100)
    n_va = max(1, n_videos * 15 // 100)
    ranges = {"train": (1, n_tr), "val": (n_tr + 1, n_tr + n_va), "test": (n_tr + n_va + 1, n_videos)}
    qid = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        lo, hi = ranges[split]
        records = []
        for _ in range(n):
            records.append({"answer": _answer(rng, split != "train"), "id": qid,
                            "question": _question(rng, "frameqa"), "video_id": int(rng.integers(lo, hi + 1))})
            qid += 1
        paths[split] = out / f"{split}_qa.json"
        write_json(records, paths[split])
    return paths
