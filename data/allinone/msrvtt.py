"""MSR-VTT read from the raw mp4 videos exactly as All-in-one (MELTR fork) reads it.

Files under ``root`` (reference/datasets.md §3.5, reference/allinone.md §4.1):

* ``MSR_VTT.json``: ``{"annotations": [{"image_id": video id, "caption": str, ...}, ...]}``. Captions are
  grouped by ``image_id`` in file order; videos are ordered by id as strings (pandas ``groupby``), which is
  also the sample order of every split here.
* ``train_list_7k.txt`` / ``train_list_9k.txt`` (``split``; the fork hard-codes 7k), ``val_list_jsfusion.txt``
  (the 1k-A test videos): one video id per line, no header.
* ``jsfusion_val_caption_idx.pkl``: dict video id → index into that video's caption list; the test query.
  Read only through :func:`data.safe_pickle.load_pickle`.
* ``videos/<video id>.mp4``.

Per sample (official behaviour → here):

* text (§4.3): train draws one of the video's captions uniformly each time it is read, test uses the
  JSFusion caption; ``[CLS] pieces [SEP]`` padded to ``max_text_len`` (40), i.e. ``tokenizer(caption,
  padding="max_length", truncation=True, max_length=40)``;
* MLM (§3.2): Hugging Face ``DataCollatorForLanguageModeling`` semantics: each non-special token (not
  [CLS], [SEP] or padding) is chosen with ``mlm_prob`` (0.15); a chosen token becomes [MASK] with 0.8,
  else a uniform id from the whole vocabulary with 0.5, else stays; labels = original id at chosen tokens,
  -100 elsewhere; no "at least one" rule. Masked in train and test, as the official collator does;
* frames (§4.4): decoded at ``decode_size``² (decord ``VideoReader(width=512, height=512)``, aspect ratio
  ignored); T = ``num_frames`` segments with edges ``int(linspace(0, n, T + 1))``; random mode (train, and
  the official "val" split that the retrieval views use) picks ``uniform{edge_k, ..., edge_{k+1} - 2}`` (the
  last frame of a segment is never chosen), uniform mode (official "test") picks
  ``(edge_k + edge_{k+1} - 1) // 2``;
* transform (§4.4, ``backend='a100'`` clip transforms): PIL bilinear resize of the shorter side to
  ``int(1.2 · image_size)`` (268), then one crop of ``image_size`` for all frames (random in train, centred at
  ``round((268 - 224) / 2)`` in test), ``/255``, ImageNet mean/std.

Randomness comes from per-sample generators seeded with :func:`data.batch.sample_seed` (seed, epoch, index)
instead of the global RNG, so a sample is the same whatever the worker layout, and a resumed run sees the
same data. Retrieval views (§5, ``compute_ind_irtr_recall``): :meth:`AllInOneMSRVTT.with_view` gives the test
set sampled in random mode with a per-view seed, or in uniform mode (``view=None``).

Bad videos. The official reader prints the exception and silently substitutes a random other sample (it
also does so for videos whose segments are too short to draw from). Here ``on_bad_video="raise"`` (default)
raises an error naming the file, and ``"skip"`` substitutes the next readable index (deterministic),
records the file in :attr:`AllInOneMSRVTT.skipped` and logs it once. A zero tensor is never returned.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from data.batch import sample_seed
from data.errors import DataFormatError, MissingDataFileError
from data.files import read_json, read_text
from data.masking import IGNORE_INDEX, mask_tokens
from data.safe_pickle import load_pickle
from data.text import PieceFn, SpecialIds, TextEncoder, TextTokenizer
from data.video import Backend, VideoDecodeError, read_sampled_frames

__all__ = ["AllInOneDataConfig", "AllInOneMSRVTT", "build_msrvtt", "SAMPLE_KEYS", "FILES",
           "IMAGENET_MEAN", "IMAGENET_STD", "MLM_IGNORE", "segment_edges", "sample_frame_indices",
           "resize_crop_normalize", "mask_tokens_hf", "load_captions", "read_id_list", "load_caption_index"]

log = logging.getLogger(__name__)

#: Keys of every sample, in this order.
SAMPLE_KEYS = ("video", "text_ids", "text_mask", "mlm_ids", "mlm_labels", "index")
#: File names under ``root`` (the MELTR layout).
FILES = {"json": "MSR_VTT.json", "7k": "train_list_7k.txt", "9k": "train_list_9k.txt",
         "test": "val_list_jsfusion.txt", "caption_idx": "jsfusion_val_caption_idx.pkl", "videos": "videos"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MLM_IGNORE = -100  # Hugging Face label of tokens that are not predicted
_RESIZE_RATIO = 1.2  # shorter side = int(1.2 · crop), 268 for 224


@dataclass
class AllInOneDataConfig:
    """How to read MSR-VTT for All-in-one (defaults: the MELTR fork's ``msrvtt_retrieval_MELTR``)."""

    root: str = "data/msrvtt"  # folder with MSR_VTT.json, the split lists, the caption-index pickle, videos/
    split: Literal["7k", "9k"] = "7k"  # training list: train_list_7k.txt (the fork's) or train_list_9k.txt
    num_frames: int = 3  # T frames per clip, one per segment
    image_size: int = 224  # crop size; the shorter side is first resized to int(1.2 · image_size)
    decode_size: int = 512  # frames are decoded resized to decode_size × decode_size (aspect ratio ignored)
    max_text_len: int = 40  # L, text length with [CLS]/[SEP] and padding
    mlm_prob: float = 0.15  # MLM selection probability
    backend: Backend = "auto"  # video decoder: decord, PyAV ("av"), or decord with PyAV fallback ("auto")
    on_bad_video: Literal["raise", "skip"] = "raise"  # unreadable video: raise, or use the next readable sample
    retrieval_views: int = 3  # random frame samplings averaged by the retrieval evaluation
    seed: int = 0  # base seed of the per-sample generators

    def __post_init__(self) -> None:
        checks = {"num_frames": self.num_frames >= 1, "image_size": self.image_size >= 1,
                  "decode_size": self.decode_size >= 1, "max_text_len": self.max_text_len >= 2,
                  "mlm_prob": 0.0 <= self.mlm_prob <= 1.0, "retrieval_views": self.retrieval_views >= 1,
                  "split": self.split in ("7k", "9k"), "backend": self.backend in ("auto", "decord", "av"),
                  "on_bad_video": self.on_bad_video in ("raise", "skip")}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid AllInOneDataConfig value(s): " + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in bad) + " (num_frames, image_size, decode_size >= 1; "
                "max_text_len >= 2; mlm_prob in [0, 1]; retrieval_views >= 1; split 7k|9k; backend auto|decord|av; "
                "on_bad_video raise|skip)")

    @property
    def resize_size(self) -> int:
        """Shorter side after the PIL resize (268 for 224)."""
        return int(self.image_size * _RESIZE_RATIO)


# ------------------------------------------------------------------------------------------ frames and pixels


def segment_edges(n_frames: int, num_frames: int) -> list[int]:
    """Segment boundaries ``int(linspace(0, n, T' + 1))`` with ``T' = min(T, n)``; segment k is
    ``[edge_k, edge_{k+1} - 1]``."""
    parts = min(num_frames, n_frames)
    return [int(e) for e in np.linspace(0, n_frames, parts + 1).astype(int)]


def sample_frame_indices(n_frames: int, num_frames: int, mode: Literal["random", "uniform"],
                         generator: torch.Generator | None = None) -> list[int]:
    """One frame index per segment, as the official ``sample_frames``.

    Args:
        n_frames: Frames in the video.
        num_frames: T.
        mode: "random": uniform in ``[edge_k, edge_{k+1} - 1)`` (official train and val); "uniform": the middle
            ``(edge_k + edge_{k+1} - 1) // 2`` (official test).
        generator: Source of the random draws (required in random mode).

    Returns:
        T indices, ascending.

    Raises:
        ValueError: The video is too short: fewer than T frames, or (random mode) a segment of fewer than 2
            frames, where the official ``random.choice`` fails on an empty range.
    """
    if n_frames < num_frames:
        # The official sampler would return n_frames < T frames; the model needs exactly T.
        raise ValueError(f"has {n_frames} frames, fewer than num_frames={num_frames}")
    edges = segment_edges(n_frames, num_frames)
    if mode == "uniform":
        return [(lo + hi - 1) // 2 for lo, hi in zip(edges, edges[1:])]
    if mode != "random":
        raise ValueError(f"mode must be 'random' or 'uniform', got {mode!r}")
    if generator is None:
        raise ValueError("random frame sampling needs a generator")
    out = []
    for lo, hi in zip(edges, edges[1:]):
        if hi - 1 <= lo:
            raise ValueError(f"has {n_frames} frames: segment [{lo}, {hi - 1}] of {num_frames} is too short for "
                             "random sampling (the official sampler needs >= 2 frames per segment)")
        out.append(int(torch.randint(lo, hi - 1, (1,), generator=generator)))
    return out


def resize_crop_normalize(frames: np.ndarray, *, resize: int, crop: int, top: int | None = None,
                          left: int | None = None) -> Tensor:
    """The official clip transform: PIL bilinear shorter-side resize, one crop for all frames, ImageNet norm.

    Args:
        frames: uint8 [T, H, W, 3] RGB.
        resize: Target of the shorter side (the longer one is ``int(resize · long / short)``).
        crop: Crop size.
        top, left: Crop corner; both None = centre crop (``int(round((size - crop) / 2))``).

    Returns:
        float32 [T, 3, crop, crop], ``(x / 255 - mean) / std``.
    """
    height, width = frames.shape[1:3]
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_h, new_w = resize, int(resize * width / height)
    if crop > min(new_h, new_w):
        raise ValueError(f"crop {crop} is larger than the resized frame {new_h}x{new_w}")
    if top is None or left is None:
        top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    resized = [np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.Resampling.BILINEAR)) for f in frames]
    clip = np.stack(resized)[:, top:top + crop, left:left + crop]
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------------------------------------- text


