"""CaptionScorer vs pycocoevalcap's scorers called directly, input checks, and decoder post-processing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from evaluation.captioning import CAPTION_METRICS, CaptionScorer, postprocess

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared/fixtures/univl/golden.pt"

# Mixed case and punctuation so that PTB tokenisation matters; hypotheses are closest to the *second*
# reference, so scoring against the first only must lower the overlap metrics.
PREDICTIONS: dict[str | int, str] = {  # ids of two types: any hashable id works
    "vid1": "A man is slicing a tomato.",
    "vid2": "a woman pours milk into a bowl",
    "vid3": "two dogs play in the grass!",
    7: "someone is riding a bike down the road",
}
REFERENCES: dict[str | int, list[str]] = {
    "vid1": ["A person cuts vegetables in a kitchen.", "a man is slicing a red tomato", "chef chopping food"],
    "vid2": ["milk being poured", "a woman pours some milk into a bowl"],
    "vid3": ["animals outside", "two dogs are playing in the grass", "dogs running around"],
    7: ["a cyclist outdoors", "a person is riding a bike down a road"],
}


def _close_meteor(m: Meteor) -> None:
    m.meteor_p.stdin.close()
    m.meteor_p.kill()
    m.meteor_p.wait()
    m.meteor_p.stdout.close()
    m.meteor_p.stderr.close()


@pytest.fixture(scope="module")
def jvms() -> Iterator[tuple[CaptionScorer, Meteor]]:
    """Our scorer and an independent pycocoevalcap Meteor: two JVMs, started together so they warm up in parallel."""
    ours = CaptionScorer()
    ours.start()
    direct = Meteor()
    yield ours, direct
    ours.close()
    _close_meteor(direct)


def _direct(gts: dict, res: dict, meteor: Meteor | None, ptb: bool = True) -> dict[str, float]:
    """Reference computation: the pycocoevalcap calls written out, as coco-caption's eval does them."""
    if ptb:
        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in v] for i, v in gts.items()})
        res = tok.tokenize({i: [{"caption": c} for c in v] for i, v in res.items()})
    else:
        gts = {i: [c.strip() for c in v] for i, v in gts.items()}
        res = {i: [c.strip() for c in v] for i, v in res.items()}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {"BLEU-1": b[0], "BLEU-2": b[1], "BLEU-3": b[2], "BLEU-4": b[3]}
    if meteor is not None:
        out["METEOR"] = meteor.compute_score(gts, res)[0]
    out["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    return {k: float(v) for k, v in out.items()}


def test_all_references_match_pycocoevalcap(jvms: tuple[CaptionScorer, Meteor]) -> None:
    ours, direct = jvms
    got = ours.score(PREDICTIONS, REFERENCES)
    assert tuple(got) == CAPTION_METRICS
    assert got == _direct(REFERENCES, {i: [c] for i, c in PREDICTIONS.items()}, direct)
    assert all(0.0 < got[k] <= 1.0 for k in CAPTION_METRICS if k != "CIDEr")


def test_single_reference_reproduces_official_msrvtt_bug(jvms: tuple[CaptionScorer, Meteor]) -> None:
    ours, direct = jvms
    pid = ours._meteor.meteor_p.pid
    single = ours.score(PREDICTIONS, REFERENCES, single_reference=True)
    first_only = {i: r[:1] for i, r in REFERENCES.items()}
    assert single == _direct(first_only, {i: [c] for i, c in PREDICTIONS.items()}, direct)
    multi = ours.score(PREDICTIONS, REFERENCES)
    # The hypotheses paraphrase the second references, which single_reference drops.
    for k in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        assert multi[k] > single[k], k
    assert ours._meteor.meteor_p.pid == pid, "the METEOR JVM must be reused across calls"


def test_tokenize_none_is_strip_only() -> None:
    # nlg-eval style (UniVL): no PTB tokenizer, so "tomato." is one token. meteor=False keeps this JVM-free.
    scorer = CaptionScorer(tokenize="none", meteor=False)
    preds = {i: f"  {c} " for i, c in PREDICTIONS.items()}
    got = scorer.score(preds, REFERENCES)
    assert "METEOR" not in got
    assert got == _direct(REFERENCES, {i: [c] for i, c in preds.items()}, None, ptb=False)
    ptb = _direct(REFERENCES, {i: [c] for i, c in preds.items()}, None, ptb=True)
    assert got["BLEU-1"] != ptb["BLEU-1"]  # punctuation/case handling really differs
    assert scorer._tokenizer is None and not scorer.meteor_running
    # A line break inside a caption is a space (METEOR's pipe protocol is one line per caption).
    broken = scorer.score({"a": "a man\ncooks food"}, {"a": ["a man cooks\r\nfood", "food"]})
    assert broken == scorer.score({"a": "a man cooks food"}, {"a": ["a man cooks  food", "food"]})


def test_input_validation_names_offending_ids() -> None:
    scorer = CaptionScorer()
    refs = dict(REFERENCES)
    with pytest.raises(ValueError, match=r"no references for \['extra'\].*no prediction for \[\]"):
        scorer.score({**PREDICTIONS, "extra": "x"}, refs)
    with pytest.raises(ValueError, match=r"no references for \[\].*no prediction for \[7\]"):
        scorer.score({k: v for k, v in PREDICTIONS.items() if k != 7}, refs)
    with pytest.raises(ValueError, match=r"empty reference list for ids \['vid2'\]"):
        scorer.score(PREDICTIONS, {**refs, "vid2": []})
    with pytest.raises(TypeError, match=r"bare str for ids \['vid3'\]"):
        scorer.score(PREDICTIONS, {**refs, "vid3": "two dogs"})
    with pytest.raises(TypeError, match=r"non-str entries for ids \[7\]"):
        scorer.score(PREDICTIONS, {**refs, 7: ["ok", None]})  # type: ignore[list-item]  # the wrong type is the test
    with pytest.raises(TypeError, match=r"not str for ids \['vid1'\]"):
        scorer.score({**PREDICTIONS, "vid1": ["a", "list"]}, refs)  # type: ignore[dict-item]  # the wrong type is the test
    with pytest.raises(ValueError, match="no predictions"):
        scorer.score({}, {})
    with pytest.raises(ValueError, match="tokenize"):
        CaptionScorer(tokenize="bert")  # type: ignore[arg-type]
    # Validation happens before anything is started.
    assert scorer._meteor is None and scorer._bleu is None


def test_close_stops_the_jvm_and_context_manager() -> None:
    # Popen returns at once, so starting and killing a JVM here costs well under a second.
    with CaptionScorer() as scorer:
        scorer.start()
        proc = scorer._meteor.meteor_p
        assert scorer.meteor_running and proc.poll() is None
    assert proc.returncode is not None and not scorer.meteor_running
    scorer.close()  # idempotent
    assert scorer._meteor is None


# ---------------------------------------------------------------- postprocess (official UniVL rules)
def test_postprocess_word_pieces_by_hand() -> None:
    assert postprocess(["a", "man", "cook", "##s", "[SEP]", "extra"]) == "a man cooks"
    assert postprocess(["the", "dog", "[PAD]", "[SEP]", "x"]) == "the dog"  # whichever comes first
    assert postprocess(["##ing", "well", "[PAD]"]) == "ing well"  # official .strip("##")
    assert postprocess(["play", "##ing", "##ly"]) == "playingly"
    assert postprocess(["[SEP]", "a"]) == ""
    assert postprocess([]) == ""


def test_postprocess_ids_with_callable() -> None:
    vocab = {0: "[PAD]", 102: "[SEP]", 5: "slice", 6: "##d", 7: "bread", 8: "."}
    assert postprocess([5, 6, 7, 8, 102, 7], vocab.__getitem__) == "sliced bread ."
    assert postprocess(torch.tensor([5, 6, 0, 7, 102]), vocab.__getitem__) == "sliced"
    with pytest.raises(TypeError, match="id_to_token"):
        postprocess([5, 6])
    with pytest.raises(TypeError, match="all ints"):
        postprocess([5, "bread"], vocab.__getitem__)  # type: ignore[arg-type]  # the mixed list is the test


def test_postprocess_cuts_golden_beam_at_pad() -> None:
    assert GOLDEN.is_file(), f"golden fixture missing: {GOLDEN}"
    hyps = torch.load(GOLDEN, weights_only=True)["outputs"]["beam5_hyp_ids"]
    row = [int(t) for t in hyps[2]]
    assert 0 in row  # the README says row 2 holds a [PAD]
    special = {0: "[PAD]", 102: "[SEP]"}
    text = postprocess(row, lambda i: special.get(i, f"t{i}"))
    assert text == " ".join(f"t{i}" for i in row[: row.index(0)])
    assert postprocess(hyps[0], lambda i: special.get(i, f"t{i}")).count(" ") == len(hyps[0]) - 1
