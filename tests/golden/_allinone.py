"""Shared helpers for the All-in-one golden tests: fixture paths, loading, the golden model and batch.

The fixtures live outside the repository, in ``<repo>/../shared/fixtures/allinone/`` (see its README). A
missing fixture **fails** the test with the expected path; it never skips.
"""

from __future__ import annotations

from typing import Any

import torch

from backbones.allinone import AllInOne, AllInOneConfig
from backbones.allinone.pretrained import config_from_official
from tests.golden import _fixtures
from tests.golden._fixtures import fixture_dir

FIXTURE_DIR = fixture_dir("allinone")
GOLDEN = FIXTURE_DIR / "golden.pt"
KEYS_SHAPES = FIXTURE_DIR / "keys_shapes.json"

# golden["state_dict"] keys our model does not have: the MELTR loss network (it lives in meltr/) and the
# transformers-4.2.1 position_ids buffer.
NOT_OURS = ("aux_model.", "text_embeddings.position_ids")


def load_golden() -> dict[str, Any]:
    """``golden.pt`` of allinone (see :mod:`tests.golden._fixtures`)."""
    return _fixtures.load_golden("allinone")


def load_keys_shapes() -> dict[str, Any]:
    """``keys_shapes.json`` of allinone."""
    return _fixtures.load_keys_shapes("allinone")


def golden_state() -> dict[str, torch.Tensor]:
    """golden["state_dict"] without the keys our model does not have (see :data:`NOT_OURS`)."""
    return {k: v for k, v in load_golden()["state_dict"].items() if not k.startswith(NOT_OURS)}


def golden_config(**overrides: Any) -> AllInOneConfig:
    """The fixture's own configuration (its sacred ``golden["config"]``) as ours, with ``overrides`` (see
    :func:`backbones.allinone.pretrained.config_from_official`). The fixture's ViT variant ``vit_golden_tiny``
    has no stochastic depth (README §2.1), which the sacred config does not record."""
    return config_from_official(load_golden()["config"], **{"drop_path_rate": 0.0, **overrides})


def golden_model(**cfg: Any) -> AllInOne:
    """The tiny All-in-one with the golden weights loaded strictly, in eval mode (the fixture's numbers)."""
    model = AllInOne(golden_config(**cfg))
    model.load_state_dict(golden_state(), strict=True)
    return model.eval()


def golden_batch() -> dict[str, torch.Tensor]:
    """golden["inputs"] under our batch names (official text_masks / text_ids_mlm / text_labels_mlm)."""
    x = load_golden()["inputs"]
    return {"video": x["video"], "text_ids": x["text_ids"], "text_mask": x["text_masks"], "mlm_ids": x["text_ids_mlm"],
            "mlm_labels": x["text_labels_mlm"], "index": torch.arange(x["text_ids"].shape[0])}


def random_batch(cfg: AllInOneConfig, n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A valid random All-in-one batch: captions of random length (``[CLS] w… [SEP]`` then padding), token 1
    masked for MLM, standard-normal frames."""
    g = torch.Generator().manual_seed(seed)
    length = cfg.max_text_len
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length) < lengths[:, None]).long()
    ids = torch.randint(104, cfg.vocab_size, (n, length), generator=g) * mask
    ids[:, 0], ids[torch.arange(n), lengths - 1] = 101, 102
    labels = torch.full_like(ids, -100)
    masked = ids.clone()
    labels[:, 1], masked[:, 1] = ids[:, 1], 103
    video = torch.randn(n, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    return {"video": video, "text_ids": ids, "text_mask": mask, "mlm_ids": masked, "mlm_labels": labels,
            "index": torch.arange(n)}
