"""All-in-one fine-tuning runs (paper Table 2, MSRVTT-7k/9k retrieval): config -> model, data, evaluation.

A run YAML maps onto :class:`RunConfig`. ``model.size: base`` builds ViT-B/16 (load the official
``all-in-one-plus-224.ckpt`` with ``init_model``); ``tiny`` builds the golden-fixture widths with the real
30,522-word vocabulary for CPU runs on synthetic videos. Frame count, image size and text length come from
``data`` only, so the model always matches what the loader produces.

Evaluation is the official one (``compute_ind_irtr_recall``): the cosine matrix of the unimodal embeddings,
averaged over ``data.retrieval_views`` random frame samplings of the test videos, t2v ties optimistic and v2t
ties averaged; the single uniform (middle-frame) view is reported beside it with the prefix ``uniform_``.
``R@1_sum`` (t2v + v2t R@1 of the averaged matrix) is the official model-selection metric.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from backbones.common.attention import AttentionImpl, set_attention
from backbones.allinone import AllInOne, AllInOneConfig, load_official
from data.allinone import AllInOneDataConfig, AllInOneMSRVTT, build_msrvtt
from data.text import load_tokenizer
from evaluation.multiview import multiview_retrieval
from meltr import TrainerConfig
from scripts.recipes import RunParts
from scripts.recipes.common import LoaderConfig, eval_batches, tokenizer_folder, train_loader

__all__ = ["ModelOptions", "RunConfig", "model_config", "retrieval_eval", "build", "report"]

log = logging.getLogger(__name__)


@dataclass
class ModelOptions:
    """Which All-in-one to build."""

    RENAMED: ClassVar[dict[str, str]] = {"primary": "target_loss"}  # old key -> new (YAML files, checkpoints' run configs)

    size: Literal["base", "tiny"] = "base"  # ViT-B/16, or the golden-fixture widths (CPU smoke runs)
    target_loss: Literal["ind_itc", "mlm"] = "ind_itc"  # meta-objective: paper (retrieval ITC) or the fork's MLM
    patch_shuffle: bool = False  # official random patch order per frame in training (off: raster order)
    drop_rate: float = 0.1  # dropout (official drop_rate)
    drop_path_rate: float = 0.1  # stochastic depth of the last block (official ViT default)
    attention: AttentionImpl = "sdpa"  # fused scaled_dot_product_attention, or the explicit matmul/softmax


@dataclass
class RunConfig:
    """One All-in-one fine-tuning run."""

    backbone: Literal["allinone"] = "allinone"  # recipe selector
    model: ModelOptions = field(default_factory=ModelOptions)  # All-in-one options
    data: AllInOneDataConfig = field(default_factory=AllInOneDataConfig)  # MSRVTT files and sampling
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=128, eval_batch_size=32, num_workers=8))  # x grad_accum 2 = 256 (official)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # combiner, meta step, optimisers
    init_model: str | None = None  # official all-in-one-plus-224.ckpt (PyTorch Lightning)
    output_dir: str = "runs/allinone"  # checkpoints, metrics.jsonl, TensorBoard


def model_config(opt: ModelOptions, data: AllInOneDataConfig) -> AllInOneConfig:
    """The :class:`AllInOneConfig` of a run; frames, image size and text length follow ``data``."""
    common = dict(max_text_len=data.max_text_len, image_size=data.image_size, num_frames=data.num_frames,
                  target_loss=opt.target_loss, patch_shuffle=opt.patch_shuffle, drop_rate=opt.drop_rate,
                  drop_path_rate=opt.drop_path_rate)
    cfg = AllInOneConfig.base(**common) if opt.size == "base" else AllInOneConfig.tiny(vocab_size=30522, **common)
    return set_attention(cfg, opt.attention)


def _embeddings(model: AllInOne, ds: AllInOneMSRVTT, batch_size: int, num_workers: int,
                text: bool) -> tuple[Tensor | None, Tensor]:
    device = next(model.parameters()).device
    texts, videos = [], []
    for b in eval_batches(ds, batch_size, device, num_workers):
        if text:
            texts.append(model.encode_text(b["text_ids"], b["text_mask"]).float().cpu())
        videos.append(model.encode_video(b["video"]).float().cpu())
    return (torch.cat(texts) if text else None), torch.cat(videos)


@torch.no_grad()
def retrieval_eval(model: AllInOne, ds: AllInOneMSRVTT, cfg: RunConfig) -> dict[str, float]:
    """Official multi-view retrieval metrics (fractions), the uniform single view, and ``R@1_sum``."""
    was_training = model.training
    model.eval()
    try:
        bs, workers = cfg.loader.eval_batch_size, cfg.loader.num_workers
        text, uniform = _embeddings(model, ds.with_view(None), bs, workers, text=True)
        views = [_embeddings(model, ds.with_view(v), bs, workers, text=False)[1] for v in range(cfg.data.retrieval_views)]
    finally:
        model.train(was_training)
    assert text is not None
    metrics = multiview_retrieval(text, views, uniform_video=uniform)
    metrics["R@1_sum"] = metrics["t2v_R@1"] + metrics["v2t_R@1"]
    return metrics


def build(cfg: RunConfig, rank: int, world: int, *, load_init: bool = True) -> RunParts:
    """Builds model, loader and the evaluation function of a run."""
    model = AllInOne(model_config(cfg.model, cfg.data))
    if load_init and cfg.init_model:
        log.info("init_model: %s", load_official(model, cfg.init_model).summary())
    # The pooler is in the official state dict but no loss uses it: freezing it keeps DDP from waiting
    # for its gradient.
    model.pooler.requires_grad_(False)
    tokenizer = load_tokenizer(tokenizer_folder(cfg.loader.tokenizer))
    train = build_msrvtt(cfg.data, tokenizer, train=True)
    test = build_msrvtt(cfg.data, tokenizer, train=False)
    loader = train_loader(train, batch_size=cfg.loader.batch_size, seed=cfg.trainer.seed, rank=rank, world=world,
                          num_workers=cfg.loader.num_workers)

    def eval_fn(m: AllInOne) -> dict[str, float]:
        return retrieval_eval(m, test, cfg)

    return RunParts(model, loader, eval_fn)


def report(cfg: RunConfig, metrics: dict[str, float]) -> str:
    """The selected checkpoint's retrieval numbers in percent (t2v = the paper's table)."""
    keys = ("t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_R@5", "v2t_R@10", "v2t_MedR")
    parts = [f"{k} {100 * metrics[k]:.1f}" if "R@" in k else f"{k} {metrics[k]:.1f}" for k in keys if k in metrics]
    return f"selected on {cfg.trainer.best_metric} ({cfg.data.retrieval_views} views averaged): " + "  ".join(parts)
