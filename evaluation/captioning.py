"""Caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) through pycocoevalcap, and decoder post-processing.

Differences from the official UniVL/MELTR evaluation, all selectable:

* **References.** Every reference of an id is used. The official MSRVTT code scored each video against
  its *first* caption only (its multi-reference branch tests ``datatype == "msrvtt7k"``, which never
  matches); ``single_reference=True`` reproduces that. YouCook2 has one reference per clip, so both agree.
* **Tokenisation.** ``tokenize="ptb"`` (default) runs the coco-caption PTBTokenizer (lower-cases,
  splits, drops punctuation) on predictions and references, as coco-caption's own evaluation does.
  ``tokenize="none"`` only strips the strings, as the ``nlg-eval`` package used by UniVL does; with it,
  punctuation tokens such as ``.`` count as words.

SPICE is not offered: it needs Stanford CoreNLP jars that pycocoevalcap downloads on first use.

METEOR runs in a Java subprocess whose start costs several seconds, so a :class:`CaptionScorer` keeps a
single METEOR process for its lifetime. Create one per run (or per test session), and call
:meth:`CaptionScorer.close` or use it as a context manager.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

__all__ = ["CAPTION_METRICS", "CaptionScorer", "postprocess"]

CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
_SHOW_IDS = 10  # how many offending ids an error message lists
# A caption id: any hashable, one type per call (Mapping is invariant in its key, so dict[str, str] is not a
# Mapping[Hashable, str]; a type variable accepts it).
_Id = TypeVar("_Id", bound=Hashable)


def _ids(ids: Sequence[Hashable] | set[Hashable]) -> str:
    shown = list(ids)[:_SHOW_IDS]
    more = f" (+{len(ids) - _SHOW_IDS} more)" if len(ids) > _SHOW_IDS else ""
    return f"{shown}{more}"


def _one_line(text: str) -> str:
    # METEOR talks to its JVM one line per request, and the PTB tokenizer maps one line to one caption:
    # an embedded line break would shift every later caption.
    return text.replace("\r", " ").replace("\n", " ")


class CaptionScorer:
    """Scores captions with one reusable instance of each pycocoevalcap scorer.

    The scorers (and METEOR's JVM) are created on first use, or by :meth:`start`.

    Args:
        tokenize: "ptb" (coco-caption PTBTokenizer) or "none" (strip only, as nlg-eval/UniVL). See the
            module docstring.
        meteor: compute METEOR. ``False`` avoids Java entirely when ``tokenize="none"`` (quick checks
            during training); the result then has no ``"METEOR"`` key.

    Example:
        >>> with CaptionScorer() as scorer:                                   # doctest: +SKIP
        ...     scorer.score({"v1": "a man is cooking"}, {"v1": ["a man cooks", "someone cooks food"]})
    """

    def __init__(self, tokenize: Literal["ptb", "none"] = "ptb", meteor: bool = True) -> None:
        if tokenize not in ("ptb", "none"):
            raise ValueError(f"tokenize must be 'ptb' or 'none', got {tokenize!r}")
        self.tokenize = tokenize
        self.use_meteor = meteor
        self._tokenizer: Any = None
        self._bleu: Any = None
        self._rouge: Any = None
        self._cider: Any = None
        self._meteor: Any = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the scorers now. METEOR's JVM then warms up in the background, e.g. during decoding."""
        # Imported here so that importing this module needs neither pycocoevalcap nor Java.
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        if self._bleu is None:
            self._bleu, self._rouge, self._cider = Bleu(4), Rouge(), Cider()
        if self.tokenize == "ptb" and self._tokenizer is None:
            from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

            self._tokenizer = PTBTokenizer()
        if self.use_meteor and self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            try:
                self._meteor = Meteor()
            except FileNotFoundError as err:  # Popen could not find the `java` executable
                raise RuntimeError("METEOR needs a Java runtime (`java` on PATH); or pass meteor=False") from err

    @property
    def meteor_running(self) -> bool:
        """Whether this scorer holds a live METEOR process."""
        return self._meteor is not None and self._meteor.meteor_p.poll() is None

    def close(self) -> None:
        """Stop the METEOR JVM. Safe to call twice; a later :meth:`score` starts a new one."""
        meteor, self._meteor = self._meteor, None
        if meteor is None:
            return
        proc = meteor.meteor_p
        # Take pycocoevalcap's own lock so that no request is cut in half.
        with meteor.lock:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()  # reap it: no zombie, no ResourceWarning

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- scoring -------------------------------------------------------------------------------------
    def score(
        self,
        predictions: Mapping[_Id, str],
        references: Mapping[_Id, Sequence[str]],
        single_reference: bool = False,
    ) -> dict[str, float]:
        """Corpus-level caption metrics.

        Args:
            predictions: id -> generated caption (one string per id).
            references: id -> non-empty list of reference captions; same id set as ``predictions``.
            single_reference: score against ``references[id][0]`` only, reproducing the official MSRVTT
                evaluation bug (meltr_official.md section 8 item 9). Leave False for correct numbers.

        Returns:
            ``{"BLEU-1": .., "BLEU-2": .., "BLEU-3": .., "BLEU-4": .., "METEOR": .., "ROUGE-L": .., "CIDEr": ..}``
            as fractions (CIDEr is unbounded; papers print it times 100). No METEOR when ``meteor=False``.

        Raises:
            ValueError: empty input, differing id sets, or an id with no reference (ids are named).
            TypeError: a caption that is not a ``str``, or references given as a bare string.
        """
        self._validate(predictions, references)
        self.start()
        order = list(predictions)  # keep the caller's order; every scorer iterates the same dict order
        res = {i: [_one_line(predictions[i])] for i in order}
        gts = {i: [_one_line(r) for r in (references[i][:1] if single_reference else references[i])] for i in order}
        if self._tokenizer is not None:
            # pycocoevalcap's tokenizer takes {id: [{"caption": str}, ...]}.
            res = self._tokenizer.tokenize({i: [{"caption": c} for c in v] for i, v in res.items()})
            gts = self._tokenizer.tokenize({i: [{"caption": c} for c in v] for i, v in gts.items()})
        else:
            res = {i: [c.strip() for c in v] for i, v in res.items()}
            gts = {i: [c.strip() for c in v] for i, v in gts.items()}

        bleu, _ = self._bleu.compute_score(gts, res, verbose=0)
        out = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
        if self.use_meteor:
            out["METEOR"] = float(self._meteor.compute_score(gts, res)[0])
        out["ROUGE-L"] = float(self._rouge.compute_score(gts, res)[0])
        out["CIDEr"] = float(self._cider.compute_score(gts, res)[0])
        return out

    @staticmethod
    def _validate(predictions: Mapping[_Id, str], references: Mapping[_Id, Sequence[str]]) -> None:
        if not predictions:
            raise ValueError("no predictions to score")
        missing = [i for i in predictions if i not in references]
        extra = [i for i in references if i not in predictions]
        if missing or extra:
            raise ValueError(
                f"predictions and references must have the same ids: no references for {_ids(missing)}, "
                f"no prediction for {_ids(extra)}"
            )
        bad_pred = [i for i, c in predictions.items() if not isinstance(c, str)]
        if bad_pred:
            raise TypeError(f"predictions must be str; not str for ids {_ids(bad_pred)}")
        # A bare string would be iterated character by character, each character a "reference".
        bare = [i for i, r in references.items() if isinstance(r, str)]
        if bare:
            raise TypeError(f"references must be lists of str, got a bare str for ids {_ids(bare)}")
        empty = [i for i, r in references.items() if len(r) == 0]
        if empty:
            raise ValueError(f"every id needs at least one reference; empty reference list for ids {_ids(empty)}")
        bad_ref = [i for i, r in references.items() if not all(isinstance(c, str) for c in r)]
        if bad_ref:
            raise TypeError(f"references must be lists of str; non-str entries for ids {_ids(bad_ref)}")


@runtime_checkable
class _HasToList(Protocol):
    """A 1-D ``torch.Tensor`` or ``np.ndarray`` (duck-typed: this module imports neither)."""

    def tolist(self) -> Iterable[object]: ...


def postprocess(
    tokens: Sequence[int] | Sequence[str] | _HasToList,
    id_to_token: Callable[[int], str] | None = None,
    sep_token: str = "[SEP]",
    pad_token: str = "[PAD]",
) -> str:
    """Decoder output -> caption string, exactly as the official UniVL caption evaluation does it.

    Steps: ids -> word pieces; cut at the first ``sep_token``, then at the first ``pad_token``; join with
    spaces; merge word pieces by deleting ``" ##"``; strip ``#`` characters and then spaces from both ends
    (the official ``.strip("##").strip()``, which also removes a leading ``##`` of a dangling piece).

    Args:
        tokens: token ids (list, tuple, 1-D tensor/array) or word-piece strings. Do not include the
            leading [CLS]/start token (beam search returns hypotheses without it).
        id_to_token: maps one id to its word piece (e.g. ``tokenizer.convert_ids_to_tokens`` or
            ``vocab_list.__getitem__``); required when ``tokens`` are ids, unused for strings.
        sep_token: end-of-caption piece.
        pad_token: padding piece.

    Returns:
        The detokenised caption, e.g. ``["a", "man", "cook", "##s", "[SEP]"] -> "a man cooks"``.
    """
    seq: list[object] = list(tokens.tolist() if isinstance(tokens, _HasToList) else tokens)
    words = [t for t in seq if isinstance(t, str)]
    ids = [t for t in seq if isinstance(t, int) and not isinstance(t, bool)]
    if len(words) == len(seq):  # also the empty sequence: an empty caption
        pieces = words
    elif len(ids) == len(seq):
        if id_to_token is None:
            raise TypeError("postprocess got token ids; pass id_to_token to map them to word pieces")
        pieces = [id_to_token(t) for t in ids]
    else:
        raise TypeError("tokens must be all ints (ids) or all strs (word pieces)")
    for stop in (sep_token, pad_token):  # official order: [SEP] first, then [PAD]
        if stop in pieces:
            pieces = pieces[: pieces.index(stop)]
    return " ".join(pieces).replace(" ##", "").strip("#").strip()
