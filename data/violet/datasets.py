"""VIOLET readers: base64 JPEG frame pickles, DALL-E VQ pickles, retrieval and QA json, read as the official code does.

Facts followed (reference/violet.md §4, §5; reference/datasets.md §3.4, §4.2, §5.2):

* ``img_<ds>.pkl``: dict video id → list of base64 strings, one JPEG per frame (``tools/extract_video-frame.py``,
  our :mod:`data.violet.extract_frames`). Every stored frame is used, so T = the list length (5 downstream).
* Frame preprocessing (official ``Dataset_Base.str2img``): decode, convert to RGB; pad with black to a square,
  ``(w - h) // 2`` rows on top and bottom when ``w > h``, else ``(h - w) // 2`` columns left and right, so an odd
  difference leaves the image **one pixel short of square**; resize to S x S with PIL bilinear (the aspect ratio
  is forced); ``ToTensor`` to [0, 1]. No normalisation (the model normalises) and no augmentation.
* ``<ds>_vq.pkl``: dict video id → int16 [T, h, w] DALL-E codes (h = w = S / 32; 7 at 224 px). The loader lays
  them out per frame as ``[-1] + codes.flatten()``, aligned with the T·(1 + h·w) visual tokens (the -1 sits on
  each frame's CLS slot).
* Text (``str2txt``): ``BertTokenizerFast.encode(s, padding='max_length', max_length=size_txt,
  truncation=True)``: ``[CLS] … [SEP]`` then 0, mask = ``id != 0``, no token types. size_txt is 25 for
  retrieval, MSVD-QA and TGIF-Frame, 40 for TGIF-Action/Transition (fork ``args/*.json``).
* Retrieval json: the fork's ``{"sentences": [{"video_id", "caption"}, ...]}`` (``train_7k.json``,
  ``train_9k.json``, ``test.json``: the whole file is the split) or the official
  ``txt_<task>.json`` ``{"train"|"val"|"test": [{"video", "caption"}]}`` (the split key is read). One sample per
  caption; training sees every caption.
* QA json ``txt_<task>.json``: ``{"train", "test"[, "val"][, "vocab"]}``; OE items ``{video, question,
  answer: int}`` (-1 = answer outside the vocabulary: ignored by the loss, always wrong at test), MC items
  ``{video, question, option_0 … option_4, answer: int}``.
* MC text per option (``mc_text``): ``"official"`` = VIOLET's ``question + ' ' + option_i`` (default, the
  paper's form); ``"fork"`` = MELTR's ``question + 'Options: ' + ' '.join(options) + 'Answer: ' + option_i``,
  with no space before ``Options:`` and ``Answer:`` (words are glued, as in the fork).

Per-sample dicts (stack with :func:`data.batch.collate`):

=============  ==================  =======  ===================================================================
key            shape               dtype    meaning
=============  ==================  =======  ===================================================================
video          [T, 3, S, S]        float32  frames in [0, 1], padded to square and resized
vq             [T·(1 + h·w)]       int64    ``[-1] + codes`` per frame (MVM targets before masking)
text_ids       [L] (MC: [O, L])    int64    ``[CLS] … [SEP]`` then 0
text_mask      [L] (MC: [O, L])    int64    ``text_ids != 0``
answer         []                  int64    QA only: answer id (OE, -1 = out of vocabulary) or option index (MC)
index          []                  int64    position of the sample in its dataset
=============  ==================  =======  ===================================================================

Evaluation of retrieval scores every text against every video: :class:`RetrievalTest` also exposes the unique
videos (:attr:`RetrievalTest.videos`, samples ``video, vq, index``), the captions (:attr:`RetrievalTest.texts`,
samples ``text_ids, text_mask, index``) and :attr:`RetrievalTest.text_to_video` (caption → video column). The
official evaluation keys its features by video id, so only the last caption of a video survives; with the 1k-A
test file (one caption per video) both are the same.

Files are checked when a dataset is built (ids present, frame counts, VQ shape/range, json structure) and each
error names the file and the video id or json item; a frame's base64 and JPEG are checked when it is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from data.batch import collate
from data.errors import DataFormatError
from data.files import read_json
from data.safe_pickle import load_pickle
from data.text import PieceFn, TextEncoder, TextTokenizer

__all__ = ["VioletDataConfig", "VioletSources", "load_violet_sources", "build_violet_data", "RetrievalTrain",
           "RetrievalTest", "QAOpenEnded", "QAMultipleChoice", "pad_to_square", "decode_frame", "decode_video",
           "vq_layout", "mc_texts", "read_retrieval_json", "read_qa_json", "QAItem", "PATCH"]

log = logging.getLogger(__name__)

#: Video Swin's total downsampling: an S-pixel frame gives an (S/32) x (S/32) patch grid and VQ grid.
PATCH = 32
_TASKS = ("retrieval", "qa_oe", "qa_mc")
_MC_TEXT = ("official", "fork")


@dataclass
class VioletDataConfig:
    """Where the VIOLET files are and how to read them (defaults: MSR-VTT 9k retrieval, fork ``args/*.json``)."""

    root: str  # folder with the files (MELTR layout: _data/<ds>/)
    task: Literal["retrieval", "qa_oe", "qa_mc"] = "retrieval"  # which datasets build_violet_data returns
    img_file: str = "img_msrvtt.pkl"  # frame pickle inside root (img_tgif.pkl, img_msvd.pkl)
    vq_file: str = "msrvtt_vq.pkl"  # DALL-E VQ pickle inside root (tgif_vq.pkl, msvd_vq.pkl)
    train_file: str = "train_9k.json"  # train annotations (train_7k.json; QA: txt_<task>.json)
    test_file: str = "test.json"  # test annotations (QA: the same txt_<task>.json)
    train_split: str = "train"  # list read from a txt_<task>.json layout for training
    test_split: str = "test"  # list read for evaluation (the fork reads "test"; "val" where a json has one)
    size_img: int = 224  # S: frames are padded to square and resized to S x S (multiple of 32)
    size_txt: int = 25  # L: 25 retrieval / MSVD-QA / TGIF-Frame, 40 TGIF-Action / Transition
    n_frames: int = 5  # T: frames per video in both pickles (5 downstream; the model allows at most 6)
    vq_vocab: int = 8192  # DALL-E codebook size; VQ codes must lie in [0, vq_vocab)
    size_vocab: int = 1000  # qa_oe: answers lie in [-1, size_vocab) (1000 MSVD-QA, 1540 TGIF-Frame)
    n_options: int = 5  # qa_mc: options per question (option_0 … option_{n-1})
    mc_text: Literal["official", "fork"] = "official"  # MC prompt: VIOLET's "q option" or the fork's glued form

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {self.task!r}")
        if self.mc_text not in _MC_TEXT:
            raise ValueError(f"mc_text must be one of {_MC_TEXT}, got {self.mc_text!r}")
        for name in ("root", "img_file", "vq_file", "train_file", "test_file", "train_split", "test_split"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if self.size_img < PATCH or self.size_img % PATCH:
            raise ValueError(f"size_img must be a positive multiple of {PATCH}, got {self.size_img}")
        checks = {"size_txt": (self.size_txt, 2), "n_frames": (self.n_frames, 1), "vq_vocab": (self.vq_vocab, 1),
                  "size_vocab": (self.size_vocab, 1), "n_options": (self.n_options, 2)}
        for name, (value, low) in checks.items():
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")

    @property
    def grid(self) -> int:
        """h = w: patches (and VQ codes) per side of a frame."""
        return self.size_img // PATCH


# ---------------------------------------------------------------------------------------------- frames


def pad_to_square(img: Image.Image) -> Image.Image:
    """Pad with black to (almost) a square, as torchvision ``Pad([0, (w-h)//2])`` / ``Pad([(h-w)//2, 0])``.

    An odd difference of sides leaves the result one pixel short of square (e.g. 51x20 → 51x50).
    """
    w, h = img.size
    pad_x, pad_y = ((0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    if pad_x == pad_y == 0:
        return img
    out = Image.new(img.mode, (w + 2 * pad_x, h + 2 * pad_y))  # zero-filled: black
    out.paste(img, (pad_x, pad_y))
    return out


def decode_frame(b64: str | bytes, size: int, *, source: str = "<frame>", video_id: str = "?", frame: int = 0
                 ) -> np.ndarray:
    """One stored frame → uint8 [S, S, 3]: base64 → JPEG → RGB → pad to square → PIL bilinear resize.

    Args:
        b64: The base64 text of a JPEG (str, or bytes as some pickles store it).
        size: S.
        source, video_id, frame: Named in errors.

    Raises:
        DataFormatError: Bad base64, or the bytes are not a decodable JPEG.
    """
    where = f"video {video_id!r} frame {frame}"
    if not isinstance(b64, (str, bytes)):
        raise DataFormatError(source, f"{where}: expected a base64 string, got {type(b64).__name__}")
    try:
        raw = base64.b64decode(b64)  # lenient like the official b64decode: non-alphabet characters are skipped
    except (binascii.Error, ValueError) as exc:
        raise DataFormatError(source, f"{where}: bad base64 ({exc})") from exc
    try:
        # formats=("JPEG",): the official tool writes JPEG only; no other PIL parser sees foreign bytes.
        with Image.open(io.BytesIO(raw), formats=("JPEG",)) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(source, f"{where}: not a decodable JPEG ({exc})") from exc
    return np.asarray(pad_to_square(rgb).resize((size, size), Image.Resampling.BILINEAR))


def decode_video(frames: Sequence[str | bytes], size: int, *, source: str = "<frames>", video_id: str = "?"
                 ) -> Tensor:
    """All stored frames of a video → float32 [T, 3, S, S] in [0, 1] (``ToTensor`` of each frame)."""
    stack = np.stack([decode_frame(f, size, source=source, video_id=video_id, frame=t) for t, f in enumerate(frames)])
    # ToTensor: HWC uint8 → CHW float32 / 255 (IEEE division: the same k/255 values as torch's div), done in
    # numpy because torch's uint8 → float conversion of the permuted view is several times slower on CPU.
    chw = stack.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    chw /= np.float32(255)
    return torch.from_numpy(chw)


def vq_layout(codes: np.ndarray) -> Tensor:
    """[T, h, w] VQ codes → int64 [T·(1 + h·w)]: per frame ``[-1] + codes.flatten()`` (row-major h, w)."""
    per_frame = torch.from_numpy(np.asarray(codes, dtype=np.int64)).flatten(1)
    cls_slot = torch.full((per_frame.shape[0], 1), -1, dtype=torch.long)
    return torch.cat([cls_slot, per_frame], dim=1).flatten()


# ---------------------------------------------------------------------------------------------- pickles


@dataclass
class VioletSources:
    """The two pickles of a dataset, loaded once and shared by its train and test datasets."""

    img: Mapping[Any, Any]  # video id → list of base64 JPEG strings
    vq: Mapping[Any, Any]  # video id → int [T, h, w] codes
    img_path: str  # for error messages
    vq_path: str


def _load_dict(path: str, what: str) -> Mapping[Any, Any]:
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected a dict video id → {what}, got {type(obj).__name__}")
    return obj


def load_violet_sources(cfg: VioletDataConfig) -> VioletSources:
    """Load ``img_file`` and ``vq_file`` from ``cfg.root`` through :func:`data.safe_pickle.load_pickle`.

    Raises:
        MissingDataFileError: A file does not exist.
        UnsafePickleError / DataFormatError: A pickle is unsafe, corrupt, or not a dict.
    """
    img_path = os.path.join(cfg.root, cfg.img_file)
    vq_path = os.path.join(cfg.root, cfg.vq_file)
    return VioletSources(img=_load_dict(img_path, "list of base64 JPEG frames"),
                         vq=_load_dict(vq_path, "[T, h, w] int VQ codes"), img_path=img_path, vq_path=vq_path)


def _check_videos(sources: VioletSources, video_ids: Sequence[str], cfg: VioletDataConfig) -> None:
    """Every video a split uses has T base64 frames and a [T, h, w] VQ array with codes in range."""
    grid = cfg.grid
    for vid in dict.fromkeys(video_ids):
        frames = sources.img.get(vid)
        if frames is None:
            raise DataFormatError(sources.img_path, f"video id {vid!r} is not in the frame pickle "
                                                    f"({len(sources.img)} videos)")
        if not isinstance(frames, (list, tuple)) or len(frames) != cfg.n_frames:
            got = f"{len(frames)} frames" if isinstance(frames, (list, tuple)) else type(frames).__name__
            raise DataFormatError(sources.img_path, f"video {vid!r}: expected a list of {cfg.n_frames} base64 frames "
                                                    f"(n_frames), got {got}")
        codes = sources.vq.get(vid)
        if codes is None:
            raise DataFormatError(sources.vq_path, f"video id {vid!r} is not in the VQ pickle "
                                                   f"({len(sources.vq)} videos)")
        if not isinstance(codes, np.ndarray) or not np.issubdtype(codes.dtype, np.integer):
            kind = codes.dtype if isinstance(codes, np.ndarray) else type(codes).__name__
            raise DataFormatError(sources.vq_path, f"video {vid!r}: expected an integer numpy array, got {kind}")
        if codes.shape != (cfg.n_frames, grid, grid):
            raise DataFormatError(sources.vq_path, f"video {vid!r}: VQ shape {tuple(codes.shape)}, expected "
                                                   f"{(cfg.n_frames, grid, grid)} (n_frames, size_img/32, size_img/32)")
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= cfg.vq_vocab):
            raise DataFormatError(sources.vq_path, f"video {vid!r}: VQ codes span [{int(codes.min())}, "
                                                   f"{int(codes.max())}], outside [0, {cfg.vq_vocab})")


# ---------------------------------------------------------------------------------------------- json


def _split_list(data: Any, path: str, split: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(split), list):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataFormatError(path, f"no list {split!r} (top level: {keys})")
    if not data[split]:
        raise DataFormatError(path, f"list {split!r} is empty")
    return data[split]


def _text_field(item: Any, key: str, path: str, where: str) -> str:
    if not isinstance(item, dict) or key not in item:
        raise DataFormatError(path, f"{where} lacks key {key!r}")
    value = item[key]
    # An empty text gives [CLS][SEP], on which the official MTM masking re-draws forever.
    if not isinstance(value, str) or not value.strip():
        raise DataFormatError(path, f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _video_field(item: Any, key: str, path: str, where: str) -> str:
    if not isinstance(item, dict) or key not in item:
        raise DataFormatError(path, f"{where} lacks key {key!r}")
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise DataFormatError(path, f"{where}: {key!r} must be a video id string, got {value!r}")
    return str(value)


def read_retrieval_json(path: str | os.PathLike[str], split: str = "train") -> list[tuple[str, str]]:
    """(video id, caption) per caption, in file order.

    Args:
        path: The fork's ``{"sentences": [...]}`` (the whole file is the split; ``split`` is not used) or the
            official ``txt_<task>.json`` (the ``split`` list is read).
        split: Key of the official layout.

    Raises:
        MissingDataFileError / DataFormatError: Missing file, bad json, missing keys, empty captions.
    """
    source = os.fspath(path)
    data = read_json(source)
    if isinstance(data, dict) and "sentences" in data:
        items, vkey, name = _split_list(data, source, "sentences"), "video_id", "sentences"
    else:
        items, vkey, name = _split_list(data, source, split), "video", split
    return [(_video_field(it, vkey, source, f"{name}[{i}]"), _text_field(it, "caption", source, f"{name}[{i}]"))
            for i, it in enumerate(items)]


@dataclass(frozen=True)
class QAItem:
    """One question of a QA json."""

    video: str  # key into both pickles
    question: str
    options: tuple[str, ...]  # MC: option_0 … option_{O-1}; OE: ()
    answer: int  # OE: vocabulary index or -1 (out of vocabulary); MC: option index


def read_qa_json(path: str | os.PathLike[str], split: str, kind: Literal["oe", "mc"], *, n_answers: int
                 ) -> tuple[list[QAItem], list[str] | None]:
    """Items of one split of a ``txt_<task>.json`` and its ``vocab`` (None when absent).

    Args:
        path: The QA json.
        split: ``"train"``, ``"test"`` or ``"val"``.
        kind: ``"oe"`` (``answer`` in [-1, n_answers)) or ``"mc"`` (``option_0..option_{n_answers-1}``,
            ``answer`` in [0, n_answers)).
        n_answers: OE vocabulary size (``size_vocab``) or MC option count.

    Raises:
        MissingDataFileError / DataFormatError: Missing file, bad json, missing keys, a non-integer or
            out-of-range answer, empty text, or a ``vocab`` whose length is not ``n_answers`` (OE).
    """
    source = os.fspath(path)
    data = read_json(source)
    items = _split_list(data, source, split)
    vocab = data.get("vocab")
    if vocab is not None and (not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab)):
        raise DataFormatError(source, "'vocab' must be a list of answer strings")
    if kind == "oe" and vocab is not None and len(vocab) != n_answers:
        raise DataFormatError(source, f"'vocab' has {len(vocab)} answers but size_vocab is {n_answers}")
    low = -1 if kind == "oe" else 0
    out = []
    for i, it in enumerate(items):
        where = f"{split}[{i}]"
        video = _video_field(it, "video", source, where)
        question = _text_field(it, "question", source, where)
        options = tuple(_text_field(it, f"option_{k}", source, where) for k in range(n_answers)) if kind == "mc" else ()
        answer = it.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, int) or not low <= answer < n_answers:
            raise DataFormatError(source, f"{where}: 'answer' must be an int in [{low}, {n_answers}), got {answer!r}")
        out.append(QAItem(video, question, options, answer))
    return out, vocab


def mc_texts(question: str, options: Sequence[str], form: Literal["official", "fork"] = "official") -> list[str]:
    """The text fed with each option.

    ``"official"``: ``question + ' ' + option``; ``"fork"``: ``question + 'Options: ' + ' '.join(options) +
    'Answer: ' + option`` (no space before ``Options:``/``Answer:``, as the fork writes it).
    """
    if form == "official":
        return [f"{question} {opt}" for opt in options]
    if form == "fork":
        listing = question + "Options: " + " ".join(options) + "Answer: "
        return [listing + opt for opt in options]
    raise ValueError(f"form must be one of {_MC_TEXT}, got {form!r}")


# ---------------------------------------------------------------------------------------------- datasets


class _VioletDataset(Dataset):
    """Shared plumbing: frames, VQ and text of the samples; subclasses define the records."""

    def __init__(self, cfg: VioletDataConfig, tokenizer: TextTokenizer | PieceFn, sources: VioletSources,
                 video_ids: Sequence[str]) -> None:
        _check_videos(sources, video_ids, cfg)
        self.cfg = cfg
        self.sources = sources
        self.text = TextEncoder(tokenizer, cfg.size_txt)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Nothing here is random; kept so every dataset takes the trainer's epoch announcement."""
        self.epoch = int(epoch)

    def _visual(self, video_id: str) -> dict[str, Tensor]:
        video = decode_video(self.sources.img[video_id], self.cfg.size_img, source=self.sources.img_path,
                             video_id=video_id)
        return {"video": video, "vq": vq_layout(self.sources.vq[video_id])}

    def _text(self, text: str) -> dict[str, Tensor]:
        ids = self.text.encode(text)["input_ids"]
        return {"text_ids": ids, "text_mask": (ids != 0).long()}  # official mask: id != 0

    @staticmethod
    def _check_index(index: int, n: int) -> None:
        if not 0 <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")


class RetrievalTrain(_VioletDataset):
    """One sample per caption: ``video, vq, text_ids, text_mask, index``.

    Args:
        cfg: Data config (``task="retrieval"``).
        tokenizer: BERT tokenizer or ``str -> ids`` callable.
        sources: The loaded pickles.
        annotation: The retrieval json (fork or official layout).
        split: Key read from an official-layout json.
    """

    def __init__(self, cfg: VioletDataConfig, tokenizer: TextTokenizer | PieceFn, sources: VioletSources,
                 annotation: str | os.PathLike[str], split: str) -> None:
        self.pairs = read_retrieval_json(annotation, split)
        super().__init__(cfg, tokenizer, sources, [v for v, _ in self.pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def meta(self, index: int) -> dict[str, Any]:
        """``video_id`` and ``caption`` of sample ``index``."""
        self._check_index(index, len(self))
        vid, caption = self.pairs[index]
        return {"video_id": vid, "caption": caption}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        self._check_index(index, len(self))
        vid, caption = self.pairs[index]
        return {**self._visual(vid), **self._text(caption), "index": torch.tensor(index, dtype=torch.long)}


class _View(Dataset):
    """A read-only list of samples built by a function (the video and text sides of :class:`RetrievalTest`)."""

    def __init__(self, n: int, build: Callable[[int], dict[str, Tensor]]) -> None:
        self._n = n
        self._build = build

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        _VioletDataset._check_index(index, self._n)
        return {**self._build(index), "index": torch.tensor(index, dtype=torch.long)}


class RetrievalTest(RetrievalTrain):
    """Retrieval evaluation set: per-caption samples as in training, plus the two sides scored pairwise.

    Attributes:
        video_ids: Unique video ids in first-appearance order (the columns of the score matrix).
        captions: Every caption in file order (the rows).
        text_to_video: int64 [n_text], the column of each caption's video.
        videos: Dataset of ``video, vq, index`` over ``video_ids``.
        texts: Dataset of ``text_ids, text_mask, index`` over ``captions``.
    """

    def __init__(self, cfg: VioletDataConfig, tokenizer: TextTokenizer | PieceFn, sources: VioletSources,
                 annotation: str | os.PathLike[str], split: str) -> None:
        super().__init__(cfg, tokenizer, sources, annotation, split)
        self.video_ids = list(dict.fromkeys(v for v, _ in self.pairs))
        column = {v: j for j, v in enumerate(self.video_ids)}
        self.captions = [c for _, c in self.pairs]
        self.text_to_video = torch.tensor([column[v] for v, _ in self.pairs], dtype=torch.long)
        # Bound methods, not lambdas: the views must pickle for DataLoader workers under spawn/forkserver.
        self.videos = _View(len(self.video_ids), self._video_sample)
        self.texts = _View(len(self.captions), self._caption_sample)

    def _video_sample(self, j: int) -> dict[str, Tensor]:
        return self._visual(self.video_ids[j])

    def _caption_sample(self, i: int) -> dict[str, Tensor]:
        return self._text(self.captions[i])


class QAOpenEnded(_VioletDataset):
    """Open-ended QA: ``video, vq, text_ids, text_mask`` (the question), ``answer`` (vocabulary id or -1), ``index``.

    Args:
        cfg: Data config (``task="qa_oe"``; ``size_vocab`` bounds the answers).
        tokenizer: BERT tokenizer or ``str -> ids`` callable.
        sources: The loaded pickles.
        annotation: ``txt_<task>.json``.
        split: List to read.

    Attributes:
        vocab: The json's answer strings, or None when it has no ``vocab``.
    """

    kind: Literal["oe", "mc"] = "oe"

    def __init__(self, cfg: VioletDataConfig, tokenizer: TextTokenizer | PieceFn, sources: VioletSources,
                 annotation: str | os.PathLike[str], split: str) -> None:
        n_answers = cfg.size_vocab if self.kind == "oe" else cfg.n_options
        self.items, self.vocab = read_qa_json(annotation, split, self.kind, n_answers=n_answers)
        super().__init__(cfg, tokenizer, sources, [it.video for it in self.items])
        n_oov = sum(it.answer < 0 for it in self.items)
        if n_oov:
            log.info("%s[%s]: %d of %d answers are out of the vocabulary (-1)", os.fspath(annotation), split, n_oov,
                     len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def meta(self, index: int) -> dict[str, Any]:
        """``video_id``, ``question``, ``options`` (MC) and ``answer`` of sample ``index``."""
        self._check_index(index, len(self))
        it = self.items[index]
        return {"video_id": it.video, "question": it.question, "options": list(it.options), "answer": it.answer}

    def _question(self, item: QAItem) -> dict[str, Tensor]:
        return self._text(item.question)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        self._check_index(index, len(self))
        it = self.items[index]
        return {**self._visual(it.video), **self._question(it), "answer": torch.tensor(it.answer, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long)}


class QAMultipleChoice(QAOpenEnded):
    """Multiple-choice QA: as :class:`QAOpenEnded` with ``text_ids``/``text_mask`` [O, L], one row per option
    (text per ``cfg.mc_text``), and ``answer`` the correct option index."""

    kind = "mc"

    def _question(self, item: QAItem) -> dict[str, Tensor]:
        rows = [self._text(t) for t in mc_texts(item.question, item.options, self.cfg.mc_text)]
        return collate(rows)


def build_violet_data(cfg: VioletDataConfig, tokenizer: TextTokenizer | PieceFn, split: Literal["train", "test"],
                      sources: VioletSources | None = None) -> Dataset:
    """The dataset of ``cfg.task`` for ``split``.

    Args:
        cfg: Data config.
        tokenizer: bert-base-uncased (:func:`data.text.load_tokenizer`) or a ``str -> ids`` callable.
        split: ``"train"`` (``train_file``/``train_split``) or ``"test"`` (``test_file``/``test_split``).
        sources: Pickles already loaded (share one :func:`load_violet_sources` between splits); loaded when None.

    Returns:
        :class:`RetrievalTrain` / :class:`RetrievalTest` / :class:`QAOpenEnded` / :class:`QAMultipleChoice`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    sources = sources if sources is not None else load_violet_sources(cfg)
    train = split == "train"
    annotation = os.path.join(cfg.root, cfg.train_file if train else cfg.test_file)
    key = cfg.train_split if train else cfg.test_split
    if cfg.task == "retrieval":
        cls: type[_VioletDataset] = RetrievalTrain if train else RetrievalTest
    else:
        cls = QAOpenEnded if cfg.task == "qa_oe" else QAMultipleChoice
    return cls(cfg, tokenizer, sources, annotation, key)  # type: ignore[call-arg]
