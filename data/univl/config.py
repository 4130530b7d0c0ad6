"""The ``data:`` section of a UniVL run: which dataset, where its official files are, the sample lengths.

Lengths flow data → model, as for VIOLET and All-in-one: the recipe builds the UniVL model config from
``max_words`` / ``max_frames`` / ``feature_dim`` here. Batching and the tokenizer folder are the shared
``loader:`` section of the run (``scripts/recipes/common.py``), not data options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["UniVLDataConfig"]


@dataclass
class UniVLDataConfig:
    """Where the official files are and how to read them (defaults: the official YouCook2 retrieval run)."""

    dataset: Literal["youcook2", "msrvtt", "mosi"] = "youcook2"  # reader (data.univl.build.DATASETS)
    root: str = "data/youcook2"  # folder holding the official files (DATA_DIR)
    split: Literal["7k", "9k", "full"] = "7k"  # MSRVTT: 7k / 9k retrieval (JSFusion test), full = captioning
    text_source: Literal["caption", "transcript", "empty"] = "caption"  # encoder text: caption, ASR, or none
    mosi_format: Literal["mmsa", "univl", "csd"] = "mmsa"  # CMU-MOSI input format (see data/univl/mosi.py)
    mosi_file: str = "aligned_50.pkl"  # MMSA pickle name inside root (format mmsa)
    json_file: str = "MSRVTT_data.json"  # MSRVTT annotations (MELTR's transcripts: MSRVTT_transcript_data_v2.json)
    n_train_videos: int = 7010  # MSRVTT 7k/full train videos (first N in json order)
    n_test_videos: int = 2990  # MSRVTT full-caption test videos (last N)
    feature_dim: int = 1024  # S3D feature width, checked against the feature file
    max_words: int = 48  # text and caption length L
    max_frames: int = 48  # frames F (one S3D feature per second)
    mask_prob: float = 0.15  # MLM / MFM masking rate

    def reader_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every UniVL reader takes from this section (lengths, width, mask rate)."""
        return dict(max_words=self.max_words, max_frames=self.max_frames, feature_dim=self.feature_dim,
                    mask_prob=self.mask_prob)
