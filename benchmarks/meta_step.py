"""Per-step wall time and peak memory of the meta step, every scheme side by side in one run.

    python -m benchmarks.meta_step [--steps 24] [--every 3] [--size small|medium] [--device cpu|cuda]

A small transformer backbone (``nn.TransformerEncoderLayer``, so attention goes through
``scaled_dot_product_attention``) with three losses is trained by :class:`meltr.Trainer` for each
method: ``sum`` (no meta step), MELTR with the official-style AID-FP-Lite (``create_graph`` through
the backbone), our AID-FP-Lite with a forward-mode JVP and with central finite differences, and the
comparison schemes of the paper's Table 8 (AID-FP, AID-CG, ITD, StocBiO). Each method runs in its own
subprocess so that its peak memory is its own: on CPU the growth of the resident-set high-water mark
during the timed steps, on CUDA ``torch.cuda.max_memory_allocated``. Ratios are printed against ``sum``,
and the overhead of our Lite against the overhead of the official-style Lite.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS: dict[str, dict] = {
    "sum": {"combiner": "sum"},
    "lite_official": {"combiner": "meltr", "hypergrad": "aid_fp_lite", "mode": "autograd"},
    "lite_jvp": {"combiner": "meltr", "hypergrad": "aid_fp_lite", "mode": "jvp"},
    "lite_fd": {"combiner": "meltr", "hypergrad": "aid_fp_lite", "mode": "fd"},
    "aid_fp": {"combiner": "meltr", "hypergrad": "aid_fp", "mode": None},
    "aid_cg": {"combiner": "meltr", "hypergrad": "aid_cg", "mode": None},
    "itd": {"combiner": "meltr", "hypergrad": "itd", "mode": None},
    "stocbio": {"combiner": "meltr", "hypergrad": "stocbio", "mode": None},
}
SIZES = {"small": dict(dim=128, layers=2, seq=32, batch=16), "medium": dict(dim=256, layers=4, seq=64, batch=32)}


class BenchBackbone(nn.Module):
    """Token encoder with a primary classification loss, masked-token prediction and an order loss."""

    loss_names = ("cls", "mtm", "order")
    target_loss = "cls"

    def __init__(self, dim: int, layers: int, vocab: int = 1000, classes: int = 10) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(512, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.cls_head = nn.Linear(dim, classes)
        self.mtm_head = nn.Linear(dim, vocab)
        self.order_head = nn.Linear(dim, 2)

    def _encode(self, tok: Tensor) -> Tensor:
        return self.enc(self.emb(tok) + self.pos[: tok.shape[1]])

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        tok = batch["tokens"]
        h = self._encode(tok)
        masked = self._encode(batch["masked"])
        flipped = self._encode(tok.flip(1))
        order = torch.cat([self.order_head(h.mean(1)), self.order_head(flipped.mean(1))])
        target = torch.cat([torch.zeros(len(tok)), torch.ones(len(tok))]).long().to(tok.device)
        return {
            "cls": F.cross_entropy(self.cls_head(h.mean(1)), batch["label"]),
            "mtm": F.cross_entropy(self.mtm_head(masked).flatten(0, 1), tok.flatten()),
            "order": F.cross_entropy(order, target),
        }


def _batches(n: int, batch: int, seq: int, vocab: int = 1000) -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        tok = torch.randint(1, vocab, (batch, seq), generator=g)
        out.append({"tokens": tok, "masked": tok.masked_fill(torch.rand(batch, seq, generator=g) < 0.15, 0), "label": tok[:, 0] % 10})
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_method(name: str, steps: int, every: int, size: str, device: str, warmup: int, gamma: float) -> dict:
    """Trains ``steps`` timed steps of ``name`` in this process; returns time and memory figures."""
    from meltr import CombinerConfig, HypergradConfig, MetaConfig, OptimConfig, Trainer, TrainerConfig
    from meltr.loss_transformer import preset

    spec, dims = METHODS[name], SIZES[size]
    torch.manual_seed(0)
    model = BenchBackbone(dims["dim"], dims["layers"])
    cfg = TrainerConfig(
        combiner=CombinerConfig(name=spec["combiner"], meltr=preset("univl")),
        optim=OptimConfig(name="adamw", lr=1e-4),
        meta=MetaConfig(every=every, gamma=gamma, hypergrad=HypergradConfig(name=spec.get("hypergrad", "aid_fp_lite"), mode=spec.get("mode"), alpha=0.1)),
        max_steps=warmup + steps,
        tensorboard=False,
        log_every=10**9,
    )
    batches = _batches(warmup + steps, dims["batch"], dims["seq"])
    trainer = Trainer(model, cfg, batches, device=device)
    for b in batches[:warmup]:
        trainer.train_step([b])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated() / 2**20
    rss0 = _rss_mb()
    start = time.perf_counter()
    for b in batches[warmup:]:
        trainer.train_step([b])
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 - base_mem) if cuda else (_rss_mb() - rss0)
    return {"method": name, "ms_per_step": 1000 * elapsed / steps, "peak_mb": peak, "rss_before_mb": rss0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="timed steps per method (a multiple of --every)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--every", type=int, default=3, help="K: meta step every K backbone steps")
    parser.add_argument("--gamma", type=float, default=0.1, help="regulariser strength (UniVL's official default is off: 0)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_method(args.worker, args.steps, args.every, args.size, args.device, args.warmup, args.gamma)))
        return 0
    rows = {}
    for name in args.methods.split(","):
        cmd = [sys.executable, "-m", "benchmarks.meta_step", "--worker", name, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--every", str(args.every), "--gamma", str(args.gamma), "--size", args.size, "--device", args.device]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"measured {name}: {rows[name]['ms_per_step']:.1f} ms/step", file=sys.stderr)
    base = rows.get("sum")
    mem_label = "peak CUDA MiB" if args.device.startswith("cuda") else "peak RSS growth MiB"
    print(f"\n{args.size} backbone, {args.device}, K={args.every}, gamma={args.gamma}, {args.steps} timed steps per method\n")
    print(f"| method | ms/step | time vs sum | {mem_label} | memory vs sum |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        t = f"{r['ms_per_step'] / base['ms_per_step']:.2f}x" if base else "n/a"
        m = f"{(r['peak_mb'] + r['rss_before_mb']) / (base['peak_mb'] + base['rss_before_mb']):.3f}x" if base and not args.device.startswith("cuda") else (
            f"{r['peak_mb'] / base['peak_mb']:.3f}x" if base else "n/a")
        print(f"| {name} | {r['ms_per_step']:.1f} | {t} | {r['peak_mb']:.1f} | {m} |")
    if base and "lite_official" in rows:
        off = rows["lite_official"]["ms_per_step"] - base["ms_per_step"]
        for ours in ("lite_jvp", "lite_fd"):
            if ours in rows:
                over = rows[ours]["ms_per_step"] - base["ms_per_step"]
                print(f"\noverhead of {ours} / overhead of lite_official: {over:.1f} / {off:.1f} ms = {over / off:.2f} (goal <= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