def mask_tokens_hf(input_ids: Tensor, attention_mask: Tensor, *, generator: torch.Generator, prob: float,
                   special: SpecialIds) -> tuple[Tensor, Tensor]:
    """MLM corruption with ``DataCollatorForLanguageModeling`` semantics (see the module docstring):
    :func:`data.masking.mask_tokens` without the at-least-one rule, labels in Hugging Face's convention.

    Args:
        input_ids: [L] int64, ``[CLS] pieces [SEP]`` then padding.
        attention_mask: [L], 1 on real tokens (a prefix).
        generator: Source of all draws.
        prob: Selection probability (0.15).
        special: Special ids ([MASK] id and vocabulary size for random ids).

    Returns:
        ``(mlm_ids, mlm_labels)`` [L] int64; labels are the original id at chosen tokens, -100 elsewhere.
    """
    mlm_ids, labels = mask_tokens(input_ids, attention_mask, generator=generator, prob=prob, special=special,
                                  at_least_one=False)
    return mlm_ids, labels.masked_fill(labels == IGNORE_INDEX, MLM_IGNORE)


# ---------------------------------------------------------------------------------------------------- files


def load_captions(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """``MSR_VTT.json`` → video id → captions in file order.

    Raises:
        MissingDataFileError: No such file.
        DataFormatError: Not json, no ``annotations`` list, an entry without ``image_id``/``caption``, or an
            empty caption.
    """
    source = os.fspath(path)
    data = read_json(source)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataFormatError(source, f"expected a COCO-style object with an 'annotations' list, got {keys}")
    captions: dict[str, list[str]] = {}
    for i, item in enumerate(data["annotations"]):
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise DataFormatError(source, f"annotations[{i}] lacks 'image_id' or 'caption': {str(item)[:80]}")
        caption = item["caption"]
        if not isinstance(caption, str) or not caption.strip():
            raise DataFormatError(source, f"annotations[{i}] has an empty caption {caption!r}")
        captions.setdefault(str(item["image_id"]), []).append(caption)
    if not captions:
        raise DataFormatError(source, "'annotations' is empty")
    return {vid: tuple(caps) for vid, caps in captions.items()}


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """A split list: one video id per line, no header; blank lines ignored, duplicates kept once.

    Raises:
        MissingDataFileError: No such file.
        DataFormatError: No id in the file.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise MissingDataFileError(source, "split list not found")
    ids = [line.strip() for line in read_text(source).splitlines() if line.strip()]
    if not ids:
        raise DataFormatError(source, "split list has no video id")
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        # The official reader selects with pandas isin, so a repeated id counts once.
        log.warning("%s: %d repeated video id(s) counted once", source, len(ids) - len(unique))
    return unique


def load_caption_index(path: str | os.PathLike[str], captions: Mapping[str, Sequence[str]],
                       test_ids: Sequence[str]) -> dict[str, int]:
    """The JSFusion caption choice of every test video, checked against the grouped captions.

    Raises:
        DataFormatError: Not a dict, a test video missing, or an index that is not an int in range.
        UnsafePickleError: The pickle names a global outside the safe allow-list.
    """
    source = os.fspath(path)
    table = load_pickle(source)
    if not isinstance(table, dict):
        raise DataFormatError(source, f"expected a dict video id → caption index, got {type(table).__name__}")
    out = {}
    for vid in test_ids:
        if vid not in table:
            raise DataFormatError(source, f"no caption index for test video {vid!r} ({len(table)} entries)")
        idx = table[vid]
        n = len(captions[vid])
        if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)) or not 0 <= int(idx) < n:
            raise DataFormatError(source, f"caption index {idx!r} of video {vid!r} is not an int in [0, {n})")
        out[vid] = int(idx)
    return out


# -------------------------------------------------------------------------------------------------- dataset


class AllInOneMSRVTT(Dataset):
    """MSR-VTT samples for All-in-one (module docstring for the behaviour).

    Args:
        cfg: Files and options.
        tokenizer: BERT tokenizer or ``str -> word-piece ids`` callable (see :class:`data.text.TextEncoder`).
        train: The training list (``cfg.split``) in random mode, else the JSFusion test videos.
        special: Special ids; read from the tokenizer when omitted.

    Raises:
        MissingDataFileError: A file is missing (a video only with ``on_bad_video="raise"``).
        DataFormatError: A file is malformed, or a listed video has no caption in the json.

    Items: dict of :data:`SAMPLE_KEYS`: ``video`` float32 [T, 3, S, S] normalised, ``text_ids``, ``text_mask``,
    ``mlm_ids``, ``mlm_labels`` int64 [L], ``index`` int64 [] (the sample actually returned; differs from the
    requested one only when a bad video was skipped). Metadata: :meth:`meta`.

    Attributes:
        skipped: video path → reason, for files replaced under ``on_bad_video="skip"`` (in this process: a
            DataLoader worker fills its own copy and logs from there).
    """

    def __init__(self, cfg: AllInOneDataConfig, tokenizer: TextTokenizer | PieceFn, *, train: bool,
                 special: SpecialIds | None = None) -> None:
        self.cfg = cfg
        self.train = train
        self.text = TextEncoder(tokenizer, cfg.max_text_len, special)
        root = cfg.root
        captions = load_captions(os.path.join(root, FILES["json"]))
        list_path = os.path.join(root, FILES[cfg.split if train else "test"])
        ids = read_id_list(list_path)
        missing = [v for v in ids if v not in captions]
        if missing:
            raise DataFormatError(list_path, f"{len(missing)} listed video(s) have no caption in "
                                             f"{os.path.join(root, FILES['json'])}, e.g. {missing[:3]}")
        self.video_ids = sorted(ids)  # pandas groupby order
        if train:
            self.captions = [captions[v] for v in self.video_ids]
        else:
            chosen = load_caption_index(os.path.join(root, FILES["caption_idx"]), captions, self.video_ids)
            self.captions = [(captions[v][chosen[v]],) for v in self.video_ids]
        self.paths = [os.path.join(root, FILES["videos"], f"{v}.mp4") for v in self.video_ids]
        self.skipped: dict[str, str] = {}
        absent = [p for p in self.paths if not os.path.isfile(p)]
        if absent and cfg.on_bad_video == "raise":
            raise MissingDataFileError(absent[0], f"video file not found ({len(absent)} of the {len(self.paths)} "
                                                  f"videos listed in {list_path} are missing)")
        for p in absent:
            self._skip(p, "video file not found")
        if len(absent) == len(self.paths):
            raise DataFormatError(os.path.join(root, FILES["videos"]), f"none of the {len(self.paths)} videos "
                                                                       f"listed in {list_path} exists")
        self.epoch = 0
        self.view: int | None = None  # test only: None = uniform frames, k = random frames of view k

    def __len__(self) -> int:
        return len(self.video_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the captions, frames, crops and MLM masks of ``epoch`` (call before each epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def with_view(self, view: int | None) -> AllInOneMSRVTT:
        """A copy of this test set whose frames are those of retrieval view ``view``.

        ``None``: uniform (middle) frames, the official "test" sampling. ``k >= 0``: random frames per segment
        seeded by (seed, k, index), the official "val" sampling that ``compute_ind_irtr_recall`` repeats
        ``retrieval_views`` times. Text and MLM masks do not depend on the view.
        """
        if self.train:
            raise ValueError("retrieval views exist for the test set only (train=False)")
        if view is not None and view < 0:
            raise ValueError(f"view must be None or >= 0, got {view}")
        other = copy.copy(self)  # shallow: the views share the records and the ``skipped`` dict
        other.view = view
        return other

    def meta(self, index: int) -> dict[str, Any]:
        """``video_id``, ``path`` and ``captions`` (train: all of the video's; test: the query) of a sample."""
        return {"video_id": self.video_ids[index], "path": self.paths[index], "captions": list(self.captions[index])}

    def _skip(self, path: str, reason: str) -> None:
        if path not in self.skipped:
            self.skipped[path] = reason
            log.warning("skipping video %s: %s", path, reason)

    def _frames(self, index: int, gen: torch.Generator) -> Tensor:
        cfg = self.cfg
        path = self.paths[index]
        frame_gen: torch.Generator | None = gen
        if not self.train:  # negative "epochs" are reserved for the views, so they never meet set_epoch's
            frame_gen = None if self.view is None else torch.Generator().manual_seed(
                sample_seed(cfg.seed, -1 - self.view, index))

        def checked(n: int) -> list[int]:
            try:
                return sample_frame_indices(n, cfg.num_frames, "uniform" if frame_gen is None else "random",
                                            frame_gen)
            except ValueError as exc:  # too short for the official sampler
                raise VideoDecodeError(path, str(exc)) from exc

        frames, _ = read_sampled_frames(path, checked, cfg.backend, resize_hw=(cfg.decode_size, cfg.decode_size))
        top = left = None
        if self.train:  # RandomCrop: one corner for the whole clip
            span = cfg.resize_size - cfg.image_size + 1  # decode is square, so the resized frame is too
            top, left = (int(v) for v in torch.randint(0, span, (2,), generator=gen))
        return resize_crop_normalize(frames, resize=cfg.resize_size, crop=cfg.image_size, top=top, left=left)

    def _build(self, index: int) -> dict[str, Tensor]:
        gen = torch.Generator().manual_seed(sample_seed(self.cfg.seed, self.epoch, index))
        caps = self.captions[index]
        caption = caps[int(torch.randint(0, len(caps), (1,), generator=gen))] if self.train else caps[0]
        video = self._frames(index, gen)
        text = self.text.encode(caption)
        mlm_ids, mlm_labels = mask_tokens_hf(text["input_ids"], text["attention_mask"], generator=gen,
                                             prob=self.cfg.mlm_prob, special=self.text.special)
        return {"video": video, "text_ids": text["input_ids"], "text_mask": text["attention_mask"],
                "mlm_ids": mlm_ids, "mlm_labels": mlm_labels, "index": torch.tensor(index, dtype=torch.long)}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Sample ``index``; under ``on_bad_video="skip"`` the next readable one if its video is bad."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        for step in range(len(self)):
            current = (index + step) % len(self)
            path = self.paths[current]
            if path in self.skipped:
                continue
            try:
                return self._build(current)
            except DataFormatError as exc:  # VideoDecodeError, or MissingDataFileError if the file went away
                if self.cfg.on_bad_video == "raise" or exc.path != path:
                    raise
                self._skip(path, exc.problem)
        raise DataFormatError(os.path.join(self.cfg.root, FILES["videos"]),
                              f"no readable video left: all {len(self)} were skipped")


def build_msrvtt(cfg: AllInOneDataConfig, tokenizer: TextTokenizer | PieceFn, train: bool) -> AllInOneMSRVTT:
    """The training set (``cfg.split`` list) or the JSFusion test set (uniform frames; see ``with_view``)."""
    return AllInOneMSRVTT(cfg, tokenizer, train=train)
