"""Build VIOLET's frame pickle ``img_<ds>.pkl`` from a folder of videos, as ``tools/extract_video-frame.py`` does.

Usage::

    python -m data.violet.extract_frames --videos DIR --out img_msrvtt.pkl [--sample 5] [--ext mp4,avi,gif] [--workers 4]

Official behaviour followed (reference/violet.md §4, reference/datasets.md §3.4):

* N = ``--sample`` equally spaced frames that skip both ends: of a video with ``n`` frames, frames
  ``int(n / (N + 1) * (i + 1))`` for i = 0 … N-1 (5 downstream, 4 for pre-training);
* each frame saved as JPEG with PIL's defaults (quality 75, 4:2:0 chroma), stored as the ASCII base64 text
  (``str(b64encode(jpeg))[2:-1]``);
* one dict ``file stem → list of N strings`` for the whole folder (the official tool globs ``*.mp4``, the
  fork's copy ``*.avi``; ``--ext`` chooses).

Decoding goes through :func:`data.video.read_sampled_frames` (decord, PyAV as the fallback). The official tool
decodes every frame with PyAV and counts them; here ``n`` is the frame count of the decoder's index, which is
the same number for well-formed files. A video that cannot be decoded stops the run with an error naming it,
unless ``--skip-broken`` (then it is left out and listed).
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import os
import pickle
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from data.errors import DataFormatError
from data.video import Backend, VideoDecodeError, read_sampled_frames
from meltr.checkpoint import atomic_write

__all__ = ["DEFAULT_EXTS", "sample_indices", "encode_frame", "extract_video", "extract_folder", "write_pickle", "main"]

log = logging.getLogger(__name__)

DEFAULT_EXTS = ("mp4", "avi", "gif", "webm", "mkv", "mov")


def sample_indices(n_frames: int, n_sample: int) -> list[int]:
    """The official frame choice: ``int(n / (N + 1) * (i + 1))`` for i in 0 … N-1 (float arithmetic as coded)."""
    if n_sample < 1:
        raise ValueError(f"n_sample must be >= 1, got {n_sample}")
    return [int(n_frames / (n_sample + 1) * (i + 1)) for i in range(n_sample)]


def encode_frame(frame: np.ndarray) -> str:
    """uint8 [H, W, 3] RGB → base64 text of its JPEG at PIL's default settings."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def extract_video(path: str | os.PathLike[str], n_sample: int, backend: Backend = "auto") -> list[str]:
    """The N base64 JPEG frames of one video.

    Raises:
        MissingDataFileError / VideoDecodeError: The file is missing, cannot be decoded, or has no frames.
    """

    def choose(n: int) -> list[int]:
        if n < 1:
            raise VideoDecodeError(os.fspath(path), "the video has no frames")
        return sample_indices(n, n_sample)

    frames, _ = read_sampled_frames(path, choose, backend)
    return [encode_frame(f) for f in frames]


def _extract_one(job: tuple[str, int, Backend, bool]) -> tuple[str, list[str] | None, str]:
    """Worker: (path, frames or None, error message or '')."""
    path, n_sample, backend, skip_broken = job
    try:
        return path, extract_video(path, n_sample, backend), ""
    except DataFormatError as exc:
        if not skip_broken:
            raise
        return path, None, str(exc)


def extract_folder(videos: str | os.PathLike[str], n_sample: int = 5, *, exts: Sequence[str] = DEFAULT_EXTS,
                   workers: int = 0, skip_broken: bool = False, backend: Backend = "auto"
                   ) -> tuple[dict[str, list[str]], list[str]]:
    """Extract every video of a folder (not recursive), keyed by file stem, in file-name order.

    Args:
        videos: The folder.
        n_sample: N frames per video.
        exts: File extensions to take (without dot, case-insensitive).
        workers: Processes (0 = in this process).
        skip_broken: Leave undecodable videos out instead of raising.
        backend: Decoder (see :func:`data.video.read_frames`).

    Returns:
        (``{stem: [N base64 strings]}``, error messages of the skipped videos).

    Raises:
        DataFormatError: The folder has no matching video, or two files share a stem.
    """
    folder = Path(videos)
    if not folder.is_dir():
        raise DataFormatError(folder, "video folder not found")
    wanted = {e.lower().lstrip(".") for e in exts}
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in wanted)
    if not paths:
        raise DataFormatError(folder, f"no video with extension {sorted(wanted)}")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise DataFormatError(p, f"has the same stem (video id) as {stems[p.stem].name}")
        stems[p.stem] = p
    jobs = [(os.fspath(p), n_sample, backend, skip_broken) for p in paths]
    if workers > 0:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_extract_one, jobs, chunksize=8))
    else:
        results = [_extract_one(j) for j in jobs]
    out: dict[str, list[str]] = {}
    skipped = []
    for path, frames, error in results:
        if frames is None:
            skipped.append(error)
            log.warning("skipped %s", error)
        else:
            out[Path(path).stem] = frames
    return out, skipped


def write_pickle(obj: dict[str, list[str]], out: str | os.PathLike[str]) -> None:
    """``pickle.dump`` (protocol 4, as the measured official pickles), atomically
    (:func:`meltr.checkpoint.atomic_write`)."""
    atomic_write(out, lambda f: pickle.dump(obj, f, protocol=4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, help="folder of video files (video id = file stem)")
    parser.add_argument("--out", required=True, help="pickle to write, e.g. img_msrvtt.pkl")
    parser.add_argument("--sample", type=int, default=5, help="frames per video (5 downstream, 4 pre-training)")
    parser.add_argument("--ext", default=",".join(DEFAULT_EXTS), help="comma-separated extensions")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0 = this one)")
    parser.add_argument("--skip-broken", action="store_true", help="leave undecodable videos out")
    parser.add_argument("--backend", choices=("auto", "decord", "av"), default="auto")
    args = parser.parse_args(argv)
    if args.sample < 1:
        parser.error("--sample must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        frames, skipped = extract_folder(args.videos, args.sample, exts=args.ext.split(","), workers=args.workers,
                                         skip_broken=args.skip_broken, backend=args.backend)
    except DataFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_pickle(frames, args.out)
    print(f"wrote {args.out}: {len(frames)} videos x {args.sample} frames" +
          (f", {len(skipped)} skipped" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
