"""data.allinone.msrvtt on synthetic raw-video MSR-VTT (data.synthetic.allinone): splits, sample contract,
frames equal to an independent re-computation of the official pipeline, reproducibility, retrieval views,
bad files; and evaluation.multiview against the golden fixture and a hand-computed case."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data import collate
from data.allinone import SAMPLE_KEYS, AllInOneDataConfig, build_msrvtt
from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError
from data.safe_pickle import load_pickle
from data.synthetic.allinone import write_allinone_msrvtt
from data.video import VideoDecodeError, read_frames, video_info, write_video
from evaluation.multiview import (allinone_metrics, average_similarities, cosine_similarity, multiview_retrieval,
                                  multiview_similarity)

FIXTURE = Path("/work/shared/fixtures/allinone/golden.pt")
SIZE, DECODE = 32, 64  # tiny crop and decode size; resize = int(1.2 · 32) = 38


@pytest.fixture(scope="session")
def aio_root(tmp_path_factory) -> Path:
    return write_allinone_msrvtt(tmp_path_factory.mktemp("aio"), n_videos=24, seed=3)


def _cfg(root: Path, **kw) -> AllInOneDataConfig:
    return AllInOneDataConfig(root=str(root), image_size=SIZE, decode_size=DECODE, **kw)


def _copy(root: Path, dest: Path) -> Path:
    return Path(shutil.copytree(root, dest))


def _lines(path: Path) -> list[str]:
    return [x for x in path.read_text().split("\n") if x]


def _captions(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in json.loads((root / "MSR_VTT.json").read_text())["annotations"]:
        out.setdefault(a["image_id"], []).append(a["caption"])
    return out


# ---------------------------------------------------------------------------------------------------- splits


def test_split_sizes_and_order(aio_root, tokenizer) -> None:
    info = json.loads((aio_root / "synthetic_info.json").read_text())
    sizes = {}
    for split in ("7k", "9k"):
        ds = build_msrvtt(_cfg(aio_root, split=split), tokenizer, train=True)
        assert ds.video_ids == sorted(_lines(aio_root / f"train_list_{split}.txt"))  # pandas groupby order
        sizes[split] = len(ds)
    test = build_msrvtt(_cfg(aio_root), tokenizer, train=False)
    assert (sizes["7k"], sizes["9k"], len(test)) == (info["n_7k"], info["n_9k"], info["n_test"]) == (17, 22, 2)
    assert not set(test.video_ids) & set(_lines(aio_root / "train_list_9k.txt"))
    assert test.video_ids == sorted(_lines(aio_root / "val_list_jsfusion.txt"))


def test_captions_train_draws_from_all_test_uses_the_jsfusion_index(aio_root, tokenizer) -> None:
    caps = _captions(aio_root)
    train = build_msrvtt(_cfg(aio_root), tokenizer, train=True)
    enc = {c: tokenizer(c, padding="max_length", truncation=True, max_length=40)["input_ids"]
           for v in train.video_ids for c in caps[v]}
    drawn = set()
    for epoch in range(12):
        train.set_epoch(epoch)
        s = train[0]
        match = [c for c in caps[train.video_ids[0]] if enc[c] == s["text_ids"].tolist()]
        assert match, "the training text is not one of the video's captions"
        drawn.add(match[0])
    assert len(drawn) > 1  # redrawn per read
    test = build_msrvtt(_cfg(aio_root), tokenizer, train=False)
    idx = load_pickle(aio_root / "jsfusion_val_caption_idx.pkl")
    for i, vid in enumerate(test.video_ids):
        expected = tokenizer(caps[vid][idx[vid]], padding="max_length", truncation=True, max_length=40)
        assert test[i]["text_ids"].tolist() == expected["input_ids"]
        assert test[i]["text_mask"].tolist() == expected["attention_mask"]
        assert test.meta(i)["captions"] == [caps[vid][idx[vid]]]


def test_sample_contract_and_collate(aio_root, tokenizer) -> None:
    ds = build_msrvtt(_cfg(aio_root), tokenizer, train=True)
    s = ds[3]
    assert tuple(s) == SAMPLE_KEYS
    assert s["video"].shape == (3, 3, SIZE, SIZE) and s["video"].dtype == torch.float32
    for k in ("text_ids", "text_mask", "mlm_ids", "mlm_labels"):
        assert s[k].shape == (40,) and s[k].dtype == torch.int64
    assert s["index"].shape == () and int(s["index"]) == 3
    chosen = s["mlm_labels"] != -100
    assert torch.equal(s["mlm_labels"][chosen], s["text_ids"][chosen])
    assert torch.equal(s["mlm_ids"][~chosen], s["text_ids"][~chosen])
    batch = collate([ds[i] for i in range(4)])
    assert batch["video"].shape == (4, 3, 3, SIZE, SIZE) and batch["index"].tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------------- frames


def _official_frames(path: str, indices: list[int]) -> np.ndarray:
    """The official pipeline recomputed up to the crop: decord 64x64 decode, PIL bilinear to 38, /255,
    ImageNet mean/std; float64 [len(indices), 38, 38, 3]."""
    frames = read_frames(path, indices, "decord", resize_hw=(DECODE, DECODE))
    resize = int(SIZE * 1.2)
    img = np.stack([np.asarray(Image.fromarray(f).resize((resize, resize), Image.Resampling.BILINEAR)) for f in frames])
    return (img / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]


def _crop(frames: np.ndarray, top: int, left: int) -> torch.Tensor:
    return torch.from_numpy(frames[:, top:top + SIZE, left:left + SIZE].transpose(0, 3, 1, 2)).float()


def test_test_frames_are_the_uniform_official_pipeline(aio_root, tokenizer) -> None:
    test = build_msrvtt(_cfg(aio_root), tokenizer, train=False)
    for i in range(len(test)):
        path = test.meta(i)["path"]
        n = video_info(path).n_frames
        edges = [int(k * (n / 3)) for k in range(4)]
        middle = [(edges[k] + edges[k + 1] - 1) // 2 for k in range(3)]
        centre = int(round((int(SIZE * 1.2) - SIZE) / 2))  # 3
        assert torch.allclose(test[i]["video"], _crop(_official_frames(path, middle), centre, centre), atol=1e-5)


def test_train_frames_are_an_official_random_sample(aio_root, tokenizer) -> None:
    ds = build_msrvtt(_cfg(aio_root), tokenizer, train=True)
    span = int(SIZE * 1.2) - SIZE + 1
    for epoch, index in ((0, 0), (1, 0), (0, 7)):
        ds.set_epoch(epoch)
        video = ds[index]["video"]
        path = ds.meta(index)["path"]
        n = video_info(path).n_frames
        edges = [int(k * (n / 3)) for k in range(4)]
        every = _official_frames(path, list(range(n)))
        # Some crop corner must give, for each segment k, a frame in [edge_k, edge_{k+1} - 2] (never the last).
        found = []
        for top in range(span):
            for left in range(span):
                crops = _crop(every, top, left)
                picks = [[i for i in range(edges[k], edges[k + 1] - 1) if torch.allclose(video[k], crops[i], atol=1e-5)]
                         for k in range(3)]
                if all(picks):
                    found.append((top, left, picks))
        assert found, f"epoch {epoch} sample {index} is not a crop of allowed frames"


def test_backends_give_the_same_samples(aio_root, tokenizer) -> None:
    a = build_msrvtt(_cfg(aio_root, backend="decord"), tokenizer, train=True)[5]
    b = build_msrvtt(_cfg(aio_root, backend="av"), tokenizer, train=True)[5]
    assert all(torch.equal(a[k], b[k]) for k in SAMPLE_KEYS)


# ------------------------------------------------------------------------------------------ reproducibility


def test_epochs_are_reproducible_and_differ(aio_root, tokenizer) -> None:
    ds = build_msrvtt(_cfg(aio_root), tokenizer, train=True)
    first = [ds[i] for i in range(6)]
    ds.set_epoch(1)
    second = [ds[i] for i in range(6)]
    again = build_msrvtt(_cfg(aio_root), tokenizer, train=True)  # a fresh process resuming at epoch 1
    again.set_epoch(1)
    for i in range(6):
        assert all(torch.equal(second[i][k], again[i][k]) for k in SAMPLE_KEYS)
    ds.set_epoch(0)
    assert all(torch.equal(first[i][k], ds[i][k]) for i in range(6) for k in SAMPLE_KEYS)
    for k in ("video", "mlm_ids"):
        assert any(not torch.equal(first[i][k], second[i][k]) for i in range(6)), k
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


def test_worker_processes_see_the_same_samples(aio_root, tokenizer) -> None:
    ds = build_msrvtt(_cfg(aio_root), tokenizer, train=True)
    ds.set_epoch(2)
    batches = [list(DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=w)) for w in (0, 2)]
    for x, y in zip(*batches):
        assert all(torch.equal(x[k], y[k]) for k in SAMPLE_KEYS)


def test_retrieval_views(aio_root, tokenizer) -> None:
    test = build_msrvtt(_cfg(aio_root), tokenizer, train=False)
    uniform = [test[i]["video"] for i in range(len(test))]
    assert all(torch.equal(u, test.with_view(None)[i]["video"]) for i, u in enumerate(uniform))
    views = {v: [test.with_view(v)[i]["video"] for i in range(len(test))] for v in range(4)}
    assert all(torch.equal(a, b) for a, b in zip(views[0], [test.with_view(0)[i]["video"] for i in range(len(test))]))
    assert len({tuple(torch.cat(vs).flatten()[:4000].tolist()) for vs in views.values()}) > 1  # views differ
    assert torch.equal(test.with_view(1)[0]["text_ids"], test[0]["text_ids"])  # the text is view-independent
    with pytest.raises(ValueError, match="test set"):
        build_msrvtt(_cfg(aio_root), tokenizer, train=True).with_view(0)


# -------------------------------------------------------------------------------------------------- bad input


def test_broken_video_raises_or_is_skipped_and_counted(aio_root, tokenizer, tmp_path) -> None:
    root = _copy(aio_root, tmp_path / "d")
    ds = build_msrvtt(_cfg(root), tokenizer, train=True)
    bad = [Path(ds.meta(i)["path"]) for i in (2, 3)]
    for p in bad:
        p.write_bytes(b"\x00garbage, not an mp4" * 50)
    with pytest.raises(VideoDecodeError, match=bad[0].name):
        ds[2]
    skip = build_msrvtt(_cfg(root, on_bad_video="skip"), tokenizer, train=True)
    s = skip[2]
    assert int(s["index"]) == 4  # the next readable sample, deterministically
    assert all(torch.equal(s[k], skip[4][k]) for k in SAMPLE_KEYS)
    assert set(skip.skipped) == {str(p) for p in bad}
    assert all("cannot open" in reason for reason in skip.skipped.values())
    assert int(skip[len(skip) - 1]["index"]) == len(skip) - 1


def test_too_short_video_is_a_bad_video(aio_root, tokenizer, tmp_path) -> None:
    root = _copy(aio_root, tmp_path / "d")
    ds = build_msrvtt(_cfg(root), tokenizer, train=True)
    path = ds.meta(0)["path"]
    write_video(path, np.zeros((5, 16, 64, 3), np.uint8))  # segments [0,0], [1,2], [3,4]: no random choice
    with pytest.raises(VideoDecodeError, match="too short"):
        ds[0]


def test_missing_video(aio_root, tokenizer, tmp_path) -> None:
    root = _copy(aio_root, tmp_path / "d")
    vid = _lines(root / "train_list_7k.txt")[0]
    (root / "videos" / f"{vid}.mp4").unlink()
    with pytest.raises(MissingDataFileError, match=f"{vid}.mp4"):
        build_msrvtt(_cfg(root), tokenizer, train=True)
    skip = build_msrvtt(_cfg(root, on_bad_video="skip"), tokenizer, train=True)
    assert list(skip.skipped) == [str(root / "videos" / f"{vid}.mp4")]
    position = skip.video_ids.index(vid)
    assert int(skip[position]["index"]) == (position + 1) % len(skip)


def test_bad_annotation_files_name_the_file(aio_root, tokenizer, tmp_path) -> None:
    root = _copy(aio_root, tmp_path / "d")
    data = json.loads((root / "MSR_VTT.json").read_text())
    (root / "MSR_VTT.json").write_text(json.dumps({"sentences": data["annotations"]}))
    with pytest.raises(DataFormatError, match=r"MSR_VTT\.json.*annotations"):
        build_msrvtt(_cfg(root), tokenizer, train=True)
    (root / "MSR_VTT.json").write_text(json.dumps({"annotations": [{"image_id": "video0"}]}))
    with pytest.raises(DataFormatError, match=r"MSR_VTT\.json.*caption"):
        build_msrvtt(_cfg(root), tokenizer, train=True)
    kept = [a for a in data["annotations"] if a["image_id"] != "video1"]
    (root / "MSR_VTT.json").write_text(json.dumps({"annotations": kept}))
    with pytest.raises(DataFormatError, match=r"train_list_7k\.txt.*no caption"):
        build_msrvtt(_cfg(root), tokenizer, train=True)
    (root / "MSR_VTT.json").write_text(json.dumps(data))
    (root / "train_list_9k.txt").unlink()
    with pytest.raises(MissingDataFileError, match=r"train_list_9k\.txt"):
        build_msrvtt(_cfg(root, split="9k"), tokenizer, train=True)


def test_caption_index_pickle_goes_through_the_safe_loader(aio_root, tokenizer, tmp_path) -> None:
    root = _copy(aio_root, tmp_path / "d")
    pkl = root / "jsfusion_val_caption_idx.pkl"
    table = load_pickle(pkl)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    pkl.write_bytes(pickle.dumps({vid: Evil() for vid in table}))
    with pytest.raises(UnsafePickleError, match=r"jsfusion_val_caption_idx\.pkl"):
        build_msrvtt(_cfg(root), tokenizer, train=False)
    assert not marker.exists()
    vid = sorted(table)[0]
    n_caps = len(_captions(root)[vid])
    pkl.write_bytes(pickle.dumps({**table, vid: n_caps}))  # one past the end
    with pytest.raises(DataFormatError, match=r"jsfusion_val_caption_idx\.pkl.*" + vid):
        build_msrvtt(_cfg(root), tokenizer, train=False)
    pkl.write_bytes(pickle.dumps({k: np.int64(v) for k, v in table.items()}))  # numpy scalars are fine
    assert len(build_msrvtt(_cfg(root), tokenizer, train=False)) == len(table)


def test_config_validation() -> None:
    for bad in ({"num_frames": 0}, {"mlm_prob": 1.5}, {"split": "8k"}, {"on_bad_video": "ignore"},
                {"backend": "cv2"}, {"retrieval_views": 0}, {"max_text_len": 1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AllInOneDataConfig(**bad)
    assert AllInOneDataConfig().resize_size == 268


# ------------------------------------------------------------------------------------- multi-view evaluation


def test_view_average_and_metrics_equal_the_golden_fixture() -> None:
    assert FIXTURE.is_file(), f"golden fixture {FIXTURE} is missing"
    g = torch.load(FIXTURE, weights_only=True)
    out = g["outputs"]
    assert torch.equal(average_similarities(list(out["retrieval_sim_views"])), out["retrieval_sim"])  # bit-exact
    assert torch.allclose(cosine_similarity(out["txt_emb"], out["vid_emb"]), out["itc_sim"], atol=1e-6)
    for sims, t2v, v2t in ((out["retrieval_sim"], out["retrieval_t2v"], out["retrieval_v2t"]),
                           (g["metrics_case"]["sims"], g["metrics_case"]["t2v"], g["metrics_case"]["v2t"])):
        ours = allinone_metrics(sims, ks=(1, 5, 10, 50))
        for prefix, ref in (("t2v_", t2v), ("v2t_", v2t)):
            for k in (1, 5, 10, 50):
                assert ours[f"{prefix}R@{k}"] == pytest.approx(ref[f"R{k}"] / 100)
            assert ours[f"{prefix}MedR"] == pytest.approx(ref["MedR"])
            assert ours[f"{prefix}MeanR"] == pytest.approx(ref["MeanR"])


def test_multiview_metrics_by_hand() -> None:
    s1 = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 0.5]])
    s2 = torch.tensor([[1.0, 0.5, 0.5], [0.0, 0.5, 0.5], [0.5, 1.0, 0.5]])
    avg = average_similarities([s1, s2])
    assert torch.equal(avg, torch.tensor([[1.0, 0.25, 0.5], [0.0, 0.75, 0.5], [0.5, 0.75, 0.5]]))
    m = allinone_metrics(avg, ks=(1, 5))
    # t2v, ties optimistic: ranks 0, 0, 1 (row 2: 0.75 above, 0.5 tied and ignored).
    assert (m["t2v_R@1"], m["t2v_R@5"], m["t2v_MedR"], m["t2v_MeanR"]) == pytest.approx((2 / 3, 1.0, 1.0, 4 / 3))
    # v2t, ties averaged: column 0 → 0, column 1 → 0 + 1/2, column 2 → 0 + 2/2; 0.5 is no R@1 hit.
    assert (m["v2t_R@1"], m["v2t_R@5"], m["v2t_MedR"], m["v2t_MeanR"]) == pytest.approx((1 / 3, 1.0, 1.5, 1.5))
    text = torch.tensor([[3.0, 4.0]])
    video = torch.tensor([[4.0, 3.0], [0.0, 2.0], [0.0, 0.0]])
    assert torch.allclose(cosine_similarity(text, video), torch.tensor([[0.96, 0.8, 0.0]]))


def test_multiview_retrieval_from_embeddings() -> None:
    gen = torch.Generator().manual_seed(0)
    text = torch.randn(6, 8, generator=gen)
    views = [text + 0.8 * torch.randn(6, 8, generator=gen) for _ in range(3)]
    uniform = text + 0.8 * torch.randn(6, 8, generator=gen)
    out = multiview_retrieval(text, views, uniform_video=uniform)
    avg = sum(cosine_similarity(text, v) / 3 for v in views)
    assert torch.equal(multiview_similarity(text, views), multiview_similarity([text] * 3, views))
    expected = allinone_metrics(avg)
    assert {k: out[k] for k in expected} == expected
    single = allinone_metrics(cosine_similarity(text, uniform))
    assert {k: out[f"uniform_{k}"] for k in single} == single
    with pytest.raises(ValueError, match="views"):
        multiview_similarity([text] * 2, views)
