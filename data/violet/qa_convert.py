"""Convert the official TGIF-QA and MSVD-QA annotations into VIOLET's ``txt_<task>.json``.

Usage::

    python -m data.violet.qa_convert tgif --task action|transition|frameqa --src DIR --out txt_tgif-action.json
    python -m data.violet.qa_convert msvd --src DIR --out txt_msvd-qa.json [--video-key clip|vid]

VIOLET released no converter (pytorch_violet issue #3); its sample files fix the target format
(reference/datasets.md §4.2, §5.2). Inputs:

* TGIF-QA (YunseokJANG/tgif-qa ``dataset/``): ``{Train,Test}_{task}_question.csv``, **tab-separated**, CRLF,
  header row, read with quoting disabled (two rows of ``Test_transition_question.csv`` contain quote characters
  that default csv quoting would merge). Action/Transition columns ``gif_name, question, a1..a5, answer (0-4),
  vid_id, key`` → ``{video: gif_name, question, option_0..4: a1..a5, answer}``. FrameQA columns
  ``gif_name, question, answer (word), type, vid_id, key, description`` → ``{video, question, answer: id}``.
  There is no official val split, so the json holds ``train`` and ``test``.
* MSVD-QA (xudejing/video-question-answering): ``{train,val,test}_qa.json`` (a JSON array of
  ``{id, video_id: int, question, answer}``; JSON lines are accepted too) and ``youtube_mapping.txt``
  (``<clip name> vid<N>`` per line). ``video`` is the clip name, the key of VIOLET's ``img_msvd.pkl``
  (``--video-key vid`` writes ``vid<N>`` instead, for pickles keyed like the official preprocessing's files).

Open-ended answer vocabulary (FrameQA top 1,540, MSVD-QA top 1,000; §4.4, §5.1): the ``top_k`` most frequent
answer strings of the **train** split, counted after stripping surrounding whitespace. Ties in frequency are broken
by the answer string in code-point order, so the vocabulary does not depend on file order (the official
``value_counts`` leaves ties unspecified). ``vocab`` is written in that frequency order (``--vocab-order
alphabetical`` sorts it, as VIOLET's sample ``txt_msvd-qa.json`` is sorted); ``answer`` indexes it.

* Train questions whose answer is outside the vocabulary are **dropped** (official ``create_answerset``).
* Val/test questions outside it are **kept with answer = -1**: they stay in the accuracy denominator and are always
  wrong (the field's convention; the VIOLET author's MSVD-QA file dropped them, issues #6/#8).

Counts (total, kept, dropped, out-of-vocabulary) per split are returned and printed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data.errors import DataFormatError, MissingDataFileError
from data.files import read_text
from meltr.checkpoint import atomic_write

__all__ = ["TGIF_TASKS", "TGIF_VOCAB", "MSVD_VOCAB", "SplitCounts", "ConvertReport", "build_vocab",
           "convert_tgif", "convert_msvd", "read_tgif_tsv", "read_youtube_mapping", "write_json", "main"]

TGIF_TASKS = ("action", "transition", "frameqa")
TGIF_VOCAB = 1540  # paper: "1,540 most frequent answer candidates" (size_vocab of args_tgif-frame.json)
MSVD_VOCAB = 1000  # official create_answerset; size_vocab of args_msvd-qaoe.json
_MC_COLUMNS = ("gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer")
_FRAMEQA_COLUMNS = ("gif_name", "question", "answer")
_MSVD_SPLITS = ("train", "val", "test")
VocabOrder = Literal["frequency", "alphabetical"]


@dataclass
class SplitCounts:
    """What happened to the questions of one split."""

    total: int = 0  # rows/records read
    kept: int = 0  # written to the json (OOV test items included)
    dropped: int = 0  # train items whose answer is outside the vocabulary
    oov: int = 0  # kept items with answer -1


@dataclass
class ConvertReport:
    """Counts of a conversion, per split, and the vocabulary size (0 for multiple choice)."""

    splits: dict[str, SplitCounts] = field(default_factory=dict)
    vocab_size: int = 0

    def lines(self) -> list[str]:
        """Human-readable summary, one line per split."""
        out = [f"{name}: {c.total} read, {c.kept} kept ({c.oov} out of vocabulary, answer -1), {c.dropped} dropped"
               for name, c in self.splits.items()]
        if self.vocab_size:
            out.append(f"vocab: {self.vocab_size} answers")
        return out


def build_vocab(answers: Iterable[str], top_k: int, order: VocabOrder = "frequency") -> list[str]:
    """The ``top_k`` most frequent answers; ties by code-point order; listed by frequency or alphabetically."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    counts = Counter(answers)
    vocab = sorted(counts, key=lambda a: (-counts[a], a))[:top_k]
    return sorted(vocab) if order == "alphabetical" else vocab


