"""data.univl.msrvtt on synthetic files in the official layout: the five splits, text sources, contract, bad files."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from data import DataFormatError, MissingDataFileError, collate
from data.safe_pickle import load_pickle
from data.synthetic.univl import write_msrvtt
from data.text import TextEncoder
from data.univl import MSRVTT, SAMPLE_KEYS

L, F = 20, 16


@pytest.fixture(scope="session")
def vtt(tmp_path_factory) -> dict:
    return write_msrvtt(tmp_path_factory.mktemp("msrvtt"), n_videos=20, seed=2)


def _ds(files: dict, tok, split: str, json_key: str = "json", **kw) -> MSRVTT:
    csv_path = {"train_9k": files["train_9k_csv"], "test_jsfusion": files["jsfusion_csv"]}.get(split)
    kw.setdefault("n_train_videos", files["n_train_videos"])
    kw.setdefault("n_test_videos", files["n_test_videos"])
    return MSRVTT(files[json_key], files["features"], tok, split=split, csv_path=csv_path, max_words=L,
                  max_frames=F, **kw)


def _json(files: dict, key: str = "json") -> dict:
    return json.loads(Path(files[key]).read_text())


def _csv_ids(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [row["video_id"] for row in csv.DictReader(f)]


def _copy(files: dict, dest: Path) -> dict:
    dest.mkdir(exist_ok=True)
    return {k: (Path(shutil.copy(v, dest / Path(v).name)) if isinstance(v, Path) else v) for k, v in files.items()}


def test_synthetic_data_is_big_enough_for_the_split_rules(vtt) -> None:
    data = _json(vtt)
    assert len(data["videos"]) >= 10
    per_video = {}
    for s in data["sentences"]:
        per_video[s["video_id"]] = per_video.get(s["video_id"], 0) + 1
    assert min(per_video.values()) >= 3
    assert vtt["n_train_videos"] + vtt["n_test_videos"] == len(data["videos"])


def test_7k_and_full_train_take_every_caption_of_the_head_videos(vtt, tokenizer) -> None:
    data = _json(vtt)
    head = {v["video_id"] for v in data["videos"][: vtt["n_train_videos"]]}
    expected = [(s["video_id"], s["caption"]) for s in data["sentences"] if s["video_id"] in head]
    for split in ("train_7k", "train_full"):
        ds = _ds(vtt, tokenizer, split)
        assert [(ds.meta(i)["video_id"], ds.meta(i)["caption"]) for i in range(len(ds))] == expected
    assert len({v for v, _ in expected}) == vtt["n_train_videos"]


def test_9k_takes_every_caption_of_the_csv_videos(vtt, tokenizer) -> None:
    data = _json(vtt)
    listed = set(_csv_ids(vtt["train_9k_csv"]))
    assert len(listed) == vtt["n_9k"]
    expected = [(s["video_id"], s["caption"]) for s in data["sentences"] if s["video_id"] in listed]
    ds = _ds(vtt, tokenizer, "train_9k")
    assert [(ds.meta(i)["video_id"], ds.meta(i)["caption"]) for i in range(len(ds))] == expected


def test_jsfusion_is_one_sample_per_csv_row(vtt, tokenizer) -> None:
    with open(vtt["jsfusion_csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == vtt["n_jsfusion"]
    ds = _ds(vtt, tokenizer, "test_jsfusion", force_mask=False)
    assert [(ds.meta(i)["video_id"], ds.meta(i)["caption"]) for i in range(len(ds))] == \
        [(r["video_id"], r["sentence"]) for r in rows]
    enc = TextEncoder(tokenizer, L)
    assert torch.equal(ds[0]["input_ids"], enc.encode(rows[0]["sentence"])["input_ids"])
    # The JSFusion test videos are outside the 9k training list and inside the full-caption test tail.
    tail = {v["video_id"] for v in _json(vtt)["videos"][-vtt["n_test_videos"]:]}
    js = {r["video_id"] for r in rows}
    assert js <= tail and not js & set(_csv_ids(vtt["train_9k_csv"]))


def test_full_test_is_one_sample_per_tail_video_with_all_references(vtt, tokenizer) -> None:
    data = _json(vtt)
    tail = [v["video_id"] for v in data["videos"][-vtt["n_test_videos"]:]]
    ds = _ds(vtt, tokenizer, "test_full", text_source="transcript", force_mask=False)
    assert [ds.meta(i)["video_id"] for i in range(len(ds))] == tail
    for i, vid in enumerate(tail):
        refs = [s["caption"] for s in data["sentences"] if s["video_id"] == vid]
        assert ds.meta(i)["references"] == refs and ds.meta(i)["caption"] == refs[0]
    head = {ds7.meta(i)["video_id"] for ds7 in [_ds(vtt, tokenizer, "train_7k")] for i in range(len(ds7))}
    assert not head & set(tail)


def test_official_split_sizes_are_the_defaults(vtt, tokenizer) -> None:
    # 20 synthetic videos cannot hold 7010 + 2990: the error names the json and the parameters to scale down.
    with pytest.raises(DataFormatError, match=r"MSRVTT_data\.json: has 20 videos but n_train_videos \+ n_test_videos "
                                              r"= 7010 \+ 2990"):
        MSRVTT(vtt["json"], vtt["features"], tokenizer, split="train_7k")


def test_sample_contract_and_whole_video_clip(vtt, tokenizer) -> None:
    ds = _ds(vtt, tokenizer, "train_9k")
    feats = load_pickle(vtt["features"])
    lengths = set()
    for i in range(len(ds)):
        item = ds[i]
        assert tuple(item) == SAMPLE_KEYS
        assert item["video"].shape == (F, 1024) and item["video"].dtype == torch.float32
        assert item["masked_video"].shape == (F, 1024) and item["video_labels_index"].shape == (F,)
        assert all(item[k].shape == (L,) and item[k].dtype == torch.int64 for k in SAMPLE_KEYS
                   if k not in ("video", "masked_video", "video_mask", "video_labels_index"))
        full = feats[ds.meta(i)["video_id"]]
        n = min(len(full), F)  # the first max_frames seconds of the whole video
        assert int(item["video_mask"].sum()) == n
        assert torch.equal(item["video"][:n], torch.from_numpy(full[:n])) and (item["video"][n:] == 0).all()
        assert (item["pairs_token_labels"] != -1).any() and (item["video_labels_index"] != -1).any()
        lengths.add(len(full) > F)
    assert lengths == {True, False}  # both truncated and zero-padded videos were checked
    assert collate([ds[0], ds[1]])["masked_video"].shape == (2, F, 1024)


def test_transcript_text_source(vtt, tokenizer) -> None:
    enc = TextEncoder(tokenizer, L)
    transcripts = {v["video_id"]: v["transcript"] for v in _json(vtt, "transcript_json")["videos"]}
    ds = _ds(vtt, tokenizer, "train_full", json_key="transcript_json", text_source="transcript")
    seen = set()
    for i in range(len(ds)):
        m = ds.meta(i)
        t = transcripts[m["video_id"]]
        ids = ds[i]["input_ids"]
        if t == "none":  # MELTR: no transcript → empty encoder text
            assert ids[:3].tolist() == [101, 102, 0]
        else:
            assert torch.equal(ids, enc.encode(t)["input_ids"])
        assert torch.equal(ds[i]["input_caption_ids"], enc.encode_caption(m["caption"])["input_caption_ids"])
        seen.add(t == "none")
    assert seen == {True, False}
    # The plain UniVL json has no transcript field at all: empty text everywhere.
    plain = _ds(vtt, tokenizer, "train_full", text_source="transcript")
    assert all(plain[i]["input_ids"][:3].tolist() == [101, 102, 0] for i in range(0, len(plain), 5))


# ------------------------------------------------------------------ bad files: errors name file and problem


def _rewrite_json(files: dict, edit) -> None:
    data = _json(files)
    edit(data)
    Path(files["json"]).write_text(json.dumps(data))


def test_json_without_sentences(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    _rewrite_json(f, lambda d: d.pop("sentences"))
    with pytest.raises(DataFormatError, match=r"MSRVTT_data\.json: missing list 'sentences'"):
        _ds(f, tokenizer, "train_7k")


def test_sentence_without_caption_key(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    _rewrite_json(f, lambda d: d["sentences"][3].pop("caption"))
    with pytest.raises(DataFormatError, match=r"MSRVTT_data\.json: sentences\[3\] lacks key 'caption'"):
        _ds(f, tokenizer, "train_7k")


def test_empty_caption(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    data = _json(f)
    j = next(j for j, s in enumerate(data["sentences"]) if s["video_id"] == data["videos"][0]["video_id"])
    _rewrite_json(f, lambda d: d["sentences"][j].update(caption="  "))
    with pytest.raises(DataFormatError, match=rf"MSRVTT_data\.json: empty caption: sentences\[{j}\]"):
        _ds(f, tokenizer, "train_7k")


def test_duplicate_video_id(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    _rewrite_json(f, lambda d: d["videos"].append(dict(d["videos"][0])))
    with pytest.raises(DataFormatError, match=r"videos\[20\]: video id 'video0' listed twice"):
        _ds(f, tokenizer, "train_7k")


def test_not_json(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    Path(f["json"]).write_text('{"videos": [')
    with pytest.raises(DataFormatError, match=r"MSRVTT_data\.json: not valid json"):
        _ds(f, tokenizer, "train_7k")


def test_video_without_features(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    feats = load_pickle(f["features"])
    del feats["video1"]
    Path(f["features"]).write_bytes(pickle.dumps(feats))
    with pytest.raises(DataFormatError, match=r"msrvtt_videos_features\.pickle: no features for video 'video1'"):
        _ds(f, tokenizer, "train_7k")


def test_wrong_feature_width(vtt, tokenizer) -> None:
    with pytest.raises(DataFormatError, match=r"msrvtt_videos_features\.pickle: features of video 'video\d+' have "
                                              r"width 1024, expected feature_dim=768"):
        _ds(vtt, tokenizer, "test_full", feature_dim=768)


def test_jsfusion_csv_without_sentence_column(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    Path(f["jsfusion_csv"]).write_text("key,vid_key,video_id\nret0,msr19,video19\n")
    with pytest.raises(DataFormatError, match=r"MSRVTT_JSFUSION_test\.csv: missing csv column\(s\) \['sentence'\]"):
        _ds(f, tokenizer, "test_jsfusion")


def test_9k_csv_listing_unknown_videos(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    Path(f["train_9k_csv"]).write_text("video_id\nvideo0\nvideo99999\n")
    with pytest.raises(DataFormatError, match=r"MSRVTT_train\.9k\.csv: 1 video\(s\) of the 9k list have no caption"):
        _ds(f, tokenizer, "train_9k")


def test_truncated_features_and_missing_files(vtt, tokenizer, tmp_path) -> None:
    f = _copy(vtt, tmp_path)
    raw = Path(f["features"]).read_bytes()
    Path(f["features"]).write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match=r"msrvtt_videos_features\.pickle: corrupt or truncated pickle"):
        _ds(f, tokenizer, "train_7k")
    with pytest.raises(MissingDataFileError, match=r"nowhere\.json: file not found"):
        _ds(dict(vtt, json=tmp_path / "nowhere.json"), tokenizer, "train_7k")
    with pytest.raises(MissingDataFileError, match=r"no\.csv: file not found"):
        _ds(dict(vtt, train_9k_csv=tmp_path / "no.csv"), tokenizer, "train_9k")


def test_bad_arguments(vtt, tokenizer) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        _ds(vtt, tokenizer, "train_8k")
    with pytest.raises(ValueError, match=r"needs csv_path \(the MSRVTT_train\.9k\.csv\)"):
        MSRVTT(vtt["json"], vtt["features"], tokenizer, split="train_9k")
