"""VIOLET model behaviour on tiny configs: loss subsets, the fork-quirk switch, masks, evaluation helpers, config
and batch errors, and the Video Swin window helpers against hand-computed cases. (The loss contract, gradients
and MELTR's derivatives are checked for every backbone in ``tests/contract``.)"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from backbones.common.losses import masked_cross_entropy
from backbones.violet import MASK_KEYS, TASK_LOSSES, Violet, VioletConfig
from backbones.violet.config import SwinConfig
from backbones.violet.inputs import MASK_ID
from backbones.violet.swin import effective_window, shifted_window_mask
from meltr import config as meltr_config
from tests.golden._violet import random_batch


def _model(task: str, **cfg: Any) -> Violet:
    torch.manual_seed(0)
    return Violet(VioletConfig.tiny(task=task, **cfg))


def _batch(task: str, **kw: Any) -> dict[str, Tensor]:
    return random_batch(task, batch=2, frames=2, size=64, length=8, **kw)


def test_loss_subsets_build_only_the_needed_heads() -> None:
    model = _model("qa_mc", losses=("mc", "mvm"))
    assert model.loss_names == ("mc", "mvm") and model.target_loss == "mc"
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"enc_img", "enc_txt", "trsfr", "fc_mc", "fc_mvm"}
    batch = _batch("qa_mc")
    assert tuple(model(batch)) == ("mc", "mvm")
    evaluator = _model("retrieval", losses=("vtm",))
    assert tuple(evaluator(_batch("retrieval"))) == ("vtm",) and not hasattr(evaluator, "fc_mtm")


def test_oe_and_mc_shapes() -> None:
    oe, mc = _model("qa_oe").eval(), _model("qa_mc").eval()
    oe_batch, mc_batch = _batch("qa_oe"), _batch("qa_mc")
    with torch.no_grad():
        assert oe.qa_logits(oe_batch).shape == (2, 10) and mc.qa_logits(mc_batch).shape == (2, 3)
        masks = mc.draw_masks(mc_batch, torch.Generator().manual_seed(0))
        logits = mc.task_logits(mc_batch, masks)
        losses = mc(mc_batch)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {
        "mc": (2, 3), "vtm": (2, 2), "mtm": (6, 8, 512), "mvm": (6, 2 * 5, 128)}
    assert all(v.dim() == 0 for v in losses.values())
    with pytest.raises(RuntimeError, match="qa_logits needs a qa_oe or qa_mc model"):
        _model("retrieval").qa_logits(_batch("retrieval"))


def test_quirk_switch_changes_only_what_sees_the_masked_video() -> None:
    """Retrieval / OE: the quirk feeds the masked video to VTM and the answer loss; MTM/MVM are identical."""
    for task in ("retrieval", "qa_oe"):
        batch = _batch(task)
        paper, fork = _model(task).eval(), _model(task, fork_quirks=True).eval()
        batch |= paper.draw_masks(batch, torch.Generator().manual_seed(0))
        with torch.no_grad():
            a, b = paper(batch), fork(batch)
            clean_video, masked_video = paper.encode_video(batch["video"]), paper.encode_video(batch["masked_video"])
            text = paper.encode_text(batch["text_ids"], batch["text_mask"])
            expected_vtm = [F.cross_entropy(paper.vtm_logits(*v, *text), torch.arange(2)) for v in (clean_video, masked_video)]
        assert torch.equal(a["mtm"], b["mtm"]) and torch.equal(a["mvm"], b["mvm"])
        torch.testing.assert_close(a["vtm"], expected_vtm[0], rtol=0, atol=0)
        torch.testing.assert_close(b["vtm"], expected_vtm[1], rtol=0, atol=0)
        if task == "qa_oe":
            assert not torch.equal(a["oe"], b["oe"])


def test_quirk_switch_for_multiple_choice_masking_and_vtm_pairs() -> None:
    batch = _batch("qa_mc", options=3)
    paper, fork = _model("qa_mc").eval(), _model("qa_mc", fork_quirks=True).eval()
    drawn = {name: m.draw_masks(batch, torch.Generator().manual_seed(0)) for name, m in (("paper", paper), ("fork", fork))}
    # Paper: every option row is a text of its own, masked token by token.
    rows = drawn["paper"]["mtm_labels"] != -1
    assert bool(rows.any(-1).all()) and not bool((drawn["paper"]["masked_text_ids"] == MASK_ID).all(-1).any())
    # Fork: whole option rows.
    hit = (drawn["fork"]["masked_text_ids"] == MASK_ID).all(-1)
    assert bool(hit.any()) and torch.equal(drawn["fork"]["masked_text_ids"][~hit], batch["text_ids"][~hit])
    # Video masking does not depend on the switch.
    assert torch.equal(drawn["paper"]["masked_video"], drawn["fork"]["masked_video"])
    batch |= drawn["paper"]
    with torch.no_grad():
        text = paper.encode_text(batch["text_ids"].flatten(0, 1), batch["text_mask"].flatten(0, 1))
        clean, masked = paper.encode_video(batch["video"]), paper.encode_video(batch["masked_video"])
        answer_rows = torch.arange(2) * 3 + batch["answer"]
        # Paper: video i against the answer text of video j. Fork: rows 0..B-1 = video 0 with options 0, 1.
        expected_paper = paper.vtm_logits(*clean, text[0][answer_rows], text[1][answer_rows])
        expected_fork = paper.vtm_logits(masked[0][[0, 0]], masked[1][[0, 0]], text[0][:2], text[1][:2])
        got_paper, got_fork = paper.task_logits(batch, batch)["vtm"], fork.task_logits(batch, batch)["vtm"]
    torch.testing.assert_close(got_paper, expected_paper, rtol=0, atol=0)
    torch.testing.assert_close(got_fork, expected_fork, rtol=0, atol=0)


def test_masks_come_from_the_generator_and_leave_the_batch_untouched() -> None:
    model = _model("retrieval").eval()
    batch = _batch("retrieval")
    original = {k: v.clone() for k, v in batch.items()}
    with torch.no_grad():
        first = model(batch, generator=torch.Generator().manual_seed(5))
        again = model(batch, generator=torch.Generator().manual_seed(5))
        masks = model.draw_masks(batch, torch.Generator().manual_seed(5))
        given = model({**batch, **masks})
    assert all(torch.equal(first[k], again[k]) and torch.equal(first[k], given[k]) for k in first)
    assert all(torch.equal(batch[k], original[k]) for k in batch)
    cell = masks["masked_video"] != batch["video"]
    assert bool(cell.any()) and bool((masks["masked_video"][cell] == 0).all())


def test_retrieval_scores_cover_every_pair_in_any_batching() -> None:
    model = _model("retrieval").eval()
    videos = _batch("retrieval", seed=1)
    texts = random_batch("retrieval", batch=3, length=8, seed=2)
    with torch.no_grad():
        vf, vm = model.encode_video(videos["video"])
        tf, tm = model.encode_text(texts["text_ids"], texts["text_mask"])
        scores = model.retrieval_scores(vf, vm, tf, tm, batch_size=4)
        single = torch.stack([torch.cat([model.pair_scores(vf[v:v + 1], vm[v:v + 1], tf[t:t + 1], tm[t:t + 1])
                                         for v in range(2)]) for t in range(3)])
        logits = model.vtm_logits(vf, vm, tf, tm)  # [video, text], / temperature
    assert scores.shape == (3, 2)
    torch.testing.assert_close(scores, single, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(scores, torch.sigmoid(logits.t() * 0.05), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.retrieval_scores(vf, vm, tf, tm, batch_size=1), scores, rtol=1e-6, atol=1e-7)


def test_forward_matches_losses_composed_from_the_heads() -> None:
    """Each loss is CE(ignore -1) over the batch, as ``Agent_*.step`` computes it."""
    model = _model("qa_mc").eval()
    batch = _batch("qa_mc")
    batch |= model.draw_masks(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, losses = model.task_logits(batch, batch), model(batch)
    mvm = logits["mvm"].view(2, 3, 10, 128)[torch.arange(2), batch["answer"]]
    expected = {"mc": F.cross_entropy(logits["mc"], batch["answer"]), "vtm": F.cross_entropy(logits["vtm"], torch.arange(2)),
                "mtm": F.cross_entropy(logits["mtm"].flatten(0, 1), batch["mtm_labels"].flatten(), ignore_index=-1),
                "mvm": masked_cross_entropy(mvm, batch["mvm_labels"])}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("changes,match", [
    ({"task": "captioning"}, "task='captioning'"),
    ({"losses": ("mtm", "vtm")}, "non-empty subsequence"),
    ({"task": "qa_oe", "losses": ("mc",)}, "non-empty subsequence"),
    ({"swin": SwinConfig(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 4))}, "bert.hidden_size"),
    ({"swin": SwinConfig(embed_dim=4, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 4), patch_size=(1, 4, 4))}, "patch_size"),
    ({"oe_dropout": 1.0}, "oe_dropout"),
    ({"vq_size": 0}, "vq_size"),
])
def test_config_errors_name_the_field(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VioletConfig.tiny(**changes)


def test_config_dict_round_trip_and_replace() -> None:
    cfg = VioletConfig.tiny(task="qa_oe", losses=("oe", "mvm"), fork_quirks=True, vocab_size=30522)
    assert meltr_config.from_dict(meltr_config.to_dict(cfg), VioletConfig) == cfg
    assert cfg.replace(task="qa_mc").losses == TASK_LOSSES["qa_mc"]
    with pytest.raises(ValueError, match=r"swin\.window: unknown key; did you mean 'window_size'"):
        meltr_config.from_dict({**meltr_config.to_dict(cfg), "swin": {**meltr_config.to_dict(cfg)["swin"], "window": 3}},
                               VioletConfig)
    base = VioletConfig.base()
    assert (base.swin.depths, base.swin.num_features, base.bert.num_hidden_layers, base.vq_size, base.fork_quirks) == (
        (2, 2, 18, 2), 768, 12, 8192, False)


# Written by the hand-made VioletConfig.to_dict that meltr.config.to_dict replaced (checkpoints hold this form).
OLD_TO_DICT = {
    "task": "qa_oe", "losses": ["oe", "mvm"],
    "swin": {"embed_dim": 4, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 4], "patch_size": [2, 4, 4],
             "window_size": [2, 7, 7], "mlp_ratio": 4.0, "drop_path_rate": 0.0, "layer_norm_eps": 1e-05,
             "attention": "explicit"},
    "bert": {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_dropout_prob": 0.0,
             "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "attention": "sdpa"},
    "vq_size": 128, "n_answers": 10, "max_frames": 6, "max_patches": 196, "head_dropout": 0.1, "oe_dropout": 0.5,
    "vtm_temperature": 0.05, "mtm_prob": 0.15, "fork_quirks": True,
}


def test_a_config_dict_of_the_old_to_dict_still_loads() -> None:
    """Tuples (depths, window_size) come back as tuples, the nested SwinConfig / BertConfig and the Literals too."""
    cfg = VioletConfig.tiny(task="qa_oe", losses=("oe", "mvm"), fork_quirks=True)
    cfg = cfg.replace(swin=dataclasses.replace(cfg.swin, attention="explicit", window_size=(2, 7, 7)))
    loaded = meltr_config.from_dict(OLD_TO_DICT, VioletConfig)
    assert loaded == cfg and loaded.swin.window_size == (2, 7, 7) and loaded.losses == ("oe", "mvm")


@pytest.mark.parametrize("task,change,match", [
    ("retrieval", lambda b: b.update(video=b["video"][..., :48, :48]), "multiple of 32"),
    ("retrieval", lambda b: b.update(video=b["video"].repeat(1, 4, 1, 1, 1)), "at most 6 frames"),
    ("qa_mc", lambda b: b.pop("answer"), "missing 'answer'"),
    ("retrieval", lambda b: b.update(vq=b["vq"][:, :-1]), "expected T·\\(1\\+P\\)"),
    ("retrieval", lambda b: b.update(masked_video=b["video"]), "precomputed masks need all of"),
    ("qa_oe", lambda b: b.update(text_ids=b["text_ids"].float()), "'text_ids' is torch.float32"),
])
def test_bad_batches_raise_clear_errors(task: str, change: Callable[[dict], None], match: str) -> None:
    batch = _batch(task)
    change(batch)
    with pytest.raises(ValueError, match=match):
        _model(task)(batch)
    assert len(MASK_KEYS) == 4


def test_effective_window_and_shifted_mask_by_hand() -> None:
    assert effective_window((5, 56, 56), (8, 7, 7), (4, 3, 3)) == ((5, 7, 7), (0, 3, 3))
    assert effective_window((3, 6, 6), (8, 7, 7), (4, 3, 3)) == ((3, 6, 6), (0, 0, 0))
    # H = W = 4, window 2, shift 1: regions per axis [0, 0, 1, 2]; the top-left window is one region,
    # the bottom-right window holds 4 regions (every pair of different cells is masked).
    mask = shifted_window_mask((1, 4, 4), (1, 2, 2), (0, 1, 1))
    assert mask.shape == (4, 4, 4)
    assert bool((mask[0] == 0).all()) and torch.equal(mask[3], (1 - torch.eye(4)) * -100.0)
    # top-right window: rows h 0-1 (one region), columns w 2 (region 1) and 3 (region 2)
    assert torch.equal(mask[1], torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]) * -100.0)
