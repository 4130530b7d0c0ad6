"""Evaluation metrics, used from a clone (not shipped in the wheel).

Imports neither ``backbones`` nor ``meltr.trainer``: models and tokenizers are passed in as callables.
Importing this package needs neither pycocoevalcap nor Java; :class:`CaptionScorer` loads them on first use.
"""

from evaluation.captioning import CAPTION_METRICS, CaptionScorer, postprocess
from evaluation.mosi import MOSI_METRICS, format_mosi, mosi_metrics
from evaluation.multiview import multiview_retrieval
from evaluation.qa import official_batch_mean, qa_accuracy, qa_metrics
from evaluation.retrieval import (
    format_metrics,
    ranks,
    retrieval_metrics,
    retrieval_metrics_multi,
    text_to_video,
    to_percent,
    video_to_text,
)

__all__ = [
    "CAPTION_METRICS",
    "CaptionScorer",
    "MOSI_METRICS",
    "format_metrics",
    "format_mosi",
    "mosi_metrics",
    "multiview_retrieval",
    "official_batch_mean",
    "postprocess",
    "qa_accuracy",
    "qa_metrics",
    "ranks",
    "retrieval_metrics",
    "retrieval_metrics_multi",
    "text_to_video",
    "to_percent",
    "video_to_text",
]
