"""Beam-search captioning that reproduces UniVL's official decoder search, with the cross encoder cached.

Official behaviour (``main_task_caption.py`` + ``modules/beam.py``), reproduced step for step:

* every instance starts ``beam_size`` identical beams at ``[CLS]``; step 1 expands beam 0 only;
* each step re-runs the decoder on the full prefix (all-ones decoder mask) and scores the last position's
  ``log_softmax``; candidates are ``beam score + log-prob`` over every (beam, word) pair; the top
  ``beam_size`` survive (no length penalty; beams that emitted [SEP] keep being expanded);
* an instance stops when its *best* beam's newest token is [SEP]; it then leaves the batch;
* at most ``max_length`` steps (official: ``max_words``); the answer is the best-scoring beam, without [CLS].

The one change: the cross encoder output is computed once per video instead of at every step (the
official code recomputes it, which costs more and gives the same numbers). Prefixes are fed in the
order of ``sort(scores, descending)``, as the official ``get_current_state`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["BeamOutput", "Beam", "beam_search", "DecodeFn"]


class DecodeFn(Protocol):
    """``(rows [R], prefixes [R, t]) -> logits [R, t, vocab]``: the decoder run on cached encoder rows."""

    def __call__(self, rows: Tensor, prefixes: Tensor) -> Tensor: ...


@dataclass
class BeamOutput:
    """Result of :func:`beam_search`.

    Attributes:
        ids: per instance, the best hypothesis' token ids (without the start token; may contain the end
            token and anything after it: the text post-processing cuts there, as in the official eval).
        scores: ``[B]`` summed log-probabilities of those hypotheses.
    """

    ids: list[list[int]]
    scores: Tensor


@dataclass
class Beam:
    """One instance's beam: scores, back-pointers and emitted tokens (official ``Beam`` semantics)."""

    size: int
    bos_id: int
    eos_id: int
    device: torch.device
    scores: Tensor = field(init=False)
    prev_ks: list[Tensor] = field(init=False, default_factory=list)
    next_ys: list[Tensor] = field(init=False, default_factory=list)
    done: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.scores = torch.zeros(self.size, device=self.device)
        self.next_ys = [torch.full((self.size,), self.bos_id, dtype=torch.long, device=self.device)]

    def current_prefixes(self) -> Tensor:
        """``[size, t]`` prefixes (start token included), ordered by descending score."""
        if not self.prev_ks:
            return self.next_ys[0][:, None]
        order = torch.sort(self.scores, 0, True).indices.tolist()
        hyps = [[self.bos_id, *self.hypothesis(k)] for k in order]
        return torch.tensor(hyps, dtype=torch.long, device=self.device)

    def advance(self, log_probs: Tensor) -> bool:
        """Extends the beam with ``log_probs [size, vocab]`` (rows in :meth:`current_prefixes` order).

        Returns:
            whether the instance is finished (its best beam just emitted the end token).
        """
        vocab = log_probs.shape[1]
        # First step: every beam holds the same prefix, so only row 0 is expanded.
        candidates = log_probs + self.scores[:, None] if self.prev_ks else log_probs[0]
        best, flat = candidates.reshape(-1).topk(self.size, 0, True, True)
        self.scores = best
        origin = flat // vocab
        self.prev_ks.append(origin)
        self.next_ys.append(flat - origin * vocab)
        self.done = int(self.next_ys[-1][0]) == self.eos_id
        return self.done

    def hypothesis(self, k: int) -> list[int]:
        """Token ids of beam ``k``, walking the back-pointers (start token excluded)."""
        tokens = []
        for step in range(len(self.prev_ks) - 1, -1, -1):
            tokens.append(int(self.next_ys[step + 1][k]))
            k = int(self.prev_ks[step][k])
        return tokens[::-1]

    def best(self) -> tuple[list[int], Tensor]:
        """(ids, score) of the highest-scoring beam."""
        score, k = torch.sort(self.scores, 0, True)
        return self.hypothesis(int(k[0])), score[0]


@torch.no_grad()
def beam_search(decode: DecodeFn, batch_size: int, *, beam_size: int = 5, max_length: int, bos_id: int = 101,
                eos_id: int = 102, device: torch.device | str = "cpu") -> BeamOutput:
    """Official UniVL beam search over ``batch_size`` instances.

    Args:
        decode: runs the decoder for encoder rows ``rows`` (indices into ``batch_size · beam_size`` cached
            rows, instance-major) on ``prefixes``; see :class:`DecodeFn`.
        batch_size: number of instances ``B``.
        beam_size: beams per instance (official: 5).
        max_length: maximum number of generated tokens (official: ``max_words``).
        bos_id: start token ([CLS] = 101). eos_id: end token ([SEP] = 102).
        device: where the prefixes live.

    Returns:
        :class:`BeamOutput` with the best hypothesis and score per instance.
    """
    device = torch.device(device)
    beams = [Beam(beam_size, bos_id, eos_id, device) for _ in range(batch_size)]
    active = list(range(batch_size))
    offsets = torch.arange(beam_size, device=device)
    for _ in range(max_length):
        prefixes = torch.cat([beams[i].current_prefixes() for i in active])
        rows = (torch.tensor(active, device=device)[:, None] * beam_size + offsets).reshape(-1)
        logits = decode(rows, prefixes)[:, -1]
        log_probs = logits.float().log_softmax(dim=-1).view(len(active), beam_size, -1)
        active = [i for pos, i in enumerate(active) if not beams[i].advance(log_probs[pos])]
        if not active:
            break
    best = [b.best() for b in beams]
    return BeamOutput([ids for ids, _ in best], torch.stack([s for _, s in best]))
