"""The batch contract is written twice, once per side of the data/backbones boundary: the keys a dataset
returns (data/) and the keys a model reads (its ``TypedDict`` in backbones/<name>/inputs.py). data may not
import backbones, so this test, which imports both, is what keeps the two in step.
"""

from __future__ import annotations

import typing
from pathlib import Path

from backbones.allinone.inputs import AllInOneBatch
from backbones.univl.inputs import UniVLBatch
from backbones.violet.inputs import VioletBatch
from data.allinone import SAMPLE_KEYS as ALLINONE_SAMPLE_KEYS
from data.synthetic.violet import write_tgif, write_violet_msrvtt
from data.univl import DATASETS, SAMPLE_KEYS, UniVLDataConfig
from data.univl.mosi import MOSI_SAMPLE_KEYS
from data.violet import VioletDataConfig, build_violet_data


def _keys(batch_type: type) -> tuple[str, ...]:
    """The keys of a TypedDict in declaration order (a TypedDict keeps its annotations ordered)."""
    return tuple(batch_type.__annotations__)


def test_univl_sample_keys_are_the_univl_batch_in_order() -> None:
    assert SAMPLE_KEYS == _keys(UniVLBatch)


def test_mosi_samples_add_only_the_label_the_sentiment_head_reads() -> None:
    # UniVLBatch has no label: the sentiment loss reads batch["label"] beside it (backbones/univl/model.py).
    assert MOSI_SAMPLE_KEYS == _keys(UniVLBatch) + ("label",)


def test_allinone_sample_keys_are_the_allinone_batch_in_order() -> None:
    assert ALLINONE_SAMPLE_KEYS == _keys(AllInOneBatch)


def test_violet_samples_have_the_violet_batch_keys_in_order(tokenizer, tmp_path: Path) -> None:
    # data/violet has no key list: its datasets are the data-side contract, so read one sample of each kind.
    # VioletBatch is total=False because only QA samples carry ``answer``.
    vtt = write_violet_msrvtt(tmp_path / "vtt", n_videos=3, n_frames=2, image_size=32, vq_grid=1)
    retrieval = build_violet_data(VioletDataConfig(root=str(vtt["img"].parent), size_img=32, n_frames=2,
                                                   size_txt=8), tokenizer, "train")
    tgif = write_tgif(tmp_path / "tgif", task="frameqa", n_videos=4, n_frames=2, image_size=32, vq_grid=1)
    qa = build_violet_data(VioletDataConfig(root=str(tgif["img"].parent), task="qa_oe", img_file=tgif["img"].name,
                                            vq_file=tgif["vq"].name, train_file=tgif["json"].name,
                                            test_file=tgif["json"].name, size_img=32, n_frames=2, size_txt=8,
                                            size_vocab=12), tokenizer, "train")
    batch = _keys(VioletBatch)
    assert tuple(qa[0]) == batch
    assert tuple(retrieval[0]) == tuple(k for k in batch if k != "answer")


def test_univl_dataset_names_are_the_registry() -> None:
    # UniVLDataConfig.dataset's Literal (what the strict config loader accepts) and the builders must agree.
    assert set(typing.get_args(typing.get_type_hints(UniVLDataConfig)["dataset"])) == set(DATASETS)
