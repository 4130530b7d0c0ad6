"""Shared helpers for the All-in-one golden tests: fixture paths, loading, the golden model and batch.

The fixtures live outside the repository, in ``<repo>/../shared/fixtures/allinone/`` (see its README). A
missing fixture **fails** the test with the expected path; it never skips.
"""

from __future__ import annotations

from typing import Any

import torch

from backbones.allinone import AllInOne, AllInOneConfig
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


def golden_model(**cfg: Any) -> AllInOne:
    """The tiny All-in-one with the golden weights loaded strictly, in eval mode (the fixture's numbers)."""
    model = AllInOne(AllInOneConfig.tiny(**cfg))
    model.load_state_dict(golden_state(), strict=True)
    return model.eval()


def golden_batch() -> dict[str, torch.Tensor]:
    """golden["inputs"] under our batch names (official text_masks / text_ids_mlm / text_labels_mlm)."""
    x = load_golden()["inputs"]
    return {"video": x["video"], "text_ids": x["text_ids"], "text_mask": x["text_masks"], "mlm_ids": x["text_ids_mlm"],
            "mlm_labels": x["text_labels_mlm"], "index": torch.arange(x["text_ids"].shape[0])}
