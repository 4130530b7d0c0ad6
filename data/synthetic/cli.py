"""``python -m data.synthetic``: the command line of the synthetic writers (usage in :mod:`data.synthetic`).

The writers are looked up by dataset name in two tables: feature datasets (UniVL's S3D-like features, which
take ``--feature-dim``) and frame datasets (JPEG frames or mp4 videos, which take ``--image-size`` /
``--task``). A new dataset is one writer module under ``data/synthetic/`` plus one entry here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data.synthetic import allinone, violet
from data.synthetic.univl import MOSI_DEFAULT_DIMS, write_mosi, write_msrvtt, write_youcook2

__all__ = ["FEATURE_WRITERS", "FRAME_WRITERS", "main"]

_DESCRIPTION = "Tiny datasets of every backbone written in the official file formats, for tests and the demo."


def _youcook2(out: str, *, n_videos: int | None, seed: int, feature_dim: int | None, fmt: str | None) -> dict[str, Any]:
    return dict(write_youcook2(out, n_videos=6 if n_videos is None else n_videos, seed=seed,
                               feature_dim=1024 if feature_dim is None else feature_dim))


def _msrvtt(out: str, *, n_videos: int | None, seed: int, feature_dim: int | None, fmt: str | None) -> dict[str, Any]:
    return write_msrvtt(out, n_videos=20 if n_videos is None else n_videos, seed=seed,
                        feature_dim=1024 if feature_dim is None else feature_dim)


def _mosi(out: str, *, n_videos: int | None, seed: int, feature_dim: int | None, fmt: str | None) -> dict[str, Any]:
    assert fmt is not None  # main() requires --format for mosi
    return write_mosi(out, fmt=fmt, n_videos=6 if n_videos is None else n_videos, seed=seed, feature_dim=feature_dim)


def _allinone_msrvtt(out: str, *, n_videos: int | None, seed: int, **_: Any) -> Any:
    return allinone.write_allinone_msrvtt(out, n_videos=20 if n_videos is None else n_videos, seed=seed)


def _violet(name: str) -> Callable[..., Any]:
    def write(out: str, *, n_videos: int | None, seed: int, image_size: int | None, task: violet.TgifTask | None) -> Any:
        kw: dict[str, Any] = {"seed": seed}
        if n_videos is not None:
            kw["n_videos"] = n_videos
        if image_size is not None:
            # DALL-E codes come on the 32-pixel grid of the frames, as the official extractor makes them
            kw.update(image_size=image_size, vq_grid=image_size // 32)
        if name == "tgif":
            return violet.write_tgif(out, task=task or "action", **kw)
        writers: dict[str, Callable[..., dict[str, Path]]] = {"violet-msrvtt": violet.write_violet_msrvtt, "msvd": violet.write_msvd}
        return writers[name](out, **kw)

    return write


#: Feature datasets: name -> writer(out, n_videos=, seed=, feature_dim=, fmt=) -> paths and sizes by role.
FEATURE_WRITERS: dict[str, Callable[..., dict[str, Any]]] = {"youcook2": _youcook2, "msrvtt": _msrvtt, "mosi": _mosi}
#: Datasets of raw frames or videos: name -> writer(out, n_videos=, seed=, image_size=, task=) -> what was written.
FRAME_WRITERS: dict[str, Callable[..., Any]] = {"allinone-msrvtt": _allinone_msrvtt,
                                                "violet-msrvtt": _violet("violet-msrvtt"), "tgif": _violet("tgif"),
                                                "msvd": _violet("msvd")}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: writes one dataset, prints what was written, returns the exit status.

    Args:
        argv: The arguments after ``python -m data.synthetic`` (None: ``sys.argv[1:]``), e.g.
            ``["mosi", "--out", "DIR", "--format", "mmsa"]``.
    """
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=_DESCRIPTION)
    parser.add_argument("dataset", choices=[*FEATURE_WRITERS, *FRAME_WRITERS])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--videos", type=int, default=None, help="number of videos (youcook2: 6, msrvtt: 20, mosi: 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-dim", type=int, default=None,
                        help="feature width (default 1024; mosi: mmsa 20, univl 1024, csd 35)")
    parser.add_argument("--format", choices=sorted(MOSI_DEFAULT_DIMS), default=None, help="mosi only: file layout")
    parser.add_argument("--task", choices=["action", "transition", "frameqa"], default=None, help="tgif only: the QA task")
    parser.add_argument("--image-size", type=int, default=None, help="VIOLET datasets: frame side in pixels (default 48)")
    args = parser.parse_args(argv)
    if (args.format is None) == (args.dataset == "mosi"):
        parser.error("--format is required for mosi and only allowed for mosi")
    if args.dataset in FRAME_WRITERS:
        if args.feature_dim is not None:
            parser.error(f"--feature-dim does not apply to {args.dataset} (it writes frames, not features)")
        if args.task is not None and args.dataset != "tgif":
            parser.error("--task is only for tgif")
        try:
            written = FRAME_WRITERS[args.dataset](args.out, n_videos=args.videos, seed=args.seed,
                                                  image_size=args.image_size, task=args.task)
            print(json.dumps(written, default=str, indent=1) if isinstance(written, dict) else written)
        except ValueError as exc:
            parser.error(str(exc))
        return 0
    try:
        paths = FEATURE_WRITERS[args.dataset](args.out, n_videos=args.videos, seed=args.seed,
                                              feature_dim=args.feature_dim, fmt=args.format)
    except ValueError as exc:
        parser.error(str(exc))
    for key, value in paths.items():
        print(f"{key}: {value}")
    return 0
