"""VIOLET fine-tuning runs (paper Table 2 MSRVTT retrieval; Table 3 TGIF-Action/Transition/Frame, MSVD-QA).

A run YAML maps onto :class:`RunConfig`. ``data.task`` picks the task (retrieval, qa_oe, qa_mc) for both the
data and the model; ``model.size: base`` builds Video Swin-S + bert-base (load ``ckpt_violet_pretrain.pt`` with
``init_model`` and ``ckpt_video-swin.pt`` with ``swin_init``), ``tiny`` the golden-fixture widths with the real
30,522-word vocabulary for CPU runs on synthetic data.

Evaluation:

* retrieval: the VTM head on every (text, video) pair of the test set, Swin run once per video. Ranks use the
  VTM logit, the official score before its sigmoid: the order is the same, but float32 sigmoids saturate to
  exactly 1.0 and would create ties. ``t2v_*`` is the paper's number (the official evaluation is text-to-video
  only); ``v2t_*`` is added. Several captions per video are allowed (``retrieval_metrics_multi``).
* QA: ``acc`` over every test question (out-of-vocabulary answers, label -1, count as wrong), and the official
  mean of per-batch accuracies with the last partial batch dropped as ``acc_official_batch_mean``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from backbones.common.attention import AttentionImpl, set_attention
from backbones.violet import Violet, VioletConfig, load_official
from data.text import load_tokenizer
from data.violet import RetrievalTest, VioletDataConfig, build_violet_data, load_violet_sources
from evaluation.qa import qa_metrics
from evaluation.retrieval import retrieval_metrics_multi
from meltr import TrainerConfig
from scripts.recipes import RunParts
from scripts.recipes.common import LoaderConfig, eval_batches, tokenizer_folder, train_loader

__all__ = ["ModelOptions", "EvalConfig", "RunConfig", "model_config", "retrieval_eval", "qa_eval",
           "build", "report"]

log = logging.getLogger(__name__)


@dataclass
class ModelOptions:
    """Which VIOLET to build (the task comes from ``data.task``)."""

    size: Literal["base", "tiny"] = "base"  # Video Swin-S + bert-base, or the golden-fixture widths (CPU runs)
    losses: list[str] = field(default_factory=list)  # active losses in MELTR order; [] = all of the task's
    attention: AttentionImpl = "sdpa"  # fused scaled_dot_product_attention, or the explicit matmul/softmax
    fork_quirks: bool = False  # reproduce the MELTR fork's masking / VTM-pairing bugs (see VioletConfig)
    drop_path_rate: float = 0.2  # Video Swin stochastic depth (official 0.2, active while fine-tuning)
    oe_dropout: float = 0.5  # dropout before the open-ended answer head (fork 0.5, official VIOLET 0.1)


@dataclass
class EvalConfig:
    """Evaluation options."""

    pair_batch: int = 100  # (text, video) pairs per cross-encoder call in retrieval (official 100 per GPU)


@dataclass
class RunConfig:
    """One VIOLET fine-tuning run."""

    backbone: Literal["violet"] = "violet"  # recipe selector
    model: ModelOptions = field(default_factory=ModelOptions)  # VIOLET options
    data: VioletDataConfig = field(default_factory=lambda: VioletDataConfig(root="data/msrvtt"))  # files, task
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=5, eval_batch_size=16, num_workers=4))  # global (the fork: per GPU)
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation options
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # combiner, meta step, optimisers
    init_model: str | None = None  # official ckpt_violet_pretrain.pt (or a full fine-tuned VIOLET checkpoint)
    swin_init: str | None = None  # official ckpt_video-swin.pt (Video Swin-S, Kinetics-400), loaded first
    output_dir: str = "runs/violet"  # checkpoints, metrics.jsonl, TensorBoard


def model_config(opt: ModelOptions, data: VioletDataConfig) -> VioletConfig:
    """The :class:`VioletConfig` of a run: task and answer vocabulary follow ``data``."""
    common: dict[str, Any] = dict(task=data.task, losses=tuple(opt.losses), fork_quirks=opt.fork_quirks,
                                  oe_dropout=opt.oe_dropout, n_answers=data.size_vocab)
    if opt.size == "base":
        cfg = VioletConfig.base(vq_size=data.vq_vocab, **common)
        cfg.swin.drop_path_rate = opt.drop_path_rate
    else:
        cfg = VioletConfig.tiny(vocab_size=30522, vq_size=data.vq_vocab, **common)
    set_attention(cfg, opt.attention)
    cfg.validate()
    return cfg


def _features(model: Violet, ds: Dataset, batch_size: int, workers: int, video: bool) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(model.parameters()).device
    feats, masks = [], []
    for b in eval_batches(ds, batch_size, device, workers):
        f, m = model.encode_video(b["video"]) if video else model.encode_text(b["text_ids"], b["text_mask"])
        feats.append(f)
        masks.append(m)
    return torch.cat(feats), torch.cat(masks)


@torch.no_grad()
def retrieval_eval(model: Violet, ds: RetrievalTest, cfg: RunConfig) -> dict[str, float]:
    """R@1/5/10, MedR, MeanR in both directions from the VTM logit of every (text, video) pair."""
    bs, workers = cfg.loader.eval_batch_size, cfg.loader.num_workers
    vf, vm = _features(model, ds.videos, bs, workers, video=True)
    tf, tm = _features(model, ds.texts, bs, workers, video=False)
    scores = model.retrieval_scores(vf, vm, tf, tm, batch_size=cfg.eval.pair_batch, logits=True)
    return retrieval_metrics_multi(scores.float().cpu(), ds.text_to_video)


@torch.no_grad()
def qa_eval(model: Violet, ds: Dataset, cfg: RunConfig) -> dict[str, float]:
    """Accuracy over every test question, plus the official batch-mean variant."""
    device = next(model.parameters()).device
    preds, answers = [], []
    for b in eval_batches(ds, cfg.loader.eval_batch_size, device, cfg.loader.num_workers):
        preds.append(model.qa_logits(b).argmax(dim=-1).cpu())
        answers.append(b["answer"].cpu())
    # the official per-batch mean uses the training json's per-GPU batch size
    return qa_metrics(torch.cat(preds), torch.cat(answers), batch_size=cfg.loader.batch_size)


def build(cfg: RunConfig, rank: int, world: int, *, load_init: bool = True) -> RunParts:
    """Builds model, loader and the evaluation function of a run."""
    model = Violet(model_config(cfg.model, cfg.data))
    if load_init and (cfg.init_model or cfg.swin_init):
        log.info("official weights: %s", load_official(model, pretrain=cfg.init_model, swin=cfg.swin_init).summary())
    tokenizer = load_tokenizer(tokenizer_folder(cfg.loader.tokenizer))
    sources = load_violet_sources(cfg.data)
    train = build_violet_data(cfg.data, tokenizer, "train", sources)
    test = build_violet_data(cfg.data, tokenizer, "test", sources)
    loader = train_loader(train, batch_size=cfg.loader.batch_size, seed=cfg.trainer.seed, rank=rank, world=world,
                          num_workers=cfg.loader.num_workers, drop_last=cfg.data.task != "retrieval")

    def eval_fn(m: Violet) -> dict[str, float]:
        if cfg.data.task == "retrieval":
            assert isinstance(test, RetrievalTest)
            return retrieval_eval(m, test, cfg)
        return qa_eval(m, test, cfg)

    return RunParts(model, loader, eval_fn)


def report(cfg: RunConfig, metrics: dict[str, float]) -> str:
    """The selected checkpoint's numbers in percent (retrieval: t2v is the paper's table; QA: accuracy)."""
    if cfg.data.task == "retrieval":
        keys: tuple[str, ...] = ("t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_MedR")
    else:
        keys = ("acc", "acc_official_batch_mean")
    parts = [f"{k} {metrics[k]:.1f}" if "MedR" in k else f"{k} {100 * metrics[k]:.2f}" for k in keys if k in metrics]
    return f"selected on {cfg.trainer.best_metric}: " + "  ".join(parts)
