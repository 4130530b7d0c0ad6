"""UniVL fine-tuning runs (paper Tables 1, 2, 4, 5): config -> model, data, evaluation.

A run YAML maps onto :class:`RunConfig`. ``model.size: base`` builds the official sizes (load
``univl.pretrained.bin`` with ``init_model``); ``tiny`` builds the golden-fixture sizes with the real
30,522-word vocabulary, for CPU runs on synthetic data. The ``data:`` section is
:class:`data.univl.UniVLDataConfig` (which dataset, its files, the lengths L and F the model is built for);
``loader:`` is the batching and tokenizer section every recipe shares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch.utils.data import Dataset

from backbones.common.attention import AttentionImpl, set_attention
from backbones.common.bert import BertConfig
from backbones.univl.config import LOSS_NAMES, UniVLConfig
from backbones.univl.model import UniVL
from backbones.univl.pretrained import load_official
from data.text import load_tokenizer
from data.univl import UniVLDataConfig, build_univl_data
from evaluation.captioning import CaptionScorer, postprocess
from evaluation.mosi import format_mosi, mosi_metrics
from evaluation.retrieval import text_to_video, video_to_text
from meltr import TrainerConfig
from scripts.recipes import RunParts
from scripts.recipes.common import LoaderConfig, eval_batches, tokenizer_folder, train_loader

__all__ = ["ModelOptions", "EvalConfig", "RunConfig", "model_config", "build", "report"]

log = logging.getLogger(__name__)


@dataclass
class ModelOptions:
    """Which UniVL to build."""

    size: Literal["base", "tiny"] = "base"  # official sizes, or the golden-fixture sizes (CPU smoke runs)
    task: Literal["retrieval", "caption", "sentiment"] = "retrieval"  # target loss: alignment / decoder / sentiment
    losses: list[str] = field(default_factory=lambda: list(LOSS_NAMES))  # losses fed to the combiner, MELTR order
    margin: float = 0.1  # max-margin ranking margin
    layout: str = "auto"  # modules to build: "auto" (what the losses need) or an official layout name
    sentiment_loss: Literal["l1", "mse"] = "l1"  # CMU-MOSI regression loss (MMSA trains with L1)
    attention: AttentionImpl = "sdpa"  # fused scaled_dot_product_attention, or the explicit matmul/softmax


@dataclass
class EvalConfig:
    """How the target task is evaluated."""

    beam_size: int = 5  # captioning beam width (official 5)
    text_chunk: int = 16  # text rows per cross-encoder call in retrieval scoring
    single_reference: bool = False  # reproduce the official one-reference MSRVTT captioning bug
    tokenize: Literal["ptb", "none"] = "ptb"  # coco-caption PTB tokenisation; "none" = official nlg-eval strip
    meteor: bool = True  # compute METEOR (starts a Java process)


@dataclass
class RunConfig:
    """One UniVL fine-tuning run."""

    # Keys of earlier releases (YAML files, run configs stored in checkpoints): read with a FutureWarning.
    RENAMED: ClassVar[dict[str, str]] = {
        "data.batch_size": "loader.batch_size", "data.eval_batch_size": "loader.eval_batch_size",
        "data.num_workers": "loader.num_workers", "data.tokenizer": "loader.tokenizer",
        "model.max_words": "data.max_words", "model.max_frames": "data.max_frames",
    }

    backbone: Literal["univl"] = "univl"  # recipe selector
    model: ModelOptions = field(default_factory=ModelOptions)  # UniVL options
    data: UniVLDataConfig = field(default_factory=UniVLDataConfig)  # dataset, files, lengths L and F
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=32, eval_batch_size=64, num_workers=0))  # global
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # combiner, meta step, optimisers
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation options
    init_model: str | None = None  # official univl.pretrained.bin (or another official layout)
    output_dir: str = "runs/univl"  # checkpoints, metrics.jsonl, TensorBoard


def model_config(opt: ModelOptions, data: UniVLDataConfig) -> UniVLConfig:
    """The :class:`UniVLConfig` for ``opt`` and the data's lengths; visual features of another width than 1024
    get a projection."""
    common = dict(task=opt.task, losses=tuple(opt.losses), max_words=data.max_words, max_frames=data.max_frames,
                  margin=opt.margin, layout=opt.layout, sentiment_loss=opt.sentiment_loss,
                  visual_input_dim=0 if data.feature_dim == 1024 else data.feature_dim)
    if opt.size == "base":
        return set_attention(UniVLConfig.base(**common), opt.attention)
    # Golden-fixture tower sizes, but the real vocabulary so the bert-base-uncased tokenizer fits.
    def tower(vocab_size: int, max_position_embeddings: int) -> BertConfig:
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          vocab_size=vocab_size, max_position_embeddings=max_position_embeddings)

    pos = max(64, data.max_words)
    return set_attention(UniVLConfig.tiny(
        text=tower(30522, pos),
        decoder=tower(30522, pos),
        visual=tower(1024, max(64, data.max_frames)),
        cross=tower(32, max(128, data.max_words + data.max_frames)),
        **common,
    ), opt.attention)


def retrieval_eval(model: UniVL, ds: Dataset, cfg: RunConfig) -> dict[str, float]:
    """R@1/5/10, MedR and MeanR in both directions (``t2v_*``: the paper's numbers; ``v2t_*``) from the
    cross-encoder alignment score of every text with every video (official tie handling)."""
    device = next(model.parameters()).device
    th, tm, vh, vm = [], [], [], []
    for b in eval_batches(ds, cfg.loader.eval_batch_size, device):
        th.append(model.encode_text(b["input_ids"], b["token_type_ids"], b["attention_mask"]))
        tm.append(b["attention_mask"])
        vh.append(model.encode_video(b["video"], b["video_mask"]))
        vm.append(b["video_mask"])
    sim = model.alignment_similarity(torch.cat(th), torch.cat(tm), torch.cat(vh), torch.cat(vm), text_chunk=cfg.eval.text_chunk)
    sim = sim.float().cpu()
    return {**text_to_video(sim), **video_to_text(sim)}


def sentiment_eval(model: UniVL, ds: Any, cfg: RunConfig) -> dict[str, float]:
    """CMU-MOSI metrics of one split as MMSA computes them (BA = positive vs negative)."""
    device = next(model.parameters()).device
    preds = [model.predict_sentiment(b["input_ids"], b["token_type_ids"], b["attention_mask"], b["video"], b["video_mask"])
             for b in eval_batches(ds, cfg.loader.eval_batch_size, device)]
    return mosi_metrics(torch.cat(preds).float().cpu(), ds.labels())


def caption_eval(model: UniVL, ds: Any, cfg: RunConfig, tokenizer: Any, scorer: CaptionScorer) -> dict[str, float]:
    """Beam-search captions scored with BLEU-1..4, METEOR, ROUGE-L, CIDEr against every reference."""
    device = next(model.parameters()).device
    preds: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    i = 0
    for b in eval_batches(ds, cfg.loader.eval_batch_size, device):
        out = model.generate(b["input_ids"], b["token_type_ids"], b["attention_mask"], b["video"], b["video_mask"], beam_size=cfg.eval.beam_size)
        for ids in out.ids:
            meta = ds.meta(i)
            key = str(i)
            preds[key] = postprocess(ids, tokenizer.convert_ids_to_tokens)
            refs[key] = list(meta.get("references") or [meta["caption"]])
            i += 1
    return scorer.score(preds, refs, single_reference=cfg.eval.single_reference)


def build(cfg: RunConfig, rank: int, world: int, *, load_init: bool = True) -> RunParts:
    """Builds model, loader and the evaluation function of a run; ``close()`` stops the caption scorer's JVM."""
    mcfg = model_config(cfg.model, cfg.data)
    model = UniVL(mcfg)
    if load_init and cfg.init_model:
        report = load_official(model, cfg.init_model)
        log.info("init_model: %s", report.summary())
    tokenizer = load_tokenizer(tokenizer_folder(cfg.loader.tokenizer))
    train, evals = build_univl_data(cfg.data, tokenizer)
    loader = train_loader(train, batch_size=cfg.loader.batch_size, seed=cfg.trainer.seed, rank=rank, world=world,
                          num_workers=cfg.loader.num_workers)
    scorer = CaptionScorer(tokenize=cfg.eval.tokenize, meteor=cfg.eval.meteor) if cfg.model.task == "caption" else None

    def eval_fn(m: UniVL) -> dict[str, float]:
        if cfg.model.task == "sentiment":
            # valid_* selects the checkpoint (trainer.best_metric), test_* is the reported table
            return {f"{split}_{k}": v for split, ds in evals.items() for k, v in sentiment_eval(m, ds, cfg).items()}
        if cfg.model.task == "retrieval":
            return retrieval_eval(m, evals["test"], cfg)
        assert scorer is not None
        return caption_eval(m, evals["test"], cfg, tokenizer, scorer)

    return RunParts(model, loader, eval_fn, scorer.close if scorer else (lambda: None))


def report(cfg: RunConfig, metrics: dict[str, float]) -> str:
    """A one-line summary of the selected checkpoint's metrics (MOSI: the test split's table)."""
    if cfg.model.task == "sentiment":
        test = {k[len("test_"):]: v for k, v in metrics.items() if k.startswith("test_")}
        return f"selected on {cfg.trainer.best_metric}; CMU-MOSI test: {format_mosi(test)}"
    return "selected checkpoint: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
