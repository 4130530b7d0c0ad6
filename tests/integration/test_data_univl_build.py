"""data.univl.build_univl_data on synthetic files: each dataset name builds the readers a run trains and evaluates
on, from the official file names, equal to readers constructed by hand from the same files (the reference)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from data.synthetic.univl import write_mosi, write_msrvtt, write_youcook2
from data.univl import DATASETS, MSRVTT, UniVLDataConfig, YouCook2, build_univl_data
from data.univl.mosi import MosiDataset, read_mmsa

LENGTHS = dict(max_words=16, max_frames=8)


def _tok(text: str) -> list[int]:
    # A str -> ids tokenizer: ids only need to be stable, the text is not the point here.
    return [1000 + sum(map(ord, w)) % 5000 for w in text.split()]


def _same(a, b) -> None:
    """Same samples: every record, and every tensor of the first and last sample."""
    assert type(a) is type(b) and len(a) == len(b)
    assert [a.meta(i) for i in range(len(a))] == [b.meta(i) for i in range(len(b))]
    for i in (0, len(a) - 1):
        x, y = a[i], b[i]
        assert list(x) == list(y) and all(torch.equal(x[k], y[k]) for k in x)


def test_youcook2_builds_train_and_val_from_the_official_names(tmp_path: Path) -> None:
    files = write_youcook2(tmp_path, n_videos=5, seed=1, feature_dim=8)
    cfg = UniVLDataConfig(dataset="youcook2", root=str(tmp_path), text_source="transcript", feature_dim=8, **LENGTHS)
    train, evals = build_univl_data(cfg, _tok)
    assert list(evals) == ["test"]
    reads = (files["data_transcript"], files["features"], _tok)
    kw = dict(text_source="transcript", feature_dim=8, **LENGTHS)
    _same(train, YouCook2(files["train_csv"], *reads, **kw))
    _same(evals["test"], YouCook2(files["val_csv"], *reads, force_mask=False, **kw))


def test_youcook2_caption_text_reads_the_public_pickle_or_falls_back_to_the_transcript_one(tmp_path: Path) -> None:
    files = write_youcook2(tmp_path, n_videos=4, seed=2, feature_dim=8)
    cfg = UniVLDataConfig(dataset="youcook2", root=str(tmp_path), text_source="caption", feature_dim=8, **LENGTHS)
    reference = YouCook2(files["val_csv"], files["data_no_transcript"], files["features"], _tok,
                         force_mask=False, feature_dim=8, **LENGTHS)
    _same(build_univl_data(cfg, _tok)[1]["test"], reference)
    files["data_no_transcript"].unlink()  # MELTR's private transcript pickle also holds every caption
    _same(build_univl_data(cfg, _tok)[1]["test"], reference)


@pytest.mark.parametrize(("split", "train_split", "test_split"), [("7k", "train_7k", "test_jsfusion"),
                                                                  ("9k", "train_9k", "test_jsfusion"),
                                                                  ("full", "train_full", "test_full")])
def test_msrvtt_splits(tmp_path: Path, split: str, train_split: str, test_split: str) -> None:
    files = write_msrvtt(tmp_path, n_videos=10, seed=3, feature_dim=8)
    sizes = dict(n_train_videos=files["n_train_videos"], n_test_videos=files["n_test_videos"])
    cfg = UniVLDataConfig(dataset="msrvtt", root=str(tmp_path), split=split, json_file=files["transcript_json"].name,
                          text_source="transcript", feature_dim=8, **sizes, **LENGTHS)
    train, evals = build_univl_data(cfg, _tok)
    csv = {"train_9k": files["train_9k_csv"], "test_jsfusion": files["jsfusion_csv"]}
    kw = dict(text_source="transcript", feature_dim=8, **sizes, **LENGTHS)
    ref = lambda s, **more: MSRVTT(files["transcript_json"], files["features"], _tok, split=s,  # noqa: E731
                                   csv_path=csv.get(s), **kw, **more)
    assert list(evals) == ["test"]
    _same(train, ref(train_split))
    _same(evals["test"], ref(test_split, force_mask=False))


def test_mosi_has_a_valid_split_for_selection_and_a_test_split(tmp_path: Path) -> None:
    write_mosi(tmp_path, fmt="mmsa", n_videos=4, seed=4)
    shutil.move(tmp_path / "aligned_50.pkl", tmp_path / "renamed.pkl")  # the file name comes from mosi_file
    cfg = UniVLDataConfig(dataset="mosi", root=str(tmp_path), mosi_format="mmsa", mosi_file="renamed.pkl",
                          feature_dim=20, **LENGTHS)
    train, evals = build_univl_data(cfg, _tok)
    records = read_mmsa(tmp_path / "renamed.pkl", feature_dim=20)
    kw = dict(feature_dim=20, **LENGTHS)
    assert list(evals) == ["valid", "test"]
    _same(train, MosiDataset(records, _tok, split="train", **kw))
    for split in ("valid", "test"):
        _same(evals[split], MosiDataset(records, _tok, split=split, force_mask=False, **kw))


def test_an_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown UniVL dataset 'kinetics'; known: " + ", ".join(sorted(DATASETS))):
        build_univl_data(UniVLDataConfig(dataset="kinetics"), _tok)  # type: ignore[arg-type]
