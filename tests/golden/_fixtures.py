"""Access to the compatibility fixtures made by running the official code (``<repo>/../shared/fixtures/<model>/``).

A missing fixture **fails** the calling test with the expected path and the folder it belongs in; it never
skips. Files are read once per session (``golden.pt`` with ``weights_only=True``); treat the results as
read-only.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

__all__ = ["fixture_dir", "require", "load_golden", "load_keys_shapes"]


def fixture_dir(model: str) -> Path:
    """``<repo>/../shared/fixtures/<model>``."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / model


def require(path: Path) -> Path:
    """``path`` when the file exists; otherwise the calling test fails (never skips), naming the path."""
    if not path.is_file():
        pytest.fail(f"fixture missing: {path}. The golden tests read shared/fixtures/{path.parent.name}/ beside the "
                    "repository (see its README) and fail without it.", pytrace=False)
    return path


@functools.cache
def _read(path: Path) -> Any:
    return torch.load(path, weights_only=True) if path.suffix == ".pt" else json.loads(path.read_text())


def load_golden(model: str) -> dict[str, Any]:
    """``golden.pt`` of ``model``."""
    return _read(require(fixture_dir(model) / "golden.pt"))


def load_keys_shapes(model: str) -> dict[str, Any]:
    """``keys_shapes.json`` of ``model``."""
    return _read(require(fixture_dir(model) / "keys_shapes.json"))
