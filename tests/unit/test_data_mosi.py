"""data.univl.mosi on small hand-made files: csd segmentation by hand, folds, each reader's errors, the dataset contract."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from data import DataFormatError, MissingDataFileError, UnsafePickleError, collate
from data.univl import SAMPLE_KEYS
from data.univl.mosi import (MOSI_SAMPLE_KEYS, STANDARD_FOLDS, MosiDataset, MosiRecord, load_mosi, read_csd, read_mmsa,
                             read_univl)

VID = "03bSnISJMiM"  # a train video of the standard folds
WORDS, VISUAL, LABELS = "CMU_MOSI_TimestampedWords.csd", "CMU_MOSI_Visual_Facet_42.csd", "CMU_MOSI_Opinion_Labels.csd"


def _tok(text: str) -> list[int]:
    """A callable tokenizer: one id per word (enough for the contract; the real vocabulary is tested elsewhere)."""
    return [1000 + len(w) for w in text.split()]


# --------------------------------------------------------------------------------------------- csd helpers
def _csd(path: Path, entries: dict[str, tuple[Any, Any]], root: str = "seq") -> Path:
    """Write entries in the SDK layout: <root>/data/<id>/{features, intervals} and <root>/metadata."""
    with h5py.File(path, "w") as f:
        data = f.create_group(root).create_group("data")
        for vid, (features, intervals) in entries.items():
            group = data.create_group(vid)
            group.create_dataset("features", data=features)
            group.create_dataset("intervals", data=np.asarray(intervals, dtype=np.float64))
        f[root].create_group("metadata").create_dataset("root name", data=[f'"{root}"'], dtype=h5py.string_dtype())
    return path


def _words(rows: list[tuple[str, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([w.encode() for w, _, _ in rows], dtype="S")[:, None],
            np.array([(a, b) for _, a, b in rows], dtype=np.float64))


def _hand_folder(tmp_path: Path, vid: str = VID) -> Path:
    """One video. Visual rows every 0.5 s with value = row index, written out of time order.

    Label rows: [0.7, 2.1] → 1.5; [2.6, 2.6] (zero length, dropped); [3.0, 4.0] → -0.5.
    """
    words = _words([("hello", 0.2, 0.7),   # ends where segment 0 starts: outside (starts before it)
                    ("i", 0.7, 1.0),       # inside segment 0 (touches its start)
                    ("sp", 1.0, 1.2),      # pause token inside: dropped
                    ("liked", 1.2, 1.6), ("it", 1.6, 2.1),  # "it" ends exactly at the segment end: inside
                    ("but", 2.0, 2.5),     # straddles the end of segment 0: outside
                    ("the", 3.0, 3.4), ("ending", 3.4, 3.9), ("sp", 3.9, 4.0),  # segment 1
                    ("hmm", 3.9, 4.3)])    # straddles the end of segment 1: outside
    order = [3, 0, 9, 5, 1, 7, 2, 8, 4, 6]  # rows [0.5k, 0.5k + 0.5], k = 0..9, shuffled in the file
    starts = np.array(order, dtype=np.float64) * 0.5
    feats = np.repeat(np.array(order, dtype=np.float32)[:, None], 3, axis=1)
    feats[order.index(7), 1] = -np.inf  # row 7 (3.5-4.0 s) has a non-finite value
    _csd(tmp_path / WORDS, {vid: words}, "words")
    _csd(tmp_path / VISUAL, {vid: (feats, np.stack([starts, starts + 0.5], 1))}, "FACET_4.2")
    _csd(tmp_path / LABELS, {vid: (np.array([[1.5], [0.3], [-0.5]]), [[0.7, 2.1], [2.6, 2.6], [3.0, 4.0]])},
         "Opinion Segment Labels")
    return tmp_path


def test_standard_folds_have_the_sdk_sizes_and_are_disjoint() -> None:
    sizes = {k: len(v) for k, v in STANDARD_FOLDS.items()}
    assert sizes == {"train": 52, "valid": 10, "test": 31}  # reference/datasets.md §6.1
    everything = [vid for ids in STANDARD_FOLDS.values() for vid in ids]
    assert len(set(everything)) == 93
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{11}", vid) for vid in everything)  # YouTube ids
    assert STANDARD_FOLDS["valid"][0] == "WKA5OygbEKI" and STANDARD_FOLDS["test"][-1] == "c7UH_rxdZv4"


def test_csd_segmentation_matches_a_hand_computed_example(tmp_path: Path) -> None:
    records = read_csd(_hand_folder(tmp_path))
    assert [r.id for r in records] == [f"{VID}[0]", f"{VID}[2]"]  # the zero-length row 1 is dropped
    first, second = records
    assert (first.split, first.text, first.label) == ("train", "i liked it", 1.5)
    # Rows overlapping [0.7, 2.1] by more than 0: 1 (0.5-1.0) … 4 (2.0-2.5), in time order.
    assert first.video[:, 0].tolist() == [1, 2, 3, 4] and first.video.dtype == np.float32
    assert (second.text, second.label) == ("the ending", -0.5)
    # [3.0, 4.0]: rows 6 and 7; row 5 (2.5-3.0) and row 8 (4.0-4.5) only touch it.
    assert second.video[:, 0].tolist() == [6, 7]
    assert second.video[1].tolist() == [7, 0, 7]  # -inf replaced by 0
    # A zero-length row is not an empty segment: even strict mode drops it without complaint.
    assert [r.id for r in read_csd(tmp_path, strict=True)] == [f"{VID}[0]", f"{VID}[2]"]


def test_csd_folds_default_override_and_unlisted(tmp_path: Path) -> None:
    folder = _hand_folder(tmp_path)
    assert {r.split for r in read_csd(folder, folds={"test": [VID]})} == {"test"}
    assert read_csd(folder, folds={"train": ["someOtherId"]}) == []  # a video in no fold is skipped
    valid_vid = STANDARD_FOLDS["valid"][3]
    (tmp_path / "valid_video").mkdir()
    valid_records = read_csd(_hand_folder(tmp_path / "valid_video", valid_vid))  # default folds
    assert [(r.id, r.split) for r in valid_records] == [(f"{valid_vid}[0]", "valid"), (f"{valid_vid}[2]", "valid")]
    with pytest.raises(ValueError, match="both"):
        read_csd(folder, folds={"train": [VID], "test": [VID]})
    with pytest.raises(ValueError, match="unknown split"):
        read_csd(folder, folds={"dev": [VID]})


def test_csd_empty_segment_is_dropped_or_rejected_when_strict(tmp_path: Path) -> None:
    folder = _hand_folder(tmp_path)
    # A segment [5.0, 5.5] with visual rows but no word.
    _csd(folder / LABELS, {VID: (np.array([[1.0], [2.0]]), [[0.7, 2.1], [5.0, 5.5]])}, "Opinion Segment Labels")
    assert [r.id for r in read_csd(folder)] == [f"{VID}[0]"]
    with pytest.raises(DataFormatError, match=r"\[1\].*no word") as err:
        read_csd(folder, strict=True)
    assert err.value.path == os.fspath(folder / WORDS)


def test_csd_video_missing_from_the_visual_file(tmp_path: Path) -> None:
    folder = _hand_folder(tmp_path)
    _csd(folder / VISUAL, {"otherVideo1": (np.zeros((2, 3)), [[0, 1], [1, 2]])}, "FACET_4.2")
    assert read_csd(folder) == []
    with pytest.raises(DataFormatError, match=VID) as err:
        read_csd(folder, strict=True)
    assert err.value.path == os.fspath(folder / VISUAL)


def _break_csd(folder: Path, case: str) -> Path:
    """Rewrite one file of the hand folder into a malformed .csd; return the file."""
    if case == "not_hdf5":
        (folder / VISUAL).write_text("FACET features as text\n")
        return folder / VISUAL
    if case == "no_top_group":
        with h5py.File(folder / WORDS, "w"):
            pass
        return folder / WORDS
    if case == "two_top_groups":
        with h5py.File(folder / LABELS, "a") as f:
            f.create_group("another")
        return folder / LABELS
    if case == "top_is_dataset":
        with h5py.File(folder / LABELS, "w") as f:
            f.create_dataset("Opinion Segment Labels", data=np.zeros(3))
        return folder / LABELS
    if case == "no_data_group":
        with h5py.File(folder / VISUAL, "a") as f:
            del f["FACET_4.2/data"]
        return folder / VISUAL
    if case == "no_features":
        with h5py.File(folder / VISUAL, "a") as f:
            del f[f"FACET_4.2/data/{VID}/features"]
        return folder / VISUAL
    if case == "no_intervals":
        with h5py.File(folder / WORDS, "a") as f:
            del f[f"words/data/{VID}/intervals"]
        return folder / WORDS
    if case == "mismatched_n":
        with h5py.File(folder / VISUAL, "a") as f:
            feats = f[f"FACET_4.2/data/{VID}/features"][()]
            del f[f"FACET_4.2/data/{VID}/features"]
            f[f"FACET_4.2/data/{VID}"].create_dataset("features", data=feats[:-1])
        return folder / VISUAL
    if case == "intervals_not_pairs":
        with h5py.File(folder / LABELS, "a") as f:
            del f[f"Opinion Segment Labels/data/{VID}/intervals"]
            f[f"Opinion Segment Labels/data/{VID}"].create_dataset("intervals", data=np.zeros((3, 3)))
        return folder / LABELS
    if case == "numeric_words":
        _csd(folder / WORDS, {VID: (np.zeros((2, 300)), [[0.7, 1.0], [1.0, 2.0]])}, "glove_vectors")
        return folder / WORDS
    if case == "label_out_of_range":
        _csd(folder / LABELS, {VID: (np.array([[3.5]]), [[0.7, 2.1]])}, "Opinion Segment Labels")
        return folder / LABELS
    if case == "ends_before_start":
        _csd(folder / LABELS, {VID: (np.array([[1.0]]), [[2.1, 0.7]])}, "Opinion Segment Labels")
        return folder / LABELS
    raise AssertionError(case)


CSD_CASES = {"not_hdf5": "HDF5", "no_top_group": "one top-level group", "two_top_groups": "one top-level group",
             "top_is_dataset": "one top-level group", "no_data_group": "no 'data' group",
             "no_features": "lacks the 'features'", "no_intervals": "lacks the 'intervals'",
             "mismatched_n": "9 rows but intervals has 10", "intervals_not_pairs": r"\[N, 2\]",
             "numeric_words": "words as strings", "label_out_of_range": r"outside \[-3, 3\]",
             "ends_before_start": "ends before it starts"}


@pytest.mark.parametrize("case", sorted(CSD_CASES))
def test_malformed_csd_is_rejected_naming_the_file(tmp_path: Path, case: str) -> None:
    folder = _hand_folder(tmp_path)
    bad = _break_csd(folder, case)
    with pytest.raises(DataFormatError, match=CSD_CASES[case]) as err:
        read_csd(folder)
    assert err.value.path == os.fspath(bad) and bad.name in str(err.value)


def test_csd_width_check_and_missing_files(tmp_path: Path) -> None:
    folder = _hand_folder(tmp_path)
    assert read_csd(folder, feature_dim=3)[0].video.shape == (4, 3)
    with pytest.raises(DataFormatError, match="width 3, expected feature_dim=35") as err:
        read_csd(folder, feature_dim=35)
    assert err.value.path == os.fspath(folder / VISUAL)
    (folder / WORDS).unlink()
    with pytest.raises(MissingDataFileError) as missing:
        read_csd(folder)
    assert missing.value.path == os.fspath(folder / WORDS)
    with pytest.raises(MissingDataFileError):
        read_csd(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------------- MMSA
def _mmsa(n: int = 3, t: int = 6, d: int = 4) -> dict[str, dict[str, Any]]:
    out = {}
    for s, split in enumerate(("train", "valid", "test")):
        vision = np.arange(n * t * d, dtype=np.float32).reshape(n, t, d) + 1000 * s
        out[split] = {"raw_text": np.array([f"sentence {split} {i}" for i in range(n)], dtype=object),
                      "id": np.array([f"vid{s}$_${i + 1}" for i in range(n)], dtype=object),
                      "regression_labels": np.array([-3.0, 0.0, 2.5][:n], dtype=np.float32),
                      "vision": vision, "audio": np.full((n, t, 5), -np.inf, dtype=np.float32)}
    return out


def _dump(obj: Any, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_mmsa_reads_trims_and_zeroes(tmp_path: Path) -> None:
    data = _mmsa()
    data["train"]["vision"][1, 2, 3] = np.nan
    records = read_mmsa(_dump(data, tmp_path / "aligned_50.pkl"), feature_dim=4)
    assert [(r.id, r.split, r.label) for r in records[:3]] == [("vid0$_$1", "train", -3.0), ("vid0$_$2", "train", 0.0),
                                                              ("vid0$_$3", "train", 2.5)]
    assert [r.split for r in records] == ["train"] * 3 + ["valid"] * 3 + ["test"] * 3
    assert records[4].text == "sentence valid 1" and records[4].video.shape == (6, 4)
    np.testing.assert_array_equal(records[4].video, data["valid"]["vision"][1])
    assert records[1].video[2, 3] == 0 and np.isfinite(records[1].video).all()
    # Unaligned layout: trimmed by vision_lengths, then by max_frames.
    for split in data:
        data[split]["vision_lengths"] = [6, 2, 1]
    unaligned = _dump(data, tmp_path / "unaligned_50.pkl")
    assert [r.video.shape[0] for r in read_mmsa(unaligned, feature_dim=4)[:3]] == [6, 2, 1]
    assert [r.video.shape[0] for r in read_mmsa(unaligned, feature_dim=4, max_frames=3)[:3]] == [3, 2, 1]
    assert [r.video.shape[0] for r in read_mmsa(unaligned, feature_dim=4, use_lengths=False)[:3]] == [6, 6, 6]
    np.testing.assert_array_equal(read_mmsa(unaligned, feature_dim=4)[7].video, data["test"]["vision"][1, :2])


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but not on the allow-list


def _mmsa_case(case: str) -> tuple[Any, dict[str, Any], str]:
    """(pickled object, read_mmsa kwargs, expected message) of one corruption."""
    data = _mmsa()
    kw: dict[str, Any] = {"feature_dim": 4}
    if case == "missing_split":
        del data["valid"]
        return data, kw, r"missing split key\(s\) \['valid'\]"
    if case == "missing_key":
        del data["test"]["regression_labels"]
        return data, kw, r"split 'test' lacks key\(s\) \['regression_labels'\]"
    if case == "wrong_width":
        return data, {"feature_dim": 20}, "width 4, expected feature_dim=20"
    if case == "unequal":
        data["train"]["raw_text"] = data["train"]["raw_text"][:2]
        return data, kw, "unequal length"
    if case == "label_range":
        data["valid"]["regression_labels"][2] = 3.5
        return data, kw, r"sample 2 \(id 'vid1\$_\$3'\): label 3.5 is outside"
    if case == "label_type":
        data["valid"]["regression_labels"] = ["1", "x", "2"]
        return data, kw, "'x' is not a number"
    if case == "empty_text":
        data["test"]["raw_text"][0] = "  "
        return data, kw, "empty text"
    if case == "bad_length":
        data["train"]["vision_lengths"] = [1, 0, 3]
        return data, kw, r"vision_lengths 0 is outside \[1, 6\]"
    if case == "vision_2d":
        data["train"]["vision"] = data["train"]["vision"][:, 0]
        return data, kw, "3-D numeric array"
    if case == "not_a_dict":
        return [data["train"]], kw, "expected a dict"
    if case == "duplicate_id":
        data["test"]["id"][2] = "vid0$_$1"
        return data, kw, "appears twice"
    if case == "foreign_global":
        data["train"]["raw_text"][0] = _Evil()
        return data, kw, "refused to load global"
    raise AssertionError(case)


MMSA_CASES = ["missing_split", "missing_key", "wrong_width", "unequal", "label_range", "label_type", "empty_text",
              "bad_length", "vision_2d", "not_a_dict", "duplicate_id", "foreign_global"]


@pytest.mark.parametrize("case", MMSA_CASES)
def test_bad_mmsa_pickle_is_rejected_naming_the_file(tmp_path: Path, case: str) -> None:
    obj, kw, message = _mmsa_case(case)
    path = _dump(obj, tmp_path / "aligned_50.pkl")
    with pytest.raises(DataFormatError, match=message) as err:
        read_mmsa(path, **kw)
    assert err.value.path == os.fspath(path)
    if case == "foreign_global":
        assert isinstance(err.value, UnsafePickleError) and "getcwd" in err.value.global_name


# -------------------------------------------------------------------------------------------------- UniVL
def _univl(tmp_path: Path, rows: str, features: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    csv_path = tmp_path / "mosi_data.csv"
    csv_path.write_text(rows, encoding="utf-8")
    if features is None:
        features = {k: np.full((2 + i, 8), i, dtype=np.float32) for i, k in enumerate(("a_1", "a_2", "b_1"))}
    return _dump(features, tmp_path / "mosi_videos_features.pickle"), csv_path


GOOD_CSV = 'id,text,label,split\na_1,"well, it was fine",0,train\na_2,not good,-1.4,valid\nb_1,loved it,3,test\n'


def test_univl_reads_rows_in_order(tmp_path: Path) -> None:
    feats, csv_path = _univl(tmp_path, GOOD_CSV)
    records = read_univl(feats, csv_path, feature_dim=8)
    assert [(r.id, r.split, r.text, r.label, r.video.shape) for r in records] == [
        ("a_1", "train", "well, it was fine", 0.0, (2, 8)), ("a_2", "valid", "not good", -1.4, (3, 8)),
        ("b_1", "test", "loved it", 3.0, (4, 8))]
    assert read_univl(feats, csv_path, feature_dim=8, max_frames=3)[2].video.shape == (3, 8)
    assert [r.id for r in load_mosi("univl", tmp_path, feature_dim=8)] == ["a_1", "a_2", "b_1"]


UNIVL_CASES = {
    "missing_column": ("id,text,split\na_1,x,train\n", None, "csv", r"missing csv column\(s\) \['label'\]"),
    "bad_split": (GOOD_CSV.replace("valid", "dev"), None, "csv", "split 'dev' is not one of"),
    "label_text": (GOOD_CSV.replace("-1.4", "neg"), None, "csv", r"line 3 \(id 'a_2'\): label 'neg' is not a number"),
    "label_range": (GOOD_CSV.replace(",3,", ",3.01,"), None, "csv", "label 3.01 is outside"),
    "label_nan": (GOOD_CSV.replace(",0,", ",nan,"), None, "csv", "label nan is outside"),
    "empty_text": (GOOD_CSV.replace("not good", ""), None, "csv", "empty text"),
    "duplicate_id": (GOOD_CSV.replace("b_1", "a_1"), None, "csv", "appears twice"),
    "no_features": (GOOD_CSV, {"a_1": np.zeros((2, 8)), "a_2": np.zeros((2, 8))}, "features",
                    "no features for segment 'b_1'"),
    "wrong_width": (GOOD_CSV, {k: np.zeros((2, 6)) for k in ("a_1", "a_2", "b_1")}, "features",
                    "width 6, expected feature_dim=8"),
    "no_frame": (GOOD_CSV, {k: np.zeros((0 if k == "a_2" else 2, 8)) for k in ("a_1", "a_2", "b_1")}, "features",
                 "no frame"),
}


@pytest.mark.parametrize("case", sorted(UNIVL_CASES))
def test_bad_univl_files_are_rejected_naming_the_file(tmp_path: Path, case: str) -> None:
    rows, features, which, message = UNIVL_CASES[case]
    feats, csv_path = _univl(tmp_path, rows, features)
    with pytest.raises(DataFormatError, match=message) as err:
        read_univl(feats, csv_path, feature_dim=8)
    assert err.value.path == os.fspath(csv_path if which == "csv" else feats)


# ------------------------------------------------------------------------------------------------ dataset
def _records() -> list[MosiRecord]:
    rng = np.random.default_rng(0)
    return [MosiRecord("a", "train", "i really liked this movie", rng.standard_normal((7, 5)).astype(np.float32), 2.5),
            MosiRecord("b", "valid", "meh", rng.standard_normal((2, 5)).astype(np.float32), 0.0),
            MosiRecord("c", "train", "the plot was awful", rng.standard_normal((3, 5)).astype(np.float32), -1.4)]


def test_dataset_contract_keys_shapes_dtypes_and_label() -> None:
    ds = MosiDataset(_records(), _tok, max_words=8, max_frames=4, feature_dim=5, split="train")
    assert len(ds) == 2 and ds.meta(1) == {"id": "c", "split": "train", "text": "the plot was awful", "label": -1.4,
                                           "n_frames": 3}
    item = ds[0]
    assert tuple(item) == MOSI_SAMPLE_KEYS == SAMPLE_KEYS + ("label",)
    for key in ("video", "masked_video"):
        assert item[key].shape == (4, 5) and item[key].dtype == torch.float32
    for key in ("video_mask", "video_labels_index"):
        assert item[key].shape == (4,) and item[key].dtype == torch.int64
    for key in set(SAMPLE_KEYS) - {"video", "masked_video", "video_mask", "video_labels_index"}:
        assert item[key].shape == (8,) and item[key].dtype == torch.int64, key
    assert item["label"].shape == () and item["label"].dtype == torch.float32 and item["label"].item() == 2.5
    # Transcript as encoder text and as decoder target; first F frames of the segment.
    assert item["input_ids"].tolist() == [101, 1001, 1006, 1005, 1004, 1005, 102, 0]
    assert item["output_caption_ids"].tolist() == [1001, 1006, 1005, 1004, 1005, 102, 0, 0]
    assert torch.equal(item["video"], torch.from_numpy(_records()[0].video[:4]))
    short = ds[1]
    assert short["video_mask"].tolist() == [1, 1, 1, 0] and (short["video"][3] == 0).all()
    assert (item["pairs_token_labels"] != -1).any() and (item["video_labels_index"] != -1).any()
    batch = collate([ds[0], ds[1]])
    assert batch["label"].shape == (2,) and batch["label"].dtype == torch.float32
    assert batch["label"].tolist() == pytest.approx([2.5, -1.4])
    assert torch.equal(ds.labels(), batch["label"])
    assert torch.equal(ds[0]["pairs_masked_text"], item["pairs_masked_text"])  # masks are a function of the seed


def test_dataset_rejects_bad_records() -> None:
    records = _records()
    with pytest.raises(ValueError, match=r"video must be an array \[T >= 1, 6\]"):
        MosiDataset(records, _tok, max_words=8, max_frames=4, feature_dim=6, split="train")
    with pytest.raises(ValueError, match="no record of split 'test'"):
        MosiDataset(records, _tok, max_words=8, max_frames=4, feature_dim=5, split="test")
    with pytest.raises(ValueError, match="split must be one of"):
        MosiDataset(records, _tok, max_words=8, max_frames=4, feature_dim=5, split="dev")
    with pytest.raises(ValueError, match="appears twice"):
        MosiDataset(records + records[:1], _tok, max_words=8, max_frames=4, feature_dim=5, split="train")
    empty = MosiRecord("e", "test", "x", np.zeros((0, 5), dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="T >= 1"):
        MosiDataset([empty], _tok, max_words=8, max_frames=4, feature_dim=5, split="test")


def test_load_mosi_dispatch(tmp_path: Path) -> None:
    path = _dump(_mmsa(), tmp_path / "unaligned_50.pkl")
    assert len(load_mosi("mmsa", path, feature_dim=4)) == 9
    assert len(load_mosi("mmsa", tmp_path, filename="unaligned_50.pkl", feature_dim=4)) == 9
    with pytest.raises(MissingDataFileError):
        load_mosi("mmsa", tmp_path, feature_dim=4)  # no aligned_50.pkl in the folder
    with pytest.raises(ValueError, match="unknown MOSI format 'raw'"):
        load_mosi("raw", tmp_path)
    (tmp_path / "csd").mkdir()
    assert [r.id for r in load_mosi("csd", _hand_folder(tmp_path / "csd"))] == [f"{VID}[0]", f"{VID}[2]"]
