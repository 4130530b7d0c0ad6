"""A tiny MSR-VTT in All-in-one's raw-video layout, with real H.264 mp4 files, for tests and the demo.

Written under ``out_dir`` (the files :mod:`data.allinone.msrvtt` reads, reference/datasets.md §3.5):

* ``videos/video<i>.mp4``: libx264 yuv420p clips (:func:`data.video.write_video`) of different lengths.
  Each shows a background colour, a rectangle and a disc of video-specific colours moving on video-specific
  paths, and a brightness ramp over time, so frames differ between videos and within a video;
* ``MSR_VTT.json``: ``{"info": ..., "annotations": [{"image_id", "caption", "id"}, ...]}`` with several
  captions per video, shuffled so that grouping by video is needed;
* ``train_list_7k.txt``, ``train_list_9k.txt``, ``val_list_jsfusion.txt``: one id per line, no header;
* ``jsfusion_val_caption_idx.pkl``: dict test video id → index into its caption list (``pickle.dump``;
  readers load it through :mod:`data.safe_pickle`);
* ``synthetic_info.json``: the split sizes.

Split proportions follow the real data (10,000 videos: 7k = the first 7,010, JSFusion test = 1,000 videos
from the remaining 2,990, 9k = every video not in the test), with at least 2 test videos. Output is a pure
function of the arguments; the mp4 bytes depend on the bundled libx264 build.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from data.synthetic.base import dump_pickle, sentence, write_text
from data.video import write_video

__all__ = ["allinone_split_sizes", "video_frames", "write_allinone_msrvtt"]


def allinone_split_sizes(n_videos: int) -> dict[str, int]:
    """Official MSR-VTT proportions scaled to ``n_videos`` (see the module docstring)."""
    n_7k = n_videos - round(0.299 * n_videos)
    n_test = min(n_videos - n_7k, max(2, round(0.1 * n_videos)))
    return {"n_videos": n_videos, "n_7k": n_7k, "n_9k": n_videos - n_test, "n_test": n_test}


def video_frames(rng: np.random.Generator, n_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [n_frames, H, W, 3]: a moving rectangle and disc over a background, all colours from ``rng``."""
    background, box_colour, disc_colour = rng.integers(0, 256, size=(3, 3))
    box_h, box_w = max(2, height // 4), max(2, width // 4)
    box_start = rng.integers(0, [height - box_h + 1, width - box_w + 1])
    box_speed = rng.integers(-3, 4, size=2)
    radius = max(2, min(height, width) // 6)
    disc_phase, disc_speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.4)
    yy, xx = np.mgrid[:height, :width]
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for t in range(n_frames):
        frame = np.empty((height, width, 3), dtype=np.float64)
        frame[:] = background * (0.6 + 0.4 * t / max(1, n_frames - 1))  # brightness ramp
        y0, x0 = (box_start + t * box_speed) % [height - box_h + 1, width - box_w + 1]
        frame[y0:y0 + box_h, x0:x0 + box_w] = box_colour
        angle = disc_phase + disc_speed * t
        cy = height / 2 + (height / 2 - radius) * np.sin(angle)
        cx = width / 2 + (width / 2 - radius) * np.cos(angle)
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = disc_colour
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_allinone_msrvtt(out_dir: str | os.PathLike[str], *, n_videos: int = 20, seed: int = 0,
                          size_hw: tuple[int, int] = (48, 64), n_frames: tuple[int, int] = (16, 40),
                          fps: float = 25.0, captions_per_video: tuple[int, int] = (2, 5)) -> Path:
    """Write the dataset and return ``out_dir``.

    Args:
        out_dir: Folder to write into (created if needed).
        n_videos: Videos ``video0 … video{N-1}`` (>= 7 so that every split is non-empty and the 7k list
            differs from the 9k list).
        seed: Everything written is a function of the seed.
        size_hw: Frame (height, width), both even (yuv420p).
        n_frames: Inclusive range of frame counts per video.
        fps: Frame rate of the mp4 files.
        captions_per_video: Inclusive range of captions per video.

    Returns:
        ``Path(out_dir)``.
    """
    if n_videos < 7:
        raise ValueError(f"need at least 7 videos so every split is non-empty, got {n_videos}")
    if not 1 <= n_frames[0] <= n_frames[1] or not 1 <= captions_per_video[0] <= captions_per_video[1]:
        raise ValueError(f"need 1 <= min <= max for n_frames {n_frames} and captions_per_video {captions_per_video}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = allinone_split_sizes(n_videos)
    ids = [f"video{i}" for i in range(n_videos)]
    annotations: list[dict[str, Any]] = []
    for vid in ids:
        length = int(rng.integers(n_frames[0], n_frames[1] + 1))
        write_video(out / "videos" / f"{vid}.mp4", video_frames(rng, length, *size_hw), fps=fps)
        for _ in range(int(rng.integers(captions_per_video[0], captions_per_video[1] + 1))):
            annotations.append({"image_id": vid, "caption": sentence(rng, "video")})
    annotations = [dict(annotations[j], id=k) for k, j in enumerate(rng.permutation(len(annotations)))]
    data = {"info": {"description": "synthetic MSR-VTT in the All-in-one layout", "year": 2016},
            "annotations": annotations}
    write_text(out / "MSR_VTT.json", json.dumps(data))

    tail = ids[sizes["n_7k"]:]
    test = sorted(tail[j] for j in rng.choice(len(tail), size=sizes["n_test"], replace=False))
    n_caps = {vid: sum(a["image_id"] == vid for a in annotations) for vid in test}
    lists = {"train_list_7k.txt": ids[:sizes["n_7k"]], "train_list_9k.txt": [v for v in ids if v not in test],
             "val_list_jsfusion.txt": test}
    for name, rows in lists.items():
        write_text(out / name, "".join(f"{v}\n" for v in rows))
    caption_idx = {vid: int(rng.integers(n_caps[vid])) for vid in test}
    dump_pickle(caption_idx, out / "jsfusion_val_caption_idx.pkl")
    write_text(out / "synthetic_info.json", json.dumps(sizes, indent=1) + "\n")
    return out
