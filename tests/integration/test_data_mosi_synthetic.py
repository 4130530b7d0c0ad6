"""data.univl.mosi on data.synthetic's MOSI files in the three public layouts: round trip, contract, corrupted copies."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from data import DataFormatError, UnsafePickleError, collate
from data.safe_pickle import load_pickle
from data.synthetic.univl import mosi_corpus, write_mosi
from data.text import TextEncoder
from data.univl.mosi import MOSI_SAMPLE_KEYS, STANDARD_FOLDS, MosiDataset, MosiRecord, load_mosi, read_mmsa

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("mmsa", "univl", "csd")
DIMS = {"mmsa": 20, "univl": 1024, "csd": 35}
MAIN_FILE = {"mmsa": "aligned_50.pkl", "univl": "mosi_videos_features.pickle", "csd": "CMU_MOSI_Visual_Facet_42.csd"}
L, F = 16, 10
SEED, N_VIDEOS = 3, 6


@pytest.fixture(scope="session")
def mosi_dirs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mosi")
    for fmt in FORMATS:
        write_mosi(base / fmt, fmt=fmt, n_videos=N_VIDEOS, seed=SEED)
    return {fmt: base / fmt for fmt in FORMATS}


def _info(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "synthetic_info.json").read_text())


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_back_the_written_segments(mosi_dirs, fmt: str) -> None:
    info = _info(mosi_dirs[fmt])
    records = load_mosi(fmt, mosi_dirs[fmt])
    truth = info["segments"]
    if fmt == "csd":  # the SDK layout is read in HDF5 name order (video ids sorted), segments in row order
        truth = sorted(truth, key=lambda s: (s["id"].split("[")[0].encode(), int(s["id"].split("[")[1][:-1])))
    assert [r.id for r in records] == [s["id"] for s in truth]
    assert [(r.split, r.text) for r in records] == [(s["split"], s["text"]) for s in truth]
    assert [r.label for r in records] == pytest.approx([s["label"] for s in truth], abs=1e-6)
    assert [r.video.shape for r in records] == [(s["frames"][MAIN_FILE[fmt]], DIMS[fmt]) for s in truth]
    assert all(r.video.dtype == np.float32 and np.isfinite(r.video).all() for r in records)
    sizes = {s: sum(r.split == s for r in records) for s in ("train", "valid", "test")}
    assert sizes == info["sizes"] and min(sizes.values()) >= 1
    labels = {r.label for r in records}
    assert 0.0 in labels and {-0.5, 2.5, -3.0, 3.0} <= labels  # exact zero, halves, both ends


def test_all_formats_hold_the_same_corpus(mosi_dirs) -> None:
    def key(r: MosiRecord) -> tuple[str, str, str, float]:
        # Video id out of each layout's segment id: "<vid>$_$<clip>", "<vid>_<clip>", "<vid>[<row>]".
        if "$_$" in r.id:
            video = r.id.split("$_$")[0]
        elif r.id.endswith("]"):
            video = r.id.split("[")[0]
        else:
            video = r.id.rsplit("_", 1)[0]
        return video, r.split, r.text, round(r.label, 5)

    seen = [sorted(map(key, load_mosi(fmt, mosi_dirs[fmt]))) for fmt in FORMATS]
    assert seen[0] == seen[1] == seen[2]
    corpus = [v for v in mosi_corpus(N_VIDEOS, SEED) if v["split"] is not None]
    assert sorted((v["video_id"], v["split"], s["text"], round(s["label"], 5)) for v in corpus
                  for s in v["segments"]) == seen[0]


def test_mmsa_features_equal_the_pickle_with_non_finite_zeroed(mosi_dirs) -> None:
    for name, trimmed in (("aligned_50.pkl", False), ("unaligned_50.pkl", True)):
        raw = load_pickle(mosi_dirs["mmsa"] / name)
        records = read_mmsa(mosi_dirs["mmsa"] / name)
        assert not np.isfinite(raw["train"]["vision"]).all()  # the generator planted a non-finite value
        k = 0
        for split in ("train", "valid", "test"):
            for i, sid in enumerate(raw[split]["id"]):
                n = raw[split]["vision_lengths"][i] if trimmed else raw[split]["vision"].shape[1]
                want = np.nan_to_num(raw[split]["vision"][i, :n], nan=0.0, posinf=0.0, neginf=0.0)
                assert records[k].id == sid
                np.testing.assert_array_equal(records[k].video, want)
                k += 1
        assert k == len(records)


def test_csd_uses_the_standard_folds_and_skips_the_unlisted_video(mosi_dirs) -> None:
    records = load_mosi("csd", mosi_dirs["csd"])
    fold_of = {vid: split for split, ids in STANDARD_FOLDS.items() for vid in ids}
    assert all(fold_of[r.id.split("[")[0]] == r.split for r in records)
    with h5py.File(mosi_dirs["csd"] / "CMU_MOSI_Opinion_Labels.csd", "r") as f:
        (root,) = f.keys()
        written = set(f[root]["data"])
    unlisted = written - set(fold_of)
    assert len(unlisted) == 1 and not any(r.id.startswith(tuple(unlisted)) for r in records)
    # With folds given, the unlisted video is read too, and the standard videos not listed are skipped.
    (extra,) = unlisted
    only = load_mosi("csd", mosi_dirs["csd"], folds={"test": [extra]})
    assert only and {r.split for r in only} == {"test"} and all(r.id.startswith(extra + "[") for r in only)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dataset_contract_on_each_format(mosi_dirs, tokenizer, fmt: str) -> None:
    records = load_mosi(fmt, mosi_dirs[fmt])
    enc = TextEncoder(tokenizer, L)
    for split in ("train", "valid", "test"):
        ds = MosiDataset(records, tokenizer, max_words=L, max_frames=F, feature_dim=DIMS[fmt], split=split,
                         force_mask=split == "train")
        kept = [r for r in records if r.split == split]
        assert len(ds) == len(kept)
        for i, rec in enumerate(kept):
            item = ds[i]
            assert tuple(item) == MOSI_SAMPLE_KEYS
            assert item["video"].shape == (F, DIMS[fmt]) and item["masked_video"].dtype == torch.float32
            assert item["input_ids"].shape == (L,) and item["input_ids"].dtype == torch.int64
            assert item["label"].shape == () and item["label"].item() == pytest.approx(rec.label)
            assert torch.equal(item["input_ids"], enc.encode(rec.text)["input_ids"])
            assert torch.equal(item["output_caption_ids"], enc.encode_caption(rec.text)["output_caption_ids"])
            assert (item["input_ids"] == tokenizer.unk_token_id).sum() == 0  # real words, known pieces
            n = min(F, rec.video.shape[0])
            assert torch.equal(item["video"][:n], torch.from_numpy(rec.video[:n])) and (item["video"][n:] == 0).all()
            assert ds.meta(i)["id"] == rec.id
        batch = collate([ds[i] for i in range(len(ds))])
        assert list(batch) == list(MOSI_SAMPLE_KEYS) and batch["label"].shape == (len(ds),)
        assert torch.equal(batch["label"], ds.labels())


def test_cli_writes_the_csd_layout(tmp_path: Path) -> None:
    out = tmp_path / "csd"
    proc = subprocess.run([sys.executable, "-m", "data.synthetic", "mosi", "--out", str(out), "--format", "csd",
                           "--videos", "4", "--seed", "5"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"CMU_MOSI_TimestampedWords.csd", "CMU_MOSI_Visual_Facet_42.csd",
                                               "CMU_MOSI_Opinion_Labels.csd", "synthetic_info.json"}
    info = _info(out)
    assert info["sizes"] == {s: sum(seg["split"] == s for seg in info["segments"]) for s in ("train", "valid", "test")}
    for name, root in (("CMU_MOSI_TimestampedWords.csd", "words"), ("CMU_MOSI_Opinion_Labels.csd",
                                                                    "Opinion Segment Labels")):
        with h5py.File(out / name, "r") as f:
            assert list(f) == [root]
            assert json.loads(f[root]["metadata"]["root name"][0]) == root
            for vid in f[root]["data"]:
                entry = f[root]["data"][vid]
                assert entry["intervals"].shape == (entry["features"].shape[0], 2) and entry["features"].ndim == 2
    with h5py.File(out / "CMU_MOSI_TimestampedWords.csd", "r") as f:
        assert b"sp" in {w[0] for vid in f["words/data"] for w in f["words/data"][vid]["features"][()]}
    assert proc.stdout.count(": ") >= 4 and "train: " in proc.stdout


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    for fmt in FORMATS:
        a = write_mosi(tmp_path / f"{fmt}_a", fmt=fmt, n_videos=3, seed=11)
        b = write_mosi(tmp_path / f"{fmt}_b", fmt=fmt, n_videos=3, seed=11)
        c = write_mosi(tmp_path / f"{fmt}_c", fmt=fmt, n_videos=3, seed=12)
        for key, path in a.items():
            if isinstance(path, Path):
                assert path.read_bytes() == b[key].read_bytes(), (fmt, key)
        assert a["info"].read_bytes() != c["info"].read_bytes()


# ---------------------------------------------------------------------------------------- corrupted copies
class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))  # never run: the safe unpickler refuses the global


def _corrupt(folder: Path, case: str) -> tuple[Path, dict[str, Any]]:
    """Damage one synthetic file in place; return it and the load_mosi keywords to read with."""
    if case.startswith("mmsa"):
        path = folder / "aligned_50.pkl"
        data = load_pickle(path)
        if case == "mmsa_drop_split":
            del data["test"]
        elif case == "mmsa_drop_key":
            del data["valid"]["raw_text"]
        elif case == "mmsa_label":
            data["train"]["regression_labels"][1] = -3.25
        elif case == "mmsa_global":
            data["valid"]["id"][0] = _Evil()
        path.write_bytes(pickle.dumps(data, protocol=4))
        return path, {"feature_dim": 35} if case == "mmsa_width" else {}
    if case.startswith("univl"):
        feats, csv_path = folder / "mosi_videos_features.pickle", folder / "mosi_data.csv"
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if case == "univl_width":
            return feats, {"feature_dim": 512}
        if case == "univl_no_features":
            data = load_pickle(feats)
            del data[rows[-1]["id"]]
            feats.write_bytes(pickle.dumps(data, protocol=4))
            return feats, {}
        columns = ["id", "text", "label", "split"]
        if case == "univl_drop_column":
            columns.remove("split")
        if case == "univl_label":
            rows[2]["label"] = "very positive"
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return csv_path, {}
    labels, visual = folder / "CMU_MOSI_Opinion_Labels.csd", folder / "CMU_MOSI_Visual_Facet_42.csd"
    with h5py.File(labels, "r") as f:
        first = sorted(f["Opinion Segment Labels/data"])[0]
    if case == "csd_no_intervals":
        with h5py.File(visual, "a") as f:
            del f[f"FACET_4.2/data/{first}/intervals"]
        return visual, {}
    if case == "csd_second_group":
        with h5py.File(labels, "a") as f:
            f.create_group("Opinion Segment Labels (copy)")
        return labels, {}
    if case == "csd_label":
        with h5py.File(labels, "a") as f:
            f[f"Opinion Segment Labels/data/{first}/features"][0, 0] = 7.0
        return labels, {}
    if case == "csd_width":
        return visual, {"feature_dim": 20}
    raise AssertionError(case)


CORRUPTIONS = {
    "mmsa_drop_split": "missing split key", "mmsa_drop_key": "lacks key", "mmsa_width": "expected feature_dim=35",
    "mmsa_label": "label -3.25 is outside", "mmsa_global": "refused to load global",
    "univl_drop_column": "missing csv column", "univl_label": "'very positive' is not a number",
    "univl_width": "expected feature_dim=512", "univl_no_features": "no features for segment",
    "csd_no_intervals": "lacks the 'intervals' dataset", "csd_second_group": "exactly one top-level group",
    "csd_label": "label 7.0 is outside", "csd_width": "expected feature_dim=20",
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_synthetic_files_are_rejected_naming_the_file(mosi_dirs, tmp_path: Path, case: str) -> None:
    fmt = case.split("_")[0]
    folder = _copy(mosi_dirs[fmt], tmp_path / fmt)
    bad, kw = _corrupt(folder, case)
    with pytest.raises(DataFormatError, match=CORRUPTIONS[case]) as err:
        load_mosi(fmt, folder, **kw)
    assert err.value.path == os.fspath(bad) and bad.name in str(err.value)
    if case == "mmsa_global":
        assert isinstance(err.value, UnsafePickleError)
