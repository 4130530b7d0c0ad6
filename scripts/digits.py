"""The CPU demo's task: scikit-learn's digits (1,797 real 8x8 images) in the paper's image-only setting
(Appendix H, Table 12 right): a classification loss on a small labelled subset, plus two auxiliary
losses, rotation prediction (on every image, labels not needed) and mixup (on the labelled images).
Optionally a third auxiliary that hurts: ``random_labels``, the classification head trained on the
unlabelled images towards a random class fixed per image (a pseudo-label loss whose teacher knows nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = ["DigitsSplit", "load_digits_split", "PairedDigits", "DigitsCNN", "collate", "accuracy"]


@dataclass
class DigitsSplit:
    labelled_x: Tensor  # [L, 1, 8, 8] in [0, 1]
    labelled_y: Tensor  # [L]
    unlabelled_x: Tensor  # [U, 1, 8, 8]
    random_y: Tensor  # [U] a random class per unlabelled image (targets of the harmful auxiliary)
    val_x: Tensor  # [V, 1, 8, 8] validation, carved from the training images
    val_y: Tensor  # [V]
    test_x: Tensor  # [N, 1, 8, 8]
    test_y: Tensor  # [N]


def load_digits_split(labelled_per_class: int, val_per_class: int, test_fraction: float, seed: int = 0) -> DigitsSplit:
    """Stratified split of sklearn's digits: a held-out test set (``test_fraction`` of every class); from
    the rest (the training images) ``val_per_class`` validation and ``labelled_per_class`` labelled images
    per class, and every other training image unlabelled. The split depends only on ``seed``."""
    from sklearn.datasets import load_digits  # the images ship inside scikit-learn

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    test, val, lab, unl = [], [], [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == c))
        n_test = int(round(test_fraction * len(idx)))
        test += idx[:n_test].tolist()
        rest = idx[n_test:]
        val += rest[:val_per_class].tolist()
        lab += rest[val_per_class : val_per_class + labelled_per_class].tolist()
        unl += rest[val_per_class + labelled_per_class :].tolist()
    random_y = torch.from_numpy(rng.integers(0, 10, len(unl)))
    return DigitsSplit(x[lab], y[lab], x[unl], random_y, x[val], y[val], x[test], y[test])


class PairedDigits(Dataset):
    """Item ``i`` pairs unlabelled image ``i`` with labelled image ``i mod L`` (the small labelled set is
    cycled through once per ``L`` items), so one batch feeds all three losses."""

    def __init__(self, split: DigitsSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split.unlabelled_x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        j = i % len(self.split.labelled_y)
        s = self.split
        return {"x": s.labelled_x[j], "y": s.labelled_y[j], "u": s.unlabelled_x[i], "r": s.random_y[i]}


def collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class DigitsCNN(nn.Module):
    """A small CNN with a 10-way classification head and a 4-way rotation head.

    Losses (``loss_names`` order): ``cls`` (target: cross-entropy on labelled images), ``rotation``
    (predict which of 0/90/180/270 degrees each labelled and unlabelled image was turned by) and
    ``mixup`` (cross-entropy on convex mixes of labelled image pairs and their one-hot labels,
    lambda ~ Beta(1, 1) = U(0, 1), drawn with ``torch.rand``: ``torch.distributions.Beta`` samples
    through an autograd.Function that forward-mode AD cannot transform). With ``harmful=True`` a fourth,
    ``random_labels``: cross-entropy of the classification head on the unlabelled images towards their
    fixed random classes (batch key ``r``), which teaches the head to answer at random on real digits.
    """

    target_loss = "cls"

    def __init__(self, width: int = 32, harmful: bool = False) -> None:
        super().__init__()
        self.loss_names = ("cls", "rotation", "mixup") + (("random_labels",) if harmful else ())
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),  # 8x8 -> 4x4
            nn.Flatten(), nn.Linear(width * 16, 64), nn.ReLU(),
        )
        self.cls_head = nn.Linear(64, 10)
        self.rot_head = nn.Linear(64, 4)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits ``[B, 10]`` for images ``[B, 1, 8, 8]``."""
        return self.cls_head(self.features(x))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y, u = batch["x"], batch["y"], batch["u"]
        cls = F.cross_entropy(self.logits(x), y)
        # rotation prediction on all images of the batch
        imgs = torch.cat([x, u])
        k = torch.randint(0, 4, (len(imgs),), device=x.device)
        rotated = torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(imgs, k.tolist())])
        rotation = F.cross_entropy(self.rot_head(self.features(rotated)), k)
        # mixup on the labelled images
        lam = float(torch.rand(()))
        perm = torch.randperm(len(x), device=x.device)
        mixed = self.logits(lam * x + (1 - lam) * x[perm])
        logp = F.log_softmax(mixed, dim=-1)
        mixup = -(lam * logp.gather(1, y[:, None]) + (1 - lam) * logp.gather(1, y[perm][:, None])).mean()
        losses = {"cls": cls, "rotation": rotation, "mixup": mixup}
        if "random_labels" in self.loss_names:
            losses["random_labels"] = F.cross_entropy(self.logits(u), batch["r"])
        return losses


@torch.no_grad()
def accuracy(model: DigitsCNN, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of the classification head."""
    device = next(model.parameters()).device
    return float((model.logits(x.to(device)).argmax(-1).cpu() == y).float().mean())
