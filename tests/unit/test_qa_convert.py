"""data/violet/qa_convert.py on synthetic official TGIF-QA / MSVD-QA files: vocabulary, OOV handling, counts, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from data.errors import DataFormatError
from data.synthetic.violet import write_msvd_raw, write_tgif_raw
from data.violet.qa_convert import build_vocab, convert_msvd, convert_tgif, main


def _tsv_rows(path: Path) -> list[list[str]]:
    """Independent parse: split CRLF lines on tabs, drop the header."""
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    return [line.split("\t") for line in lines[1:] if line]


def _top(answers: list[str], k: int) -> list[str]:
    """Top-k by count, ties alphabetically: the documented rule, computed by hand."""
    counts = Counter(answers)
    ranked = []
    for c in sorted(set(counts.values()), reverse=True):
        ranked += sorted(a for a in counts if counts[a] == c)
    return ranked[:k]


def test_build_vocab_tie_break_and_order() -> None:
    answers = ["b", "a", "c", "b", "c", "d", "a", "e"]  # a, b, c twice; d, e once
    assert build_vocab(answers, 4) == ["a", "b", "c", "d"]
    assert build_vocab(answers, 2) == ["a", "b"]
    assert build_vocab(["z", "z", "y", "x", "x", "x"], 3, "alphabetical") == ["x", "y", "z"]


def test_tgif_frameqa_vocab_oov_and_counts(tmp_path: Path) -> None:
    paths = write_tgif_raw(tmp_path, task="frameqa", n_train=80, n_test=40, seed=3)
    train, test = _tsv_rows(paths["train"]), _tsv_rows(paths["test"])
    assert len(train) == 80 and len(test) == 40
    vocab = _top([r[2] for r in train], 6)
    out, report = convert_tgif(tmp_path, "frameqa", top_k=6)
    assert out["vocab"] == vocab and report.vocab_size == 6
    kept_train = [r for r in train if r[2] in vocab]
    assert [it["answer"] for it in out["train"]] == [vocab.index(r[2]) for r in kept_train]
    assert report.splits["train"].dropped == 80 - len(kept_train) > 0
    # every test row kept, out-of-vocabulary ones as -1, in file order
    assert [it["answer"] for it in out["test"]] == [vocab.index(r[2]) if r[2] in vocab else -1 for r in test]
    n_oov = sum(r[2] not in vocab for r in test)
    assert report.splits["test"].oov == n_oov > 0 and report.splits["test"].kept == 40
    assert [it["video"] for it in out["test"]] == [r[0] for r in test]
    assert set(out) == {"train", "test", "vocab"} and set(out["test"][0]) == {"video", "question", "answer"}


@pytest.mark.parametrize("task", ["action", "transition"])
def test_tgif_mc_columns_and_unquoted_text(tmp_path: Path, task: str) -> None:
    paths = write_tgif_raw(tmp_path, task=task, n_train=10, n_test=6)
    out, report = convert_tgif(tmp_path, task)
    test = _tsv_rows(paths["test"])
    assert report.splits["test"].kept == len(out["test"]) == len(test) == 6
    for item, row in zip(out["test"], test):
        assert item == {"video": row[0], "question": row[1], **{f"option_{k}": row[2 + k] for k in range(5)},
                        "answer": int(row[7])}
    assert out["test"][1]["question"].startswith('"')  # an unmatched quote stays text (quoting disabled)
    assert "vocab" not in out


def test_tgif_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    paths = write_tgif_raw(tmp_path, task="action", n_train=5, n_test=3)
    lines = paths["test"].read_bytes().decode().split("\r\n")
    fields = lines[2].split("\t")
    fields[7] = "7"  # answer outside 0-4
    lines[2] = "\t".join(fields)
    paths["test"].write_bytes("\r\n".join(lines).encode())
    with pytest.raises(DataFormatError, match=r"Test_action_question\.csv: line 3: answer must be an option index"):
        convert_tgif(tmp_path, "action")
    lines[2] = "\t".join(fields[:5])
    paths["test"].write_bytes("\r\n".join(lines).encode())
    with pytest.raises(DataFormatError, match=r"Test_action_question\.csv: line 3: 5 tab-separated fields, the header "
                                              r"has 10"):
        convert_tgif(tmp_path, "action")
    paths["train"].write_text("gif_name,question,answer\n")  # comma-separated: not the official layout
    with pytest.raises(DataFormatError, match=r"Train_action_question\.csv: line 1: missing column"):
        convert_tgif(tmp_path, "action")


def test_msvd_mapping_vocab_and_oov(tmp_path: Path) -> None:
    paths = write_msvd_raw(tmp_path, seed=1)
    raw = {s: json.loads(paths[s].read_text()) for s in ("train", "val", "test")}
    clips = dict(line.split()[::-1] for line in paths["mapping"].read_text().splitlines())  # vidN → clip
    vocab = _top([r["answer"] for r in raw["train"]], 7)
    out, report = convert_msvd(tmp_path, top_k=7)
    assert out["vocab"] == vocab
    for split in ("val", "test"):
        assert len(out[split]) == len(raw[split])
        assert [it["video"] for it in out[split]] == [clips[f"vid{r['video_id']}"] for r in raw[split]]
        assert [it["answer"] for it in out[split]] == [vocab.index(r["answer"]) if r["answer"] in vocab else -1
                                                       for r in raw[split]]
    assert report.splits["test"].oov == sum(r["answer"] not in vocab for r in raw["test"]) > 0
    assert report.splits["train"].kept == sum(r["answer"] in vocab for r in raw["train"])
    by_vid, _ = convert_msvd(tmp_path, top_k=7, video_key="vid", vocab_order="alphabetical")
    assert by_vid["test"][0]["video"] == f"vid{raw['test'][0]['video_id']}" and by_vid["vocab"] == sorted(vocab)


def test_msvd_errors_name_file_and_line(tmp_path: Path) -> None:
    paths = write_msvd_raw(tmp_path)
    mapping = paths["mapping"].read_text().splitlines()
    paths["mapping"].write_text("\n".join(mapping[:2] + ["broken-line-without-vid"] + mapping[2:]) + "\n")
    with pytest.raises(DataFormatError, match=r"youtube_mapping\.txt: line 3: expected '<clip name> vid<N>'"):
        convert_msvd(tmp_path)
    paths["mapping"].write_text("\n".join(mapping[:-1]) + "\n")  # the last video is unmapped
    records = json.loads(paths["test"].read_text())
    records[0]["video_id"] = len(mapping)
    paths["test"].write_text("\n".join(json.dumps(r) for r in records))  # JSON lines are accepted too
    with pytest.raises(DataFormatError, match=rf"test_qa\.json: line 1: video_id {len(mapping)} is not an integer"):
        convert_msvd(tmp_path)


def test_cli_writes_json_and_reports_counts(tmp_path: Path, capsys) -> None:
    write_tgif_raw(tmp_path / "raw", task="frameqa", n_train=30, n_test=10)
    out = tmp_path / "txt_tgif-frame.json"
    assert main(["tgif", "--task", "frameqa", "--src", str(tmp_path / "raw"), "--out", str(out), "--top-k", "5"]) == 0
    data = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert len(data["vocab"]) == 5
    assert f"test: 10 read, 10 kept ({sum(it['answer'] == -1 for it in data['test'])} out of vocabulary" in printed
    assert main(["msvd", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 1
    assert "youtube_mapping.txt: file not found" in capsys.readouterr().err
