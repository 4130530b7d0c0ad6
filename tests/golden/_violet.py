"""Shared helpers for the VIOLET golden tests: fixture paths, the golden weights per task, the golden batches.

The fixtures live outside the repository, in ``<repo>/../shared/fixtures/violet/`` (see its README). A
missing fixture **fails** the test with the expected path; it never skips.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from backbones.common.attention import AttentionImpl
from backbones.violet import Violet, VioletConfig
from backbones.violet.pretrained import config_from_official
from tests.golden import _fixtures
from tests.golden._fixtures import fixture_dir

FIXTURE_DIR = fixture_dir("violet")
GOLDEN = FIXTURE_DIR / "golden.pt"
KEYS_SHAPES = FIXTURE_DIR / "keys_shapes.json"

# Our task name -> the fixture's model name (golden task_keys / keys_shapes entries).
GOLDEN_TASKS = {"retrieval": "retrieval", "qa_oe": "qaoe", "qa_mc": "qamc"}


def load_golden() -> dict[str, Any]:
    """``golden.pt`` of violet (see :mod:`tests.golden._fixtures`)."""
    return _fixtures.load_golden("violet")


def load_keys_shapes() -> dict[str, Any]:
    """``keys_shapes.json`` of violet."""
    return _fixtures.load_keys_shapes("violet")


def golden_state(fixture_task: str) -> dict[str, Tensor]:
    """The official state dict of one fixture model (``task_keys`` order), with the shared index buffer filled in."""
    g = load_golden()
    index = g["relative_position_index"].long()
    return {k: (index if k.endswith("relative_position_index") else g["state_dict"][k]) for k in g["task_keys"][fixture_task]}


def golden_config(task: str = "retrieval", **overrides: Any) -> VioletConfig:
    """The fixture's own configuration (``golden["config"]``) as ours for ``task``, with ``overrides`` (see
    :func:`backbones.violet.pretrained.config_from_official`)."""
    return config_from_official(load_golden()["config"], task=task, **overrides)


def golden_model(task: str = "retrieval", fixture_task: str | None = None, attention: AttentionImpl = "sdpa",
                 **cfg: Any) -> Violet:
    """The tiny VIOLET for ``task`` with the fixture's weights (strict, exact key set), in eval mode, the Swin
    and BERT attention implemented by ``attention``.

    ``fork_quirks`` defaults to True: the fixture was made with the fork's code.
    """
    cfg.setdefault("fork_quirks", True)
    base = golden_config(task, **cfg)
    model = Violet(base.replace(swin=dataclasses.replace(base.swin, attention=attention),
                                bert=dataclasses.replace(base.bert, attention=attention)))
    model.load_state_dict(golden_state(fixture_task or GOLDEN_TASKS[task]), strict=True)
    return model.eval()


def golden_batch(task: str = "retrieval", with_masks: bool = True) -> dict[str, Tensor]:
    """The fixture's inputs as a VIOLET batch; ``with_masks`` adds the official masking draws."""
    x = load_golden()["inputs"]
    if task == "qa_mc":
        batch = {"video": x["img_u8"][:2].float() / 255, "vq": x["vq_mc"], "text_ids": x["txt_mc"],
                 "text_mask": x["mask_mc"], "answer": x["ans_mc"], "index": torch.arange(2)}
        masks = {"masked_video": x["img_mc_masked_u8"].float() / 255, "mvm_labels": x["ans_mvm_mc"],
                 "masked_text_ids": x["m_txt_mc"], "mtm_labels": x["ans_mtm_mc"]}
    else:
        batch = {"video": x["img_u8"].float() / 255, "vq": x["vq"], "text_ids": x["txt"], "text_mask": x["mask"],
                 "answer": x["ans_oe"], "index": torch.arange(3)}
        masks = {"masked_video": x["img_masked_u8"].float() / 255, "mvm_labels": x["ans_mvm"],
                 "masked_text_ids": x["m_txt"], "mtm_labels": x["ans_mtm"]}
    return {**batch, **masks} if with_masks else batch


def random_batch(task: str, batch: int = 3, frames: int = 3, size: int = 64, length: int = 10, options: int = 3,
                 vocab: int = 512, vq_size: int = 128, n_answers: int = 10, seed: int = 0) -> dict[str, Tensor]:
    """A valid random VIOLET batch in the data helper's format (every text has at least one real token)."""
    g = torch.Generator().manual_seed(seed)
    grid = size // 32
    rows = (batch, options) if task == "qa_mc" else (batch,)
    lengths = torch.randint(3, length + 1, rows, generator=g)
    positions = torch.arange(length)
    mask = (positions < lengths[..., None]).long()
    ids = torch.randint(104, vocab, rows + (length,), generator=g) * mask
    ids[..., 0] = 101
    ids.scatter_(-1, (lengths - 1)[..., None], 102)
    codes = torch.randint(0, vq_size, (batch, frames, grid * grid), generator=g)
    vq = torch.cat([torch.full((batch, frames, 1), -1), codes], dim=2).flatten(1)
    answer = torch.randint(0, options if task == "qa_mc" else n_answers, (batch,), generator=g)
    return {"video": torch.rand(batch, frames, 3, size, size, generator=g), "vq": vq, "text_ids": ids,
            "text_mask": mask, "answer": answer, "index": torch.arange(batch)}
