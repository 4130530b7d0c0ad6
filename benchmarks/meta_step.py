"""Per-step wall time and memory of the meta step, every scheme side by side in one run.

    python -m benchmarks.meta_step [--windows 8] [--every 3] [--size small|medium] [--device cpu|cuda]
                                   [--methods sum,lite_official,...]

A small transformer backbone (``nn.TransformerEncoderLayer``, so attention goes through
``scaled_dot_product_attention``) with three losses is trained by :class:`meltr.Trainer` for each method of
:data:`METHODS`: those of :data:`benchmarks.common.META_METHODS` (``sum``: no meta step; ``lite_official``:
MELTR with the official-style AID-FP-Lite, ``create_graph`` through the backbone; the fast modes ``lite_jvp``
and ``lite_fd``) and the comparison schemes of the paper's Table 8 (AID-FP, AID-CG, ITD, StocBiO). A method is
one line of config overrides. All trainers live in this one process and their windows of K steps (one meta
step each) alternate, so machine drift hits them alike; the median window is reported.

Memory, two ways (:mod:`benchmarks.memory`): autograd's saved-tensor peak (bytes of tensors saved for
backward and alive, storages deduplicated, parameters excluded; device-independent) and the process peak
(RSS high-water growth on CPU, ``torch.cuda.max_memory_allocated`` growth on CUDA). The issue's goal lines
follow the table (:func:`benchmarks.common.goal_lines`).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import META_METHODS, TrainSetup, train_table

# One line per method: overrides of CombinerConfig.name / HypergradConfig / MetaConfig (see benchmarks.common).
METHODS: dict[str, dict] = {
    **META_METHODS,
    "aid_fp": {"hypergrad": {"name": "aid_fp", "alpha": 0.1}},
    "aid_cg": {"hypergrad": {"name": "aid_cg", "alpha": 0.1}},
    "itd": {"hypergrad": {"name": "itd", "alpha": 0.1}},
    "stocbio": {"hypergrad": {"name": "stocbio", "alpha": 0.1}},
}
SIZES = {"small": dict(dim=128, layers=2, seq=32, batch=16), "medium": dict(dim=256, layers=4, seq=64, batch=32)}


class BenchBackbone(nn.Module):
    """Token encoder with a target classification loss, masked-token prediction and an order loss."""

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


def _batch(g: torch.Generator, batch: int, seq: int, vocab: int = 1000) -> dict[str, Tensor]:
    tok = torch.randint(1, vocab, (batch, seq), generator=g)
    return {"tokens": tok, "masked": tok.masked_fill(torch.rand(batch, seq, generator=g) < 0.15, 0), "label": tok[:, 0] % 10}


def train_setup(size: str, every: int, gamma: float) -> TrainSetup:
    """The benchmark backbone at ``SIZES[size]`` with AdamW 1e-4 and the univl loss-transformer preset."""
    from meltr import OptimConfig

    dims = SIZES[size]
    return TrainSetup(name="BenchBackbone", describe=f"dim {dims['dim']}, {dims['layers']} layers, seq {dims['seq']}, "
                                                     f"batch {dims['batch']}, gamma {gamma}",
                      make_model=lambda: BenchBackbone(dims["dim"], dims["layers"]),
                      make_batch=lambda g: _batch(g, dims["batch"], dims["seq"]), preset="univl",
                      optim=OptimConfig(name="adamw", lr=1e-4), every=every, gamma=gamma)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=8, help="timed windows of K steps per method (median)")
    parser.add_argument("--every", type=int, default=3, help="K: meta step every K backbone steps")
    parser.add_argument("--gamma", type=float, default=0.1, help="regulariser strength (UniVL's official default is off: 0)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; valid: {', '.join(METHODS)}")
    methods = {m: METHODS[m] for m in args.methods.split(",")}
    setup = train_setup(args.size, args.every, args.gamma)
    print(f"meta-step benchmark, {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    title = f"{args.size} backbone ({setup.describe}), {args.device}"
    print("\n".join(train_table(setup, torch.device(args.device), args.windows, title=title, methods=methods)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
