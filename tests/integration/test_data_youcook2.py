"""data.univl.youcook2 on synthetic files in the official layout: contract, clip slicing, text sources, bad files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data import DataFormatError, MissingDataFileError, UnsafePickleError, collate
from data.safe_pickle import load_pickle
from data.synthetic.univl import write_youcook2
from data.text import TextEncoder
from data.univl import SAMPLE_KEYS, YouCook2

L, F = 24, 12
FLOAT_KEYS = {"video", "masked_video"}
TEXT_KEYS = {"input_ids", "token_type_ids", "attention_mask", "pairs_masked_text", "pairs_token_labels",
             "input_caption_ids", "decoder_mask", "output_caption_ids"}


@pytest.fixture(scope="session")
def yc_files(tmp_path_factory) -> dict[str, Path]:
    return write_youcook2(tmp_path_factory.mktemp("youcook2"), n_videos=6, seed=1)


def _dataset(files: dict[str, Path], tok, split: str = "train_csv", data: str = "data_transcript", **kw) -> YouCook2:
    kw.setdefault("max_words", L)
    kw.setdefault("max_frames", F)
    return YouCook2(files[split], files[data], files["features"], tok, **kw)


def _copy(files: dict[str, Path], dest: Path) -> dict[str, Path]:
    dest.mkdir(exist_ok=True)
    return {k: Path(shutil.copy(p, dest / p.name)) for k, p in files.items()}


def _dump(obj, path: Path) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


def test_sample_contract_keys_shapes_dtypes(yc_files, tokenizer) -> None:
    ds = _dataset(yc_files, tokenizer)
    for i in range(len(ds)):
        item = ds[i]
        assert tuple(item) == SAMPLE_KEYS
        for key, value in item.items():
            assert isinstance(value, torch.Tensor), key
            if key in FLOAT_KEYS:
                assert value.shape == (F, 1024) and value.dtype == torch.float32, key
            elif key in TEXT_KEYS:
                assert value.shape == (L,) and value.dtype == torch.int64, key
            else:
                assert value.shape == (F,) and value.dtype == torch.int64, key
        assert (item["pairs_token_labels"] != -1).any() and (item["video_labels_index"] != -1).any()  # MELTR rule
    batch = collate([ds[i] for i in range(3)])
    assert list(batch) == list(SAMPLE_KEYS)
    assert batch["video"].shape == (3, F, 1024) and batch["input_ids"].shape == (3, L)


def test_one_sample_per_segment_in_csv_order(yc_files, tokenizer) -> None:
    data = load_pickle(yc_files["data_transcript"])
    for split in ("train_csv", "val_csv"):
        ds = _dataset(yc_files, tokenizer, split=split)
        vids = [line.split(",")[0] for line in yc_files[split].read_text().splitlines()[1:]]
        expected = [(v, i, str(data[v]["text"][i])) for v in vids for i in range(len(data[v]["start"]))]
        got = [(ds.meta(k)["video_id"], ds.meta(k)["clip"], ds.meta(k)["caption"]) for k in range(len(ds))]
        assert got == expected


def test_clip_slicing_matches_the_official_rule_on_real_synthetic_clips(yc_files, tokenizer) -> None:
    ds = _dataset(yc_files, tokenizer, max_frames=48)
    feats = load_pickle(yc_files["features"])
    for k in range(len(ds)):
        m = ds.meta(k)
        lo, hi = int(m["start"]), int(m["end"]) + 1  # frames int(start)..int(end), fps 1
        want = feats[m["video_id"]][lo:hi][:48]
        item = ds[k]
        n = int(item["video_mask"].sum())
        assert n == len(want) and item["video_mask"][:n].all()
        assert torch.equal(item["video"][:n], torch.from_numpy(want))
        assert (item["video"][n:] == 0).all()


def test_clip_slicing_hand_computed(tmp_path: Path) -> None:
    # 30 one-second features whose value is the frame index; segment 3.7 s - 9.2 s → frames 3..9 (7 frames).
    feats = np.repeat(np.arange(30, dtype=np.float32)[:, None], 4, axis=1)
    (tmp_path / "c.csv").write_text("video_id,feature_file\nvid,featkey\n")
    _dump({"vid": {"start": np.array([3.7, 25], dtype=object), "end": np.array([9.2, 29.0], dtype=object),
                   "text": np.array(["a man cuts bread", "stir"], dtype=object)}}, tmp_path / "d.pickle")
    _dump({"featkey": feats}, tmp_path / "f.pickle")
    tok = lambda s: [1000 + len(w) for w in s.split()]  # noqa: E731  (a callable tokenizer is enough here)
    ds = YouCook2(tmp_path / "c.csv", tmp_path / "d.pickle", tmp_path / "f.pickle", tok, feature_dim=4,
                  max_words=8, max_frames=10)
    first = ds[0]
    assert first["video"][:, 0].tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 0, 0]
    assert first["video_mask"].tolist() == [1] * 7 + [0] * 3
    assert ds[1]["video"][:, 0].tolist() == [25, 26, 27, 28, 29, 0, 0, 0, 0, 0]  # end second inclusive
    short = YouCook2(tmp_path / "c.csv", tmp_path / "d.pickle", tmp_path / "f.pickle", tok, feature_dim=4,
                     max_words=8, max_frames=5)
    assert short[0]["video"][:, 0].tolist() == [3, 4, 5, 6, 7]  # first max_frames kept
    assert short[0]["video_mask"].tolist() == [1] * 5
    assert first["input_ids"].tolist() == [101, 1001, 1003, 1004, 1005, 102, 0, 0]
    assert first["output_caption_ids"].tolist() == [1001, 1003, 1004, 1005, 102, 0, 0, 0]


def test_text_sources(yc_files, tokenizer) -> None:
    enc = TextEncoder(tokenizer, L)
    data = load_pickle(yc_files["data_transcript"])
    by_source = {s: _dataset(yc_files, tokenizer, text_source=s) for s in ("caption", "transcript", "empty")}
    for k in range(len(by_source["caption"])):
        m = by_source["caption"].meta(k)
        transcript = str(data[m["video_id"]]["transcript"][m["clip"]])
        assert torch.equal(by_source["caption"][k]["input_ids"], enc.encode(m["caption"])["input_ids"])
        assert torch.equal(by_source["transcript"][k]["input_ids"], enc.encode(transcript)["input_ids"])
        assert by_source["empty"][k]["input_ids"][:3].tolist() == [101, 102, 0]
        for ds in by_source.values():  # the decoder target is the caption whatever the encoder text
            assert torch.equal(ds[k]["output_caption_ids"], enc.encode_caption(m["caption"])["output_caption_ids"])
    # The public no-transcript pickle says 'NONE': the official video-only model sees "[CLS] none [SEP]".
    none = _dataset(yc_files, tokenizer, data="data_no_transcript", text_source="transcript")
    assert none[0]["input_ids"][:4].tolist() == [101, 3904, 102, 0]
    assert none[0]["pairs_token_labels"].tolist()[1] == 3904  # the only maskable token is forced


def test_masks_are_reproducible_per_seed_and_epoch(yc_files, tokenizer) -> None:
    a, b = _dataset(yc_files, tokenizer, seed=5), _dataset(yc_files, tokenizer, seed=5)
    order = list(range(len(a)))[::-1]
    first = {i: a[i] for i in range(len(a))}
    for i in order:  # access order does not matter
        assert all(torch.equal(first[i][k], b[i][k]) for k in SAMPLE_KEYS)
    b.set_epoch(1)
    changed = [not torch.equal(first[i]["pairs_token_labels"], b[i]["pairs_token_labels"])
               or not torch.equal(first[i]["video_labels_index"], b[i]["video_labels_index"]) for i in order]
    assert any(changed)
    assert all(torch.equal(first[i]["input_ids"], b[i]["input_ids"]) for i in order)


def test_reads_only_through_safe_pickle(yc_files, tokenizer, monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("plain pickle.load/loads used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert len(_dataset(yc_files, tokenizer)) > 0


# ------------------------------------------------------------------ bad files: errors name file and problem


def test_missing_data_key(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    data = load_pickle(f["data_transcript"])
    vid = next(iter(data))
    del data[vid]["text"]
    _dump(data, f["data_transcript"])
    with pytest.raises(DataFormatError, match=rf"youcookii_data\.transcript\.pickle: entry of video '{vid}' lacks "
                                              r"key\(s\) \['text'\]"):
        _dataset(f, tokenizer)


def test_transcript_needed_only_for_the_transcript_source(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    data = load_pickle(f["data_transcript"])
    for entry in data.values():
        del entry["transcript"]
    _dump(data, f["data_transcript"])
    assert len(_dataset(f, tokenizer, text_source="caption")) > 0
    with pytest.raises(DataFormatError, match=r"lacks key\(s\) \['transcript'\]"):
        _dataset(f, tokenizer, text_source="transcript")


def test_wrong_feature_width(yc_files, tokenizer) -> None:
    with pytest.raises(DataFormatError, match=r"youcookii_videos_features\.pickle: features of video '.+' have width "
                                              r"1024, expected feature_dim=512"):
        _dataset(yc_files, tokenizer, feature_dim=512)


def test_video_without_features(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    vid = f["train_csv"].read_text().splitlines()[2].split(",")[1]
    feats = load_pickle(f["features"])
    del feats[vid]
    _dump(feats, f["features"])
    with pytest.raises(DataFormatError, match=rf"youcookii_videos_features\.pickle: no features for video '{vid}'"):
        _dataset(f, tokenizer)


def test_video_without_annotations(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    data = load_pickle(f["data_transcript"])
    vid = f["train_csv"].read_text().splitlines()[1].split(",")[0]
    del data[vid]
    _dump(data, f["data_transcript"])
    with pytest.raises(DataFormatError,
                       match=rf"transcript\.pickle: no entry for video '{vid}' listed in .*train\.csv"):
        _dataset(f, tokenizer)


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_caption(yc_files, tokenizer, tmp_path, bad) -> None:
    f = _copy(yc_files, tmp_path)
    data = load_pickle(f["data_transcript"])
    vid = f["train_csv"].read_text().splitlines()[1].split(",")[0]
    data[vid]["text"][1] = bad
    _dump(data, f["data_transcript"])
    with pytest.raises(DataFormatError, match=rf"transcript\.pickle: empty caption: video '{vid}' segment 1"):
        _dataset(f, tokenizer)


def test_unequal_segment_arrays(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    data = load_pickle(f["data_transcript"])
    vid = next(iter(data))
    data[vid]["end"] = data[vid]["end"][:-1]
    _dump(data, f["data_transcript"])
    with pytest.raises(DataFormatError, match="unequal length"):
        _dataset(f, tokenizer)


def test_missing_csv_column(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    lines = f["train_csv"].read_text().splitlines()
    f["train_csv"].write_text("\n".join(["video_id,feature"] + lines[1:]) + "\n")
    with pytest.raises(DataFormatError, match=r"youcookii_train\.csv: missing csv column\(s\) \['feature_file'\]"):
        _dataset(f, tokenizer)


def test_missing_files(yc_files, tokenizer, tmp_path) -> None:
    for role in ("train_csv", "data_transcript", "features"):
        f = dict(yc_files, **{role: tmp_path / f"absent_{role}"})
        with pytest.raises(MissingDataFileError, match=rf"absent_{role}: file not found"):
            _dataset(f, tokenizer)


def test_truncated_feature_pickle(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    raw = f["features"].read_bytes()
    f["features"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"youcookii_videos_features\.pickle: corrupt or truncated pickle"):
        _dataset(f, tokenizer)


def test_malicious_data_pickle_is_refused(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    f["data_transcript"].write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"transcript\.pickle: refused to load global 'os\.system'"):
        _dataset(f, tokenizer)


def test_clip_outside_the_features(yc_files, tokenizer, tmp_path) -> None:
    f = _copy(yc_files, tmp_path)
    data = load_pickle(f["data_transcript"])
    vid = f["train_csv"].read_text().splitlines()[1].split(",")[0]
    data[vid]["start"][0], data[vid]["end"][0] = 500, 510
    _dump(data, f["data_transcript"])
    with pytest.raises(DataFormatError, match=rf"features\.pickle: clip 0 of video '{vid}' .* selects no frame"):
        _dataset(f, tokenizer)


def test_bad_arguments(yc_files, tokenizer) -> None:
    with pytest.raises(ValueError, match="text_source"):
        _dataset(yc_files, tokenizer, text_source="asr")
    with pytest.raises(ValueError, match="mask_prob"):
        _dataset(yc_files, tokenizer, mask_prob=0.0)
    ds = _dataset(yc_files, tokenizer, mask_prob=0.0, force_mask=False)  # evaluation without masks
    item = ds[0]
    assert (item["pairs_token_labels"] == -1).all() and torch.equal(item["masked_video"], item["video"])
    with pytest.raises(IndexError):
        ds[len(ds)]