def _open_answers(rows: dict[str, list[dict[str, Any]]], answers: dict[str, list[str]], top_k: int,
                  order: VocabOrder) -> tuple[dict[str, Any], ConvertReport]:
    """Attach vocabulary ids to the open-ended items of every split (train first)."""
    vocab = build_vocab(answers["train"], top_k, order)
    index = {a: i for i, a in enumerate(vocab)}
    report = ConvertReport(vocab_size=len(vocab))
    out: dict[str, Any] = {}
    for split, items in rows.items():
        counts = report.splits[split] = SplitCounts(total=len(items))
        kept = []
        for item, answer in zip(items, answers[split], strict=True):
            label = index.get(answer, -1)
            if label < 0 and split == "train":
                counts.dropped += 1
                continue
            counts.oov += int(label < 0)
            kept.append({**item, "answer": label})
        counts.kept = len(kept)
        out[split] = kept
    out["vocab"] = vocab
    return out, report


# ---------------------------------------------------------------------------------------------- TGIF-QA


def read_tgif_tsv(path: str | os.PathLike[str], required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of an official TGIF-QA "csv": tab-separated, header row, no quoting.

    Returns:
        (line number, header → stripped value) per data row.

    Raises:
        MissingDataFileError: The file does not exist.
        DataFormatError: A required column is missing, a row has the wrong number of fields (naming the line), or
            there are no rows.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise MissingDataFileError(source, "file not found")
    with io.StringIO(read_text(source, "utf-8-sig"), newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(source, f"line 1: missing column(s) {missing}; header is {header} "
                                          "(official files are tab-separated)")
        rows = []
        for fields in reader:
            if not any(s.strip() for s in fields):
                continue  # blank line (e.g. a trailing CRLF)
            if len(fields) != len(header):
                raise DataFormatError(source, f"line {reader.line_num}: {len(fields)} tab-separated fields, the header "
                                              f"has {len(header)}")
            rows.append((reader.line_num, {h: v.strip() for h, v in zip(header, fields)}))
    if not rows:
        raise DataFormatError(source, "header but no rows")
    return rows


def _need(row: dict[str, str], keys: Sequence[str], source: str, line: int) -> None:
    empty = [k for k in keys if not row[k]]
    if empty:
        raise DataFormatError(source, f"line {line}: empty {empty}")


def convert_tgif(src: str | os.PathLike[str], task: str, *, top_k: int = TGIF_VOCAB,
                 vocab_order: VocabOrder = "frequency") -> tuple[dict[str, Any], ConvertReport]:
    """Read ``{Train,Test}_<task>_question.csv`` from ``src`` and build ``txt_tgif-<task>.json``'s content.

    Args:
        src: Folder with the official files.
        task: ``"action"``, ``"transition"`` (multiple choice) or ``"frameqa"`` (open-ended).
        top_k: FrameQA vocabulary size.
        vocab_order: Order of the written ``vocab``.

    Returns:
        (``{"train": [...], "test": [...]}`` plus ``"vocab"`` for FrameQA, counts).

    Raises:
        DataFormatError: A malformed row (file and line named), e.g. an MC answer outside 0-4.
    """
    if task not in TGIF_TASKS:
        raise ValueError(f"task must be one of {TGIF_TASKS}, got {task!r}")
    splits = {"train": Path(src) / f"Train_{task}_question.csv", "test": Path(src) / f"Test_{task}_question.csv"}
    if task == "frameqa":
        rows: dict[str, list[dict[str, Any]]] = {}
        answers: dict[str, list[str]] = {}
        for split, path in splits.items():
            rows[split], answers[split] = [], []
            for line, row in read_tgif_tsv(path, _FRAMEQA_COLUMNS):
                _need(row, _FRAMEQA_COLUMNS, os.fspath(path), line)
                rows[split].append({"video": row["gif_name"], "question": row["question"]})
                answers[split].append(row["answer"])
        return _open_answers(rows, answers, top_k, vocab_order)
    out: dict[str, Any] = {}
    report = ConvertReport()
    for split, path in splits.items():
        items = []
        for line, row in read_tgif_tsv(path, _MC_COLUMNS):
            _need(row, _MC_COLUMNS, os.fspath(path), line)
            if not re.fullmatch(r"[0-4]", row["answer"]):
                raise DataFormatError(os.fspath(path), f"line {line}: answer must be an option index 0-4, got "
                                                       f"{row['answer']!r}")
            item: dict[str, Any] = {"video": row["gif_name"], "question": row["question"]}
            item.update({f"option_{k}": row[f"a{k + 1}"] for k in range(5)})
            item["answer"] = int(row["answer"])
            items.append(item)
        out[split] = items
        report.splits[split] = SplitCounts(total=len(items), kept=len(items))
    return out, report


# ---------------------------------------------------------------------------------------------- MSVD-QA


def read_youtube_mapping(path: str | os.PathLike[str]) -> dict[int, str]:
    """``youtube_mapping.txt`` → {N: clip name} from lines ``<clip name> vid<N>``.

    Raises:
        MissingDataFileError / DataFormatError: Missing file; a malformed line or a repeated N (line named).
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise MissingDataFileError(source, "file not found")
    mapping: dict[int, str] = {}
    with io.StringIO(read_text(source)) as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            match = re.fullmatch(r"vid(\d+)", parts[-1]) if len(parts) == 2 else None
            if match is None:
                raise DataFormatError(source, f"line {line_no}: expected '<clip name> vid<N>', got {line.strip()!r}")
            n = int(match.group(1))
            if n in mapping:
                raise DataFormatError(source, f"line {line_no}: vid{n} is mapped twice")
            mapping[n] = parts[0]
    if not mapping:
        raise DataFormatError(source, "no mapping lines")
    return mapping


def _read_msvd_records(path: Path) -> list[tuple[str, Any]]:
    """(where, record) per QA record of a JSON array, or of JSON lines (where = 'line N')."""
    source = os.fspath(path)
    if not path.is_file():
        raise MissingDataFileError(source, "file not found")
    text = read_text(source)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(source, f"not valid json ({exc})") from exc
        return [(f"record {i}", r) for i, r in enumerate(records)]
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((f"line {line_no}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataFormatError(source, f"line {line_no}: not valid json ({exc})") from exc
    return out


def convert_msvd(src: str | os.PathLike[str], *, top_k: int = MSVD_VOCAB, vocab_order: VocabOrder = "frequency",
                 video_key: Literal["clip", "vid"] = "clip") -> tuple[dict[str, Any], ConvertReport]:
    """Read ``{train,val,test}_qa.json`` and ``youtube_mapping.txt`` from ``src``; build ``txt_msvd-qa.json``.

    Returns:
        (``{"train", "val", "test", "vocab"}``, counts).

    Raises:
        DataFormatError: A malformed record (file and record index / line named) or a video id the mapping lacks.
    """
    if video_key not in ("clip", "vid"):
        raise ValueError(f"video_key must be 'clip' or 'vid', got {video_key!r}")
    mapping_path = Path(src) / "youtube_mapping.txt"
    mapping = read_youtube_mapping(mapping_path)
    rows: dict[str, list[dict[str, Any]]] = {}
    answers: dict[str, list[str]] = {}
    for split in _MSVD_SPLITS:
        path = Path(src) / f"{split}_qa.json"
        rows[split], answers[split] = [], []
        for where, rec in _read_msvd_records(path):
            if not isinstance(rec, dict) or any(k not in rec for k in ("video_id", "question", "answer")):
                raise DataFormatError(os.fspath(path), f"{where}: expected an object with video_id, question, answer")
            vid, question, answer = rec["video_id"], rec["question"], rec["answer"]
            if isinstance(vid, bool) or not isinstance(vid, int) or vid not in mapping:
                raise DataFormatError(os.fspath(path), f"{where}: video_id {vid!r} is not an integer listed in "
                                                       f"{mapping_path}")
            if not all(isinstance(t, str) and t.strip() for t in (question, answer)):
                raise DataFormatError(os.fspath(path), f"{where}: question and answer must be non-empty strings")
            rows[split].append({"video": mapping[vid] if video_key == "clip" else f"vid{vid}",
                                "question": question.strip()})
            answers[split].append(answer.strip())
        if not rows[split]:
            raise DataFormatError(os.fspath(path), "no QA records")
    return _open_answers(rows, answers, top_k, vocab_order)


# ---------------------------------------------------------------------------------------------- CLI


def write_json(obj: Any, out: str | os.PathLike[str]) -> None:
    """Write ``obj`` as compact json, atomically (:func:`meltr.checkpoint.atomic_write`)."""
    atomic_write(out, lambda f: f.write(json.dumps(obj).encode("utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dataset", required=True)
    tgif = sub.add_parser("tgif", help="official TGIF-QA tsv files → txt_tgif-<task>.json")
    tgif.add_argument("--task", choices=TGIF_TASKS, required=True)
    msvd = sub.add_parser("msvd", help="official MSVD-QA json + youtube_mapping.txt → txt_msvd-qa.json")
    msvd.add_argument("--video-key", choices=("clip", "vid"), default="clip",
                      help="clip: YouTube clip name (VIOLET's pickles); vid: vid<N>")
    for p, k in ((tgif, TGIF_VOCAB), (msvd, MSVD_VOCAB)):
        p.add_argument("--src", required=True, help="folder with the official files")
        p.add_argument("--out", required=True, help="json to write")
        p.add_argument("--top-k", type=int, default=k, help=f"open-ended vocabulary size (default {k})")
        p.add_argument("--vocab-order", choices=("frequency", "alphabetical"), default="frequency")
    args = parser.parse_args(argv)
    try:
        if args.dataset == "tgif":
            obj, report = convert_tgif(args.src, args.task, top_k=args.top_k, vocab_order=args.vocab_order)
        else:
            obj, report = convert_msvd(args.src, top_k=args.top_k, vocab_order=args.vocab_order,
                                       video_key=args.video_key)
    except DataFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if report.vocab_size and report.vocab_size < args.top_k:
        print(f"note: train has only {report.vocab_size} distinct answers (< --top-k {args.top_k})", file=sys.stderr)
    write_json(obj, args.out)
    print("\n".join([f"wrote {args.out}", *report.lines()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
