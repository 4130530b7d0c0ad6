"""Throughput of VIOLET's frame path (base64 → JPEG → pad to square → bilinear resize → tensor), in one run.

    python -m benchmarks.violet_data [--videos 40] [--image-size 320] [--size-img 224] [--reps 3]

A synthetic MSR-VTT (:func:`data.synthetic.violet.write_violet_msrvtt`: 5 JPEG frames per video, long side
between half of and ``--image-size`` pixels, landscape / portrait / square) is written to a temporary folder and
read through :mod:`data.violet`. Rows, all in frames per second (median of ``--reps`` passes, the rows interleaved):

1. ``decode_frame`` alone over every stored frame (the pure PIL path, numpy out);
2. ``RetrievalTrain[i]`` in a Python loop (adds ToTensor, the VQ layout and the tokenizer);
3. ``DataLoader(batch_size=5)`` with ``num_workers=0`` and with ``num_workers=2`` (persistent workers; the first
   pass, which pays the worker start-up, is not timed).

Ratios are against row 1. The official loader (torchvision ``Pad`` + ``Resize`` + ``ToTensor`` on the PIL image)
does the same PIL work per frame, so row 1 is also its single-process cost; no timing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sized

import torch
from torch.utils.data import DataLoader

from benchmarks.common import median_ms
from data import collate
from data.synthetic.violet import write_violet_msrvtt
from data.text import TextTokenizer, load_tokenizer
from data.violet import VioletDataConfig, build_violet_data, decode_frame, load_violet_sources
from scripts.recipes.common import tokenizer_folder

BATCH = 5  # the fork's per-GPU batch for MSR-VTT retrieval (args_msrvtt-retrieval_*.json)


def _tokenizer() -> TextTokenizer:
    return load_tokenizer(tokenizer_folder(""))


def run(videos: int, image_size: int, size_img: int, reps: int) -> list[str]:
    """Write the data, time the four rows, return the markdown table."""
    with tempfile.TemporaryDirectory() as root:
        write_violet_msrvtt(root, n_videos=videos, image_size=image_size, vq_grid=size_img // 32)
        cfg = VioletDataConfig(root=root, size_img=size_img)
        sources = load_violet_sources(cfg)
        dataset = build_violet_data(cfg, _tokenizer(), "train", sources)
        assert isinstance(dataset, Sized)  # every VIOLET dataset is map-style
        all_frames = [f for frames in sources.img.values() for f in frames]
        frames_per_pass = {"decode": len(all_frames), "dataset": len(dataset) * cfg.n_frames}

        def loader_pass(loader: DataLoader) -> Callable[[], None]:
            def one_pass() -> None:
                for _ in loader:
                    pass
            return one_pass

        loaders = {w: DataLoader(dataset, batch_size=BATCH, collate_fn=collate, num_workers=w, persistent_workers=w > 0)
                   for w in (0, 2)}
        fns: dict[str, tuple[Callable[[], object], int]] = {
            "`decode_frame` (PIL only), 1 process": (lambda: [decode_frame(f, size_img) for f in all_frames],
                                                     frames_per_pass["decode"]),
            "`RetrievalTrain[i]` loop, 1 process": (lambda: [dataset[i] for i in range(len(dataset))],
                                                    frames_per_pass["dataset"]),
            **{f"DataLoader batch {BATCH}, num_workers={w}": (loader_pass(loader), frames_per_pass["dataset"])
               for w, loader in loaders.items()},
        }
        # interleaved repetitions; the warm-up pass also starts the persistent workers
        ms = median_ms({name: fn for name, (fn, _) in fns.items()}, reps, warmup=1, device=torch.device("cpu"))
        rows = {name: (ms[name] / 1000, n) for name, (_, n) in fns.items()}
        del loaders
    rate = {name: n / sec for name, (sec, n) in rows.items()}
    base = next(iter(rate.values()))
    lines = [f"VIOLET frame path: {videos} videos x {cfg.n_frames} frames, long side <= {image_size} px → "
             f"{size_img}x{size_img}; {len(dataset)} training samples; torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n",
             "| path | frames / s | vs `decode_frame` |", "|---|---|---|"]
    lines += [f"| {name} | {r:.0f} | {r / base:.2f}x |" for name, r in rate.items()]
    w0, w2 = rate[f"DataLoader batch {BATCH}, num_workers=0"], rate[f"DataLoader batch {BATCH}, num_workers=2"]
    lines.append(f"\nnum_workers=2 vs 0: {w2 / w0:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=320, help="longest stored frame side (MSR-VTT: 320)")
    parser.add_argument("--size-img", type=int, default=224, help="S (official 224)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    print("\n".join(run(args.videos, args.image_size, args.size_img, args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
