"""VIOLET's data: base64 JPEG frame pickles, DALL-E VQ pickles, retrieval and QA json (reference/violet.md §4).

* :mod:`data.violet.datasets`: the readers, :class:`VioletDataConfig` and :func:`build_violet_data`;
* :mod:`data.violet.extract_frames`: ``python -m data.violet.extract_frames``, videos → ``img_<ds>.pkl``;
* :mod:`data.violet.qa_convert`: ``python -m data.violet.qa_convert tgif|msvd``, the official TGIF-QA / MSVD-QA
  annotations → VIOLET's QA json.
"""

from data.violet.datasets import (PATCH, QAItem, QAMultipleChoice, QAOpenEnded, RetrievalTest, RetrievalTrain,
                                  VioletDataConfig, VioletSources, build_violet_data, decode_frame, decode_video,
                                  load_violet_sources, mc_texts, pad_to_square, read_qa_json, read_retrieval_json,
                                  vq_layout)

__all__ = ["VioletDataConfig", "VioletSources", "load_violet_sources", "build_violet_data", "RetrievalTrain",
           "RetrievalTest", "QAOpenEnded", "QAMultipleChoice", "pad_to_square", "decode_frame", "decode_video",
           "vq_layout", "mc_texts", "read_retrieval_json", "read_qa_json", "QAItem", "PATCH"]
