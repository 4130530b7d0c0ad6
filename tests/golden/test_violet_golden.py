"""VIOLET parity with the official code: every tensor of ``golden.pt`` (tiny config) at the README tolerances.

``golden['outputs']`` were produced by the MELTR fork's ``violet/`` code on CPU (``shared/fixtures/violet/README.md``),
with its bugs, so the models here run with ``fork_quirks=True`` and the fixture's masking draws. Tolerances
(README §2.5): features, logits other than VTM and losses ``atol=rtol=1e-4``; VTM logits (×20) ``atol=1e-3``;
integer tensors, masks and accuracies exact. The retrieval metrics belong to ``evaluation/`` (``SKIPPED``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from backbones.common.bert import additive_mask
from backbones.violet import Violet, VioletConfig
from tests.golden._fixtures import require
from tests.golden._violet import FIXTURE_DIR, golden_batch, golden_model, load_golden

FEAT = {"rtol": 1e-4, "atol": 1e-4}
VTM = {"rtol": 1e-4, "atol": 1e-3}
EXACT = {"rtol": 0.0, "atol": 0.0}

OUTPUT_TOLERANCES: dict[str, dict[str, float]] = {
    **{k: FEAT for k in (
        "img_normalized_mean", "swin_patch_embed_out", "swin_layer0_out", "swin_layer1_out", "swin_layer2_out",
        "swin_layer3_out", "swin_out", "feat_img", "feat_img_masked", "feat_txt", "feat_m_txt", "cross_out",
        "cross_out_masked", "cross_attn_layer0", "cross_attn_last", "ret_out_mtm", "ret_out_mvm", "ret_loss_vtm",
        "ret_loss_mtm", "ret_loss_mvm", "oe_out_mtm", "oe_out_mvm", "oe_out_oe", "oe_loss_oe", "oe_loss_vtm",
        "oe_loss_mtm", "oe_loss_mvm", "oe_out_oe_clean", "mc_out_mtm", "mc_out_mvm", "mc_out_mc", "mc_loss_mc",
        "mc_loss_vtm", "mc_loss_mtm", "mc_loss_mvm", "mc_out_mc_clean", "eval_logit_text_video",
        "eval_score_text_video")},
    **{k: VTM for k in ("ret_out_vtm", "ret_out_vtm_clean", "oe_out_vtm", "mc_out_vtm")},
    **{k: EXACT for k in ("mask_img", "ret_ans_vtm", "oe_test_acc", "mc_test_acc")},
}
# R@K / median come from evaluation/ (issue 5 deliverable 3), tested there; extended_mask has its own test
# because its padding value differs by transformers version (finfo.min in the fixture, -10000 here).
SKIPPED = ("eval_metrics",)
SEPARATE = ("extended_mask",)


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return load_golden()


def _attention_probs(model: Violet, layer: int) -> list[Tensor]:
    """Captures the attention probabilities of one cross layer (the input of its attention dropout); only the
    explicit attention materialises them."""
    seen: list[Tensor] = []
    model.trsfr.layer[layer].attention.self.dropout.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    return seen


@pytest.fixture(scope="module")
def ours(golden: dict[str, Any]) -> dict[str, Any]:
    """Our value for every checked key, computed once (the official call in the comments)."""
    out: dict[str, Any] = {}
    model = golden_model("retrieval")
    swin = model.enc_img.swin
    stages = {"swin_patch_embed_out": swin.patch_embed, "swin_out": swin,
              **{f"swin_layer{i}_out": layer for i, layer in enumerate(swin.layers)}}
    handles = [m.register_forward_hook(lambda mod, inp, res, key=key: out.setdefault(key, res)) for key, m in stages.items()]
    # The default (fused) attention never forms the probabilities; an explicit twin with the same weights shows them.
    explicit = golden_model("retrieval", attention="explicit")
    first, last = _attention_probs(explicit, 0), _attention_probs(explicit, -1)
    batch = golden_batch("retrieval")
    with torch.no_grad():
        video_feat, video_mask = model.encode_video(batch["video"])  # enc_img(img); hooks fire once, on the clean video
        for h in handles:
            h.remove()
        text_feat, text_mask = model.encode_text(batch["text_ids"], batch["text_mask"])
        masked_feat, _ = model.encode_video(batch["masked_video"])
        masked_text = model.enc_txt(batch["masked_text_ids"])
        explicit.cross(video_feat, video_mask, text_feat, text_mask)  # go_cross (clean), fills first / last
        out |= {
            "img_normalized_mean": model.enc_img.normalize(batch["video"]).mean(dim=(0, 1, 3, 4)),
            "feat_img": video_feat, "mask_img": video_mask, "feat_img_masked": masked_feat,
            "feat_txt": text_feat, "feat_m_txt": masked_text,
            "cross_out": model.cross(video_feat, video_mask, text_feat, text_mask),  # go_cross (clean)
            "cross_attn_layer0": first[-1], "cross_attn_last": last[-1],
            "cross_out_masked": model.cross(masked_feat, video_mask, masked_text, text_mask),
            "ret_out_vtm_clean": model.vtm_logits(video_feat, video_mask, text_feat, text_mask),
            "ret_ans_vtm": torch.arange(3),  # the targets forward uses: the diagonal
        }
        # VIOLET_Retrieval.forward(img_masked, txt, mask, m_txt) and Agent_Retrieval.step
        logits, losses = model.task_logits(batch, batch), model(batch)
        out |= {f"ret_out_{k}": v for k, v in logits.items()} | {f"ret_loss_{k}": v for k, v in losses.items()}
        # eval_retrieval.VIOLET_Retrieval (fc only): rows = text, cols = video
        evaluator = golden_model("retrieval", "eval_retrieval", losses=("vtm",))
        out["eval_logit_text_video"] = evaluator.vtm_logits(video_feat, video_mask, text_feat, text_mask).t() * 0.05
        out["eval_score_text_video"] = evaluator.retrieval_scores(video_feat, video_mask, text_feat, text_mask, batch_size=2)

        for task, prefix in (("qa_oe", "oe"), ("qa_mc", "mc")):
            qa, qa_batch = golden_model(task), golden_batch(task)
            out |= {f"{prefix}_out_{k}": v for k, v in qa.task_logits(qa_batch, qa_batch).items()}
            out |= {f"{prefix}_loss_{k}": v for k, v in qa(qa_batch).items()}
            clean = qa.qa_logits(qa_batch)  # Agent_QA*.test: clean video and text
            out[f"{prefix}_out_{prefix}_clean"] = clean
            out[f"{prefix}_test_acc"] = (clean.argmax(-1) == qa_batch["answer"]).float().mean()
    return out


def test_a_missing_fixture_fails_instead_of_skipping() -> None:
    with pytest.raises(pytest.fail.Exception, match="fixture missing: .*absent.pt. .*shared/fixtures/violet/"):
        require(FIXTURE_DIR / "absent.pt")


def test_every_fixture_key_is_checked_or_explicitly_skipped(golden: dict[str, Any]) -> None:
    covered = set(OUTPUT_TOLERANCES) | set(SKIPPED) | set(SEPARATE)
    assert set(golden["outputs"]) == covered, (
        f"unchecked fixture keys {sorted(set(golden['outputs']) - covered)}, "
        f"checks for absent keys {sorted(covered - set(golden['outputs']))}")


@pytest.mark.parametrize("key", sorted(OUTPUT_TOLERANCES))
def test_output_matches_official(key: str, golden: dict[str, Any], ours: dict[str, Any]) -> None:
    expected, actual = golden["outputs"][key], ours[key]
    assert isinstance(actual, Tensor) and actual.shape == expected.shape, (key, getattr(actual, "shape", None))
    torch.testing.assert_close(actual, expected.to(actual.dtype), **OUTPUT_TOLERANCES[key], msg=lambda m: f"{key}: {m}")


def test_extended_mask_blocks_exactly_the_text_padding(golden: dict[str, Any]) -> None:
    """Same blocked positions; the value is transformers 4.18's -10000 (the fixture's finfo.min gives the
    same outputs because visual tokens are never masked and exp underflows to 0 either way)."""
    batch = golden_batch("retrieval")
    expected = golden["outputs"]["extended_mask"]
    full = torch.cat([torch.ones(3, 30, dtype=torch.long), batch["text_mask"]], dim=1)
    ours = additive_mask(full, torch.float32)
    assert ours.shape == expected.shape
    assert torch.equal(ours != 0, expected != 0) and bool((ours[ours != 0] == -10000.0).all())


def test_tiny_config_matches_fixture_config(golden: dict[str, Any]) -> None:
    cfg, ref = VioletConfig.tiny(), golden["config"]
    swin = ref["swin"]
    assert (cfg.swin.embed_dim, list(cfg.swin.depths), list(cfg.swin.num_heads), list(cfg.swin.window_size),
            list(cfg.swin.patch_size), cfg.swin.drop_path_rate) == (
        swin["embed_dim"], swin["depths"], swin["num_heads"], swin["window_size"], swin["patch_size"], swin["drop_path_rate"])
    for field, value in ref["bert"].items():
        assert getattr(cfg.bert, field) == value, field
    assert cfg.bert.layer_norm_eps == ref["bert_layer_norm_eps"] and ref["bert_hidden_act"] == "gelu"
    assert (cfg.bert.hidden_size, cfg.vq_size, cfg.n_answers) == (ref["D"], ref["VQ"], ref["size_vocab_oe"])
    assert cfg.swin.num_features == ref["D"] and ref["size_img"] // cfg.swin.stride == ref["h"] == ref["w"]


def test_relative_position_index_is_built_for_the_configured_window(golden: dict[str, Any]) -> None:
    expected = golden["relative_position_index"].long()
    model = Violet(VioletConfig.tiny())
    indices = [b.attn.relative_position_index for layer in model.enc_img.swin.layers for b in layer.blocks]
    assert len(indices) == 8 and all(torch.equal(i, expected) for i in indices)


def test_paper_mode_feeds_the_clean_video_to_vtm_and_the_answer_loss(golden: dict[str, Any]) -> None:
    """fork_quirks=False: VTM / OE / MC use the clean video (fixture's ``*_clean`` logits), MTM/MVM are unchanged."""
    out = golden["outputs"]
    with torch.no_grad():
        ret = golden_model("retrieval", fork_quirks=False)(golden_batch("retrieval"))
        oe = golden_model("qa_oe", fork_quirks=False)(golden_batch("qa_oe"))
    torch.testing.assert_close(ret["vtm"], F.cross_entropy(out["ret_out_vtm_clean"], torch.arange(3)), **FEAT)
    torch.testing.assert_close(oe["oe"], F.cross_entropy(out["oe_out_oe_clean"], golden["inputs"]["ans_oe"]), **FEAT)
    for name in ("mtm", "mvm"):
        torch.testing.assert_close(ret[name], out[f"ret_loss_{name}"], **FEAT)
        torch.testing.assert_close(oe[name], out[f"oe_loss_{name}"], **FEAT)
    batch = golden_batch("qa_mc")
    with torch.no_grad():
        mc = golden_model("qa_mc", fork_quirks=False)(batch)
    torch.testing.assert_close(mc["mc"], F.cross_entropy(out["mc_out_mc_clean"], batch["answer"]), **FEAT)
    torch.testing.assert_close(mc["mvm"], out["mc_loss_mvm"], **FEAT)  # answer's row, same in both modes


def test_forward_is_identical_in_train_mode_without_dropout() -> None:
    """The fixture took its numbers in eval mode; with every dropout at 0 a train-mode step gives the same."""
    model = golden_model("qa_oe")
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    batch = golden_batch("qa_oe")
    with torch.no_grad():
        train, evaluated = model.train()(batch), model.eval()(batch)
    for name in model.loss_names:
        torch.testing.assert_close(train[name], evaluated[name], rtol=0, atol=0)
