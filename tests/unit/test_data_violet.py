"""data/violet/datasets.py: frame preprocessing, VQ layout, text, MC prompts, json/pickle checks (reference/violet.md §4)."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.errors import DataFormatError, MissingDataFileError, UnsafePickleError
from data.violet import (QAMultipleChoice, QAOpenEnded, RetrievalTest, VioletDataConfig, build_violet_data,
                         decode_frame, decode_video, load_violet_sources, mc_texts, pad_to_square, read_qa_json,
                         read_retrieval_json, vq_layout)
from data.violet.extract_frames import sample_indices

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared/fixtures/violet/golden.pt"


def _jpeg(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (h, w, 3), dtype=np.uint8)  # no zero: padding stands out


# ---------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("w,h,top,left,out_w,out_h", [
    (5, 2, 1, 0, 5, 4),  # odd difference 3: one row on each side, one pixel short of square
    (6, 2, 2, 0, 6, 6),  # even difference: square
    (2, 7, 0, 2, 6, 7),  # portrait, odd difference 5: columns left and right, one short
    (4, 4, 0, 0, 4, 4),  # square: untouched
])
def test_pad_to_square_matches_hand_built_image(w, h, top, left, out_w, out_h) -> None:
    src = _img(w, h)
    expected = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    expected[top:top + h, left:left + w] = src
    got = np.asarray(pad_to_square(Image.fromarray(src)))
    assert got.shape == (out_h, out_w, 3)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("w,h", [(51, 20), (23, 40), (37, 37), (45, 44), (64, 36)])
def test_decode_frame_is_pil_bilinear_on_the_padded_image(w, h) -> None:
    b64 = _jpeg(_img(w, h, seed=w))
    # Independent path: PIL decode, numpy pad with the official amounts, PIL's own bilinear resize.
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
    d = abs(w - h) // 2
    padded = np.pad(rgb, ((d, d), (0, 0), (0, 0)) if w > h else ((0, 0), (d, d), (0, 0)))
    expected = np.asarray(Image.fromarray(padded).resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(decode_frame(b64, 32), expected)


def test_decode_video_equals_official_str2img_golden() -> None:
    assert GOLDEN.is_file(), f"missing fixture {GOLDEN} (VIOLET golden tensors, see fixtures/violet/README.md)"
    inputs = torch.load(GOLDEN, weights_only=True)["inputs"]
    video = decode_video(inputs["frames_b64"], 96)
    expected = inputs["img_u8"].reshape(-1, 3, 96, 96).float() / 255
    assert video.dtype == torch.float32 and video.shape == (9, 3, 96, 96)
    torch.testing.assert_close(video, expected, rtol=0, atol=0)


def test_vq_layout_prepends_minus_one_per_frame() -> None:
    codes = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], dtype=np.int16)  # T=2, 2x2
    out = vq_layout(codes)
    assert out.dtype == torch.int64
    assert out.tolist() == [-1, 1, 2, 3, 4, -1, 5, 6, 7, 8]


def test_vq_layout_matches_golden_loader_layout() -> None:
    assert GOLDEN.is_file(), f"missing fixture {GOLDEN}"
    vq = torch.load(GOLDEN, weights_only=True)["inputs"]["vq"]  # [3, 3*(1+9)], the official loader output
    codes = vq.reshape(3, 3, 10)[:, :, 1:].reshape(3, 3, 3, 3).numpy().astype(np.int16)
    for b in range(3):
        assert torch.equal(vq_layout(codes[b]), vq[b])


def test_sample_indices_formula_against_exact_arithmetic() -> None:
    assert sample_indices(100, 5) == [16, 33, 50, 66, 83]  # hand: 100·k/6 floored
    for n in range(1, 400):
        for k in (1, 4, 5, 6):
            assert sample_indices(n, k) == [int(Fraction(n * (i + 1), k + 1)) for i in range(k)], (n, k)


# ---------------------------------------------------------------------------------------------- text


def test_mc_texts_both_forms_exact() -> None:
    q, opts = "what does the man do 3 times ?", ["nod", "wave hand", "jump", "clap", "smile"]
    assert mc_texts(q, opts, "official") == [f"what does the man do 3 times ? {o}" for o in opts]
    fork = mc_texts(q, opts, "fork")
    assert fork[1] == "what does the man do 3 times ?Options: nod wave hand jump clap smileAnswer: wave hand"
    assert fork[0].endswith("smileAnswer: nod")
    with pytest.raises(ValueError, match="form"):
        mc_texts(q, opts, "glued")  # type: ignore[arg-type]


def _write_dataset(root: Path, n_frames: int = 2, size_img: int = 64, videos=("v0", "v1")) -> None:
    grid = size_img // 32
    img = {v: [_jpeg(_img(30 + i, 20, seed=i)) for _ in range(n_frames)] for i, v in enumerate(videos)}
    vq = {v: np.full((n_frames, grid, grid), i, dtype=np.int16) for i, v in enumerate(videos)}
    for name, obj in (("img_x.pkl", img), ("x_vq.pkl", vq)):
        with open(root / name, "wb") as f:
            pickle.dump(obj, f, protocol=4)


def _cfg(root: Path, **kw) -> VioletDataConfig:
    base = dict(root=str(root), img_file="img_x.pkl", vq_file="x_vq.pkl", train_file="ann.json", test_file="ann.json",
                size_img=64, n_frames=2)
    return VioletDataConfig(**{**base, **kw})


def test_text_is_the_official_tokenizer_encode(tokenizer, tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    long_caption = "a man is slicing tomatoes in a pan with a knife while a woman is singing with the crowd"
    (tmp_path / "ann.json").write_text(json.dumps({"sentences": [{"video_id": "v0", "caption": "A man is slicing."},
                                                                  {"video_id": "v1", "caption": long_caption}]}))
    ds = build_violet_data(_cfg(tmp_path, size_txt=12), tokenizer, "train")
    for i, text in enumerate(["A man is slicing.", long_caption]):
        ids = tokenizer.encode(text, padding="max_length", max_length=12, truncation=True)  # official str2txt
        assert ds[i]["text_ids"].tolist() == ids
        assert ds[i]["text_mask"].tolist() == [int(t != 0) for t in ids]


# ---------------------------------------------------------------------------------------------- datasets


def test_oe_and_mc_sample_shapes(tokenizer, tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    opts = {f"option_{k}": f"option {k}" for k in range(5)}
    (tmp_path / "ann.json").write_text(json.dumps({
        "train": [{"video": "v0", "question": "what is it ?", "answer": 3, **opts}],
        "test": [{"video": "v1", "question": "who is it ?", "answer": -1, **opts},
                 {"video": "v0", "question": "why ?", "answer": 0, **opts}]}))
    oe = build_violet_data(_cfg(tmp_path, task="qa_oe", size_vocab=5, size_txt=10), tokenizer, "test")
    assert isinstance(oe, QAOpenEnded) and len(oe) == 2
    s = oe[0]
    assert {k: tuple(v.shape) for k, v in s.items()} == {"video": (2, 3, 64, 64), "vq": (10,), "text_ids": (10,),
                                                          "text_mask": (10,), "answer": (), "index": ()}
    assert s["video"].dtype == torch.float32 and s["answer"].item() == -1 and s["vq"].tolist()[:2] == [-1, 1]
    assert all(v.dtype == torch.int64 for k, v in s.items() if k != "video")
    mc = build_violet_data(_cfg(tmp_path, task="qa_mc", size_txt=16, mc_text="fork"), tokenizer, "train")
    assert isinstance(mc, QAMultipleChoice)
    s = mc[0]
    assert s["text_ids"].shape == (5, 16) and s["text_mask"].shape == (5, 16) and s["answer"].item() == 3
    expected = tokenizer.encode("what is it ?Options: option 0 option 1 option 2 option 3 option 4Answer: option 2",
                                padding="max_length", max_length=16, truncation=True)
    assert s["text_ids"][2].tolist() == expected


def test_retrieval_test_views(tokenizer, tmp_path: Path) -> None:
    _write_dataset(tmp_path, videos=("a", "b"))
    (tmp_path / "ann.json").write_text(json.dumps({"test": [
        {"video": "b", "caption": "one"}, {"video": "a", "caption": "two"}, {"video": "b", "caption": "three"}]}))
    ds = build_violet_data(_cfg(tmp_path), tokenizer, "test")
    assert isinstance(ds, RetrievalTest) and len(ds) == 3
    assert ds.video_ids == ["b", "a"] and ds.captions == ["one", "two", "three"]
    assert ds.text_to_video.tolist() == [0, 1, 0]
    assert torch.equal(ds.videos[1]["video"], ds[1]["video"]) and set(ds.videos[1]) == {"video", "vq", "index"}
    assert torch.equal(ds.texts[2]["text_ids"], ds[2]["text_ids"]) and ds.texts[2]["index"].item() == 2
    with pytest.raises(IndexError):
        ds.videos[2]


# ---------------------------------------------------------------------------------------------- errors


def test_frame_errors_name_file_and_video(tokenizer, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"img\.pkl: video 'v7' frame 1: bad base64"):
        decode_frame("abc", 32, source="img.pkl", video_id="v7", frame=1)
    png = io.BytesIO()
    Image.fromarray(_img(4, 4)).save(png, format="PNG")
    for raw in (b"not an image at all", png.getvalue()):
        with pytest.raises(DataFormatError, match=r"img\.pkl: video 'v7' frame 0: not a decodable JPEG"):
            decode_frame(base64.b64encode(raw).decode(), 32, source="img.pkl", video_id="v7")
    _write_dataset(tmp_path)
    (tmp_path / "ann.json").write_text(json.dumps({"sentences": [{"video_id": "v9", "caption": "x"}]}))
    with pytest.raises(DataFormatError, match=r"img_x\.pkl: video id 'v9' is not in the frame pickle"):
        build_violet_data(_cfg(tmp_path), tokenizer, "train")


@pytest.mark.parametrize("codes,match", [
    (np.zeros((2, 3, 3), np.int16), r"VQ shape \(2, 3, 3\), expected \(2, 2, 2\)"),
    (np.full((2, 2, 2), 8192, np.int16), r"VQ codes span \[8192, 8192\], outside \[0, 8192\)"),
    (np.zeros((2, 2, 2), np.float32), "expected an integer numpy array, got float32"),
])
def test_vq_errors_name_file_and_video(tokenizer, tmp_path: Path, codes, match) -> None:
    _write_dataset(tmp_path)
    with open(tmp_path / "x_vq.pkl", "wb") as f:
        pickle.dump({"v0": codes}, f)
    (tmp_path / "ann.json").write_text(json.dumps({"sentences": [{"video_id": "v0", "caption": "x"}]}))
    with pytest.raises(DataFormatError, match=r"x_vq\.pkl: video 'v0': " + match):
        build_violet_data(_cfg(tmp_path), tokenizer, "train")


def test_frame_count_must_match(tokenizer, tmp_path: Path) -> None:
    _write_dataset(tmp_path, n_frames=3)
    (tmp_path / "ann.json").write_text(json.dumps({"sentences": [{"video_id": "v0", "caption": "x"}]}))
    with pytest.raises(DataFormatError, match=r"img_x\.pkl: video 'v0': expected a list of 2 base64 frames.*got 3"):
        build_violet_data(_cfg(tmp_path), tokenizer, "train")


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    with open(tmp_path / "img_x.pkl", "wb") as f:
        pickle.dump({"v0": _Boom()}, f)
    with pytest.raises(UnsafePickleError, match=r"img_x\.pkl.*(posix|os|nt)\.system"):
        load_violet_sources(_cfg(tmp_path))
    with pytest.raises(MissingDataFileError, match="absent.pkl"):
        load_violet_sources(_cfg(tmp_path, img_file="absent.pkl"))


@pytest.mark.parametrize("item,match", [
    ({"video": "v0", "question": "q", "answer": 5}, r"test\[0\]: 'answer' must be an int in \[-1, 5\)"),
    ({"video": "v0", "question": "q", "answer": True}, r"test\[0\]: 'answer' must be an int"),
    ({"video": "v0", "question": "", "answer": 1}, r"test\[0\]: 'question' must be a non-empty string"),
    ({"question": "q", "answer": 1}, r"test\[0\] lacks key 'video'"),
])
def test_qa_json_errors_name_file_and_item(tmp_path: Path, item, match) -> None:
    path = tmp_path / "txt_qa.json"
    path.write_text(json.dumps({"train": [item], "test": [item]}))
    with pytest.raises(DataFormatError, match=r"txt_qa\.json: " + match):
        read_qa_json(path, "test", "oe", n_answers=5)


def test_qa_json_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "txt_qa.json"
    item = {"video": "v", "question": "q", "answer": 0, **{f"option_{k}": "o" for k in range(4)}}
    path.write_text(json.dumps({"train": [item], "vocab": ["a", "b"]}))
    with pytest.raises(DataFormatError, match=r"no list 'test'"):
        read_qa_json(path, "test", "oe", n_answers=2)
    with pytest.raises(DataFormatError, match=r"'vocab' has 2 answers but size_vocab is 3"):
        read_qa_json(path, "train", "oe", n_answers=3)
    with pytest.raises(DataFormatError, match=r"train\[0\] lacks key 'option_4'"):
        read_qa_json(path, "train", "mc", n_answers=5)
    with pytest.raises(MissingDataFileError, match="nothing.json"):
        read_qa_json(tmp_path / "nothing.json", "train", "oe", n_answers=2)


def test_retrieval_json_layouts_and_errors(tmp_path: Path) -> None:
    fork, official = tmp_path / "test.json", tmp_path / "txt_msrvtt-retrieval.json"
    fork.write_text(json.dumps({"sentences": [{"video_id": "video9", "caption": "a dog", "sen_id": 3}]}))
    official.write_text(json.dumps({"train": [{"video": "v", "caption": "x"}], "test": [{"video": "video9",
                                                                                          "caption": "a dog"}]}))
    assert read_retrieval_json(fork) == read_retrieval_json(official, "test") == [("video9", "a dog")]
    fork.write_text(json.dumps({"sentences": [{"video_id": "video9"}]}))
    with pytest.raises(DataFormatError, match=r"test\.json: sentences\[0\] lacks key 'caption'"):
        read_retrieval_json(fork)
    fork.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"test\.json: not valid json"):
        read_retrieval_json(fork)


@pytest.mark.parametrize("kw,match", [
    ({"task": "qa"}, "task"), ({"size_img": 100}, "multiple of 32"), ({"size_txt": 1}, "size_txt"),
    ({"mc_text": "glued"}, "mc_text"), ({"img_file": ""}, "img_file"), ({"n_frames": 0}, "n_frames"),
])
def test_config_validation(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        VioletDataConfig(root="/x", **kw)
