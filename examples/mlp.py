"""A new user's first MELTR run: an MLP on scikit-learn's digits with two auxiliary losses.

    python -m examples.mlp [--combiner meltr|sum|single|fixed|linear] [--run-dir runs/mlp]
    torchrun --nproc_per_node 2 -m examples.mlp      # the same on two processes (gloo on CPU)

The model returns its three named losses: ``cls`` (the task: digit classification), ``recon``
(reconstruct the image from the hidden layer) and ``rotation`` (which of 4 rotations was applied).
Everything else is :class:`meltr.TrainerConfig`'s defaults.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import meltr


class DigitsMLP(nn.Module):
    loss_names = ("cls", "recon", "rotation")  # the order is MELTR's task index
    target_loss = "cls"  # the loss we care about

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.cls = nn.Linear(hidden, 10)
        self.recon = nn.Linear(hidden, 64)
        self.rotation = nn.Linear(hidden, 4)

    def logits(self, x: Tensor) -> Tensor:
        return self.cls(self.body(x))

    def forward(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        h = self.body(x)
        k = torch.arange(len(x), device=x.device) % 4  # a fixed rotation per position: no randomness in forward
        rotated = x.clone()
        for r in range(1, 4):
            rotated[k == r] = torch.rot90(x[k == r], r, dims=(-2, -1))
        return {
            "cls": F.cross_entropy(self.cls(h), y),
            "recon": F.mse_loss(self.recon(h), x.flatten(1)),
            "rotation": F.cross_entropy(self.rotation(self.body(rotated)), k),
        }


def digits(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Scikit-learn's 1,797 digits as 8x8 images in [0, 1]: 80% train, 20% test (fixed split)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    return TensorDataset(x[order[:cut]], y[order[:cut]]), TensorDataset(x[order[cut:]], y[order[cut:]])


def accuracy(model: DigitsMLP, data: TensorDataset) -> float:
    x, y = data.tensors
    return float((model.logits(x).argmax(-1) == y).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--combiner", default="meltr")
    parser.add_argument("--run-dir", default="runs/examples/mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop early (a smoke test); default: the documented epochs")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    train, test = digits()
    model = DigitsMLP()
    cfg = meltr.TrainerConfig()  # the documented defaults
    cfg.combiner.name = args.combiner
    cfg.best_metric = "test_acc"
    cfg.max_steps = args.max_steps
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(args.seed))

    def evaluate(m: nn.Module) -> dict[str, float]:
        assert isinstance(m, DigitsMLP)  # the Trainer evaluates the model it was given
        return {"test_acc": accuracy(m, test)}

    trainer = meltr.Trainer(model, cfg, loader, eval_fn=evaluate, run_dir=args.run_dir, device="cpu")
    return trainer.fit()


if __name__ == "__main__":
    main()
