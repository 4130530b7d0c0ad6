"""VIOLET data end to end: synthetic files in the official formats → readers → batches; converter → reader;
videos → extract_frames → frame pickle → reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data import collate
from data.safe_pickle import load_pickle
from data.synthetic.violet import TGIF_JSON, write_msvd, write_msvd_raw, write_tgif, write_tgif_raw, write_violet_msrvtt
from data.video import write_video
from data.violet import (RetrievalTest, RetrievalTrain, VioletDataConfig, build_violet_data, decode_video,
                         load_violet_sources, read_qa_json)
from data.violet.extract_frames import extract_folder, sample_indices
from data.violet.extract_frames import main as extract_main
from data.violet.qa_convert import convert_msvd, convert_tgif, write_json
from evaluation.retrieval import retrieval_metrics_multi

SIZE = 64  # size_img of these tests: a 2x2 patch / VQ grid


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("violet_msrvtt")
    write_violet_msrvtt(root, n_videos=8, vq_grid=SIZE // 32, n_frames=3)
    return root


def _retrieval_cfg(root: Path, **kw) -> VioletDataConfig:
    return VioletDataConfig(root=str(root), size_img=SIZE, n_frames=3, **kw)


def test_retrieval_splits_follow_the_json(msrvtt: Path, tokenizer) -> None:
    sources = load_violet_sources(_retrieval_cfg(msrvtt))
    for train_file in ("train_9k.json", "train_7k.json"):
        cfg = _retrieval_cfg(msrvtt, train_file=train_file)
        train = build_violet_data(cfg, tokenizer, "train", sources)
        sentences = json.loads((msrvtt / train_file).read_text())["sentences"]
        assert isinstance(train, RetrievalTrain) and len(train) == len(sentences)  # one sample per caption
        assert [train.meta(i)["caption"] for i in range(len(train))] == [s["caption"] for s in sentences]
    test = build_violet_data(_retrieval_cfg(msrvtt), tokenizer, "test", sources)
    official = build_violet_data(_retrieval_cfg(msrvtt, test_file="txt_msrvtt-retrieval.json"), tokenizer, "test",
                                 sources)
    assert isinstance(test, RetrievalTest) and test.pairs == official.pairs
    assert not set(test.video_ids) & {train.meta(i)["video_id"] for i in range(len(train))}


def test_retrieval_batches_and_evaluation_sides(msrvtt: Path, tokenizer) -> None:
    cfg = _retrieval_cfg(msrvtt)
    train = build_violet_data(cfg, tokenizer, "train")
    train.set_epoch(1)
    batch = next(iter(DataLoader(train, batch_size=4, collate_fn=collate)))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "video": (4, 3, 3, SIZE, SIZE), "vq": (4, 3 * 5), "text_ids": (4, 25), "text_mask": (4, 25), "index": (4,)}
    assert 0.0 <= float(batch["video"].min()) and float(batch["video"].max()) <= 1.0
    assert (batch["vq"][:, ::5] == -1).all() and (batch["vq"].reshape(4, 3, 5)[..., 1:] >= 0).all()
    assert (batch["text_ids"][:, 0] == 101).all()

    test = build_violet_data(cfg, tokenizer, "test")
    videos = next(iter(DataLoader(test.videos, batch_size=len(test.videos), collate_fn=collate)))
    texts = next(iter(DataLoader(test.texts, batch_size=len(test.texts), collate_fn=collate)))
    assert videos["video"].shape[0] == len(test.video_ids) and texts["text_ids"].shape[0] == len(test.captions)
    # the index lines up with meta(): a perfect score matrix gives R@1 = 1
    assert [test.video_ids[j] for j in test.text_to_video] == [test.meta(i)["video_id"] for i in range(len(test))]
    scores = torch.nn.functional.one_hot(test.text_to_video, len(test.video_ids)).float()
    assert retrieval_metrics_multi(scores, test.text_to_video)["t2v_R@1"] == 1.0


@pytest.mark.parametrize("task", ["action", "transition", "frameqa"])
def test_tgif_tasks(tmp_path: Path, tokenizer, task: str) -> None:
    write_tgif(tmp_path, task=task, n_videos=6, vq_grid=SIZE // 32, n_frames=2, n_answers=10)
    qa_task = "qa_oe" if task == "frameqa" else "qa_mc"
    common = dict(root=str(tmp_path), task=qa_task, img_file="img_tgif.pkl", vq_file="tgif_vq.pkl",
                  train_file=TGIF_JSON[task], test_file=TGIF_JSON[task], size_img=SIZE, n_frames=2, size_vocab=10)
    raw = json.loads((tmp_path / TGIF_JSON[task]).read_text())
    for split in ("train", "test"):
        ds = build_violet_data(VioletDataConfig(size_txt=40, **common), tokenizer, split)
        batch = collate([ds[i] for i in range(len(ds))])
        assert batch["answer"].tolist() == [it["answer"] for it in raw[split]]
        text_shape = (len(ds), 40) if task == "frameqa" else (len(ds), 5, 40)
        assert batch["text_ids"].shape == text_shape and batch["video"].shape == (len(ds), 2, 3, SIZE, SIZE)
    val = build_violet_data(VioletDataConfig(test_split="val", **common), tokenizer, "test")
    assert len(val) == len(raw["val"])
    if task != "frameqa":
        fork = build_violet_data(VioletDataConfig(mc_text="fork", size_txt=40, **common), tokenizer, "test")
        official = build_violet_data(VioletDataConfig(size_txt=40, **common), tokenizer, "test")
        assert not torch.equal(fork[0]["text_ids"], official[0]["text_ids"])
        assert torch.equal(fork[0]["video"], official[0]["video"])


def test_msvd_oov_answers_are_kept(tmp_path: Path, tokenizer) -> None:
    write_msvd(tmp_path, n_videos=6, vq_grid=SIZE // 32, n_frames=2, n_answers=8)
    cfg = VioletDataConfig(root=str(tmp_path), task="qa_oe", img_file="img_msvd.pkl", vq_file="msvd_vq.pkl",
                           train_file="txt_msvd-qa.json", test_file="txt_msvd-qa.json", size_img=SIZE, n_frames=2,
                           size_vocab=8)
    test = build_violet_data(cfg, tokenizer, "test")
    raw = json.loads((tmp_path / "txt_msvd-qa.json").read_text())
    assert len(test) == len(raw["test"]) and test.vocab == raw["vocab"]
    assert [test[i]["answer"].item() for i in range(len(test))] == [it["answer"] for it in raw["test"]]


def test_converted_json_is_read_by_the_reader(tmp_path: Path) -> None:
    write_tgif_raw(tmp_path / "tgif", task="frameqa", n_train=40, n_test=20)
    obj, report = convert_tgif(tmp_path / "tgif", "frameqa", top_k=6)
    write_json(obj, tmp_path / "txt_tgif-frame.json")
    items, vocab = read_qa_json(tmp_path / "txt_tgif-frame.json", "test", "oe", n_answers=6)
    assert vocab == obj["vocab"] and sum(it.answer == -1 for it in items) == report.splits["test"].oov
    write_tgif_raw(tmp_path / "mc", task="action", n_train=10, n_test=5)
    obj, _ = convert_tgif(tmp_path / "mc", "action")
    write_json(obj, tmp_path / "txt_tgif-action.json")
    items, _ = read_qa_json(tmp_path / "txt_tgif-action.json", "test", "mc", n_answers=5)
    assert [it.options[0] for it in items] == [it["option_0"] for it in obj["test"]]
    write_msvd_raw(tmp_path / "msvd")
    obj, report = convert_msvd(tmp_path / "msvd", top_k=5)
    write_json(obj, tmp_path / "txt_msvd-qa.json")
    items, _ = read_qa_json(tmp_path / "txt_msvd-qa.json", "val", "oe", n_answers=5)
    assert len(items) == report.splits["val"].total


def _clip(n: int, h: int, w: int) -> np.ndarray:
    """Frame i: a smooth gradient plus brightness 9·i, so each frame is identifiable by its mean."""
    y, x = np.mgrid[0:h, 0:w]
    base = (x + y)[None, :, :, None] * (20.0 / (h + w)) + np.arange(n)[:, None, None, None] * 9.0
    rgb = np.concatenate([base, base + 10, base + 20], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_extract_frames_round_trip(tmp_path: Path) -> None:
    n, side = 24, 64
    source = _clip(n, side, side)
    write_video(tmp_path / "videos" / "clip_a.mp4", source)
    write_video(tmp_path / "videos" / "clip_b.mp4", _clip(10, 48, 64))  # landscape: padded on decode
    frames, skipped = extract_folder(tmp_path / "videos", 5)
    assert skipped == [] and sorted(frames) == ["clip_a", "clip_b"]
    out = tmp_path / "img_test.pkl"
    assert extract_main(["--videos", str(tmp_path / "videos"), "--out", str(out), "--sample", "5"]) == 0
    stored = load_pickle(out)
    assert stored == frames and all(isinstance(s, str) and len(v) == 5 for v in stored.values() for s in v)
    # square source at its own size: padding and resizing are identities, only H.264 + JPEG losses remain
    video = decode_video(stored["clip_a"], side)
    got = (video * 255).round().permute(0, 2, 3, 1).numpy()
    expected_idx = sample_indices(n, 5)  # 24/6·k → 4, 8, 12, 16, 20
    means = source.reshape(n, -1).mean(axis=1)
    for t, idx in enumerate(expected_idx):
        assert int(np.argmin(np.abs(means - got[t].mean()))) == idx
        assert np.abs(got[t] - source[idx]).mean() < 3.0
    assert decode_video(stored["clip_b"], 32).shape == (5, 3, 32, 32)
