"""Shared helpers for the All-in-one golden tests: fixture paths, loading, the golden model and batch.

The fixtures live outside the repository, in ``<repo>/../shared/fixtures/allinone/`` (see its README). A
missing fixture **fails** the test with the expected path; it never skips.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from backbones.allinone import AllInOne, AllInOneConfig

FIXTURE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "allinone"
GOLDEN = FIXTURE_DIR / "golden.pt"
KEYS_SHAPES = FIXTURE_DIR / "keys_shapes.json"

# golden["state_dict"] keys our model does not have: the MELTR loss network (it lives in meltr/) and the
# transformers-4.2.1 position_ids buffer.
NOT_OURS = ("aux_model.", "text_embeddings.position_ids")


def require(path: Path) -> Path:
    """``path`` if it is a file, else fail (not skip) the calling test with a message naming it."""
    if not path.is_file():
        pytest.fail(f"All-in-one fixture missing: {path}. The golden tests need shared/fixtures/allinone/ next to "
                    "the repository (see its README); they fail rather than skip.", pytrace=False)
    return path


@functools.cache
def _load_golden() -> dict[str, Any]:
    return torch.load(GOLDEN, weights_only=True)


def load_golden() -> dict[str, Any]:
    """``golden.pt`` (loaded once per session, ``weights_only=True``). Do not mutate the result."""
    require(GOLDEN)
    return _load_golden()


def load_keys_shapes() -> dict[str, Any]:
    """``keys_shapes.json`` as a dict."""
    return json.loads(require(KEYS_SHAPES).read_text())


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
