"""UniVL parity with the official code: every tensor of ``golden.pt`` (tiny config) at the README tolerances.

Numbers in ``golden['outputs']`` and ``golden['meltr_losses']`` were produced by the official UniVL /
MELTR code on CPU (``shared/fixtures/univl/README.md``). Tolerances (README §2.5): hidden states and
similarities 1e-5 absolute; losses 1e-5 relative; ``mfm`` losses 3e-4 absolute; integer outputs and
beam ids exact. The retrieval-metric keys belong to ``evaluation/`` and are tested there (``SKIPPED``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from backbones.common.losses import (
    cross_en_loss,
    masked_cross_entropy,
    masked_frame_nce_loss,
    max_margin_ranking_loss,
    mil_nce_loss,
)
from backbones.univl import LOSS_NAMES, UniVL, UniVLConfig
from tests.golden._univl import golden_model, load_golden

HIDDEN = {"rtol": 0.0, "atol": 1e-5}
LOSS = {"rtol": 1e-5, "atol": 0.0}
MFM_LOSS = {"rtol": 0.0, "atol": 3e-4}
EXACT = {"rtol": 0.0, "atol": 0.0}

# Every key of golden['outputs'] is either checked here (with its tolerance) or listed in SKIPPED.
OUTPUT_TOLERANCES: dict[str, dict[str, float]] = {
    **{k: HIDDEN for k in (
        "video_normalized", "masked_video_normalized", "text_hidden", "video_hidden", "text_pooled", "video_pooled",
        "text_hidden_layer0", "video_hidden_layer0", "text_hidden_masked", "video_hidden_masked", "cross_hidden",
        "cross_pooled", "cross_hidden_masked", "cross_pooled_masked", "text_mean_pooled", "video_mean_pooled",
        "sim_joint_dot", "sim_joint_cos", "sim_cross", "sim_cross_masked", "sim_joint_cos_masked",
        "eval_sim_retrieval_ft_joint", "eval_sim_retrieval_ft_align", "mlm_logits", "mfm_scores", "decoder_logits",
        "decoder_logits_masked_enc")},
    **{k: LOSS for k in (
        "loss_cmlm", "loss_joint_milnce", "loss_joint_maxmargin", "loss_joint_maxmargin_masked", "loss_align_crossen",
        "loss_align_crossen_masked", "loss_align_maxmargin", "loss_decoder", "loss_decoder_masked_enc",
        "forward_loss_pretrain_stage_two", "forward_loss_pretrain_stage_one", "forward_loss_retrieval_ft_joint",
        "forward_loss_retrieval_ft_align", "forward_loss_caption")},
    "loss_cmfm": MFM_LOSS,
    "cross_attention_mask": EXACT,
    "decoder_caption_argmax": EXACT,
    "beam5_hyp_scores": {"rtol": 1e-6, "atol": 0.0},  # sums of 12 log-probs; ids below are exact
}
# Retrieval metrics (R@K, MedR) are computed by evaluation/retrieval.py, owned and tested there.
SKIPPED = ("retrieval_metric_example_sim", "retrieval_metrics")
MELTR_TOLERANCES = {f"meltr_loss_{n}": (MFM_LOSS if n == "mfm" else LOSS) for n in LOSS_NAMES}

# Tied aliases in the official state dict → the key that owns the tensor.
TIED = {
    "decoder.embeddings.word_embeddings.weight": "bert.embeddings.word_embeddings.weight",
    "decoder.classifier.cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "decoder.embeddings.position_embeddings.weight": "bert.embeddings.position_embeddings.weight",
    "cls_visual.predictions.weight": "visual.embeddings.word_embeddings.weight",
}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return load_golden()


@pytest.fixture(scope="module")
def ours(golden: dict[str, Any]) -> dict[str, Any]:
    """Our value for every checked key, computed once (official call in the comments)."""
    x = golden["inputs"]
    text_mask, video_mask, types = x["attention_mask"], x["video_mask"], x["token_type_ids"]
    caption_in, caption_mask, caption_out = x["input_caption_ids"], x["decoder_mask"], x["output_caption_ids"]
    length = x["input_ids"].shape[1]
    out: dict[str, Any] = {}
    full = golden_model("pretrain_stage_two")  # all 194 golden keys, nothing ignored
    with torch.no_grad():
        video_n = full.normalize_video(x["video"])
        text_enc = full.bert(x["input_ids"], text_mask, types)
        video_enc = full.visual(video_n, video_mask)
        t, v = text_enc.hidden, video_enc.hidden
        mt = full.encode_text(x["pairs_masked_text"], types, text_mask)
        mv = full.encode_video(x["masked_video"], video_mask)
        cross, m_cross = full.cross_encode(t, text_mask, v, video_mask), full.cross_encode(mt, text_mask, mv, video_mask)
        out |= {
            "video_normalized": video_n, "masked_video_normalized": full.normalize_video(x["masked_video"]),
            "text_hidden": t, "video_hidden": v, "text_pooled": text_enc.pooled, "video_pooled": video_enc.pooled,
            "text_hidden_layer0": text_enc.layers[0], "video_hidden_layer0": video_enc.layers[0],
            "text_hidden_masked": mt, "video_hidden_masked": mv,
            "cross_hidden": cross.hidden, "cross_pooled": cross.pooled, "cross_attention_mask": cross.mask,
            "cross_hidden_masked": m_cross.hidden, "cross_pooled_masked": m_cross.pooled,
            "text_mean_pooled": full.mean_pool_text(t, text_mask), "video_mean_pooled": full.mean_pool_video(v, video_mask),
            "sim_joint_dot": full.joint_similarity(t, text_mask, v, video_mask, cosine=False),
            "sim_joint_cos": full.joint_similarity(t, text_mask, v, video_mask),
            # Chunked like the official 5-row loop would be for larger batches; the numbers must not change.
            "sim_cross": full.alignment_similarity(t, text_mask, v, video_mask, text_chunk=3),
            "sim_cross_masked": full.alignment_similarity(mt, text_mask, mv, video_mask),
            "sim_joint_cos_masked": full.joint_similarity(mt, text_mask, mv, video_mask),
            "mlm_logits": full.mlm_logits(m_cross.hidden, length),
            "mfm_scores": full.mfm_scores(m_cross.hidden, length),
            "decoder_logits": full.decoder_logits(t, text_mask, v, video_mask, caption_in, caption_mask),
            "decoder_logits_masked_enc": full.decoder_logits(mt, text_mask, mv, video_mask, caption_in, caption_mask),
        }
        out["decoder_caption_argmax"] = out["decoder_logits"].argmax(-1)
        # Individual official losses, composed from backbones.common.losses.
        out |= {
            "loss_cmlm": masked_cross_entropy(out["mlm_logits"], x["pairs_token_labels"]),
            "loss_cmfm": masked_frame_nce_loss(out["mfm_scores"], video_n, video_mask, x["video_labels_index"]),
            "loss_joint_milnce": mil_nce_loss(out["sim_joint_dot"], batch_size=2, n_pair=2),
            "loss_joint_maxmargin": max_margin_ranking_loss(out["sim_joint_cos"], 0.1),
            "loss_joint_maxmargin_masked": max_margin_ranking_loss(out["sim_joint_cos_masked"], 0.1),
            "loss_align_crossen": cross_en_loss(out["sim_cross"]),
            "loss_align_crossen_masked": cross_en_loss(out["sim_cross_masked"]),
            "loss_align_maxmargin": max_margin_ranking_loss(out["sim_cross"], 0.1),
            "loss_decoder": masked_cross_entropy(out["decoder_logits"], caption_out),
            "loss_decoder_masked_enc": masked_cross_entropy(out["decoder_logits_masked_enc"], caption_out),
        }

        # Official training-branch totals, each from a model built in that task's own layout.
        stage_two = golden_model("pretrain_stage_two", losses=("mlm", "mfm", "m_align", "m_decoder"),
                                 target_loss="mlm")
        parts = stage_two(x)  # cmlm + cmfm + CrossEn(masked) + decoder(masked encoders)
        s2_t, s2_v = stage_two.encode_text(x["input_ids"], types, text_mask), stage_two.encode_video(x["video"], video_mask)
        out["forward_loss_pretrain_stage_two"] = sum(parts.values()) + mil_nce_loss(  # + joint MIL-NCE (dot)
            stage_two.joint_similarity(s2_t, text_mask, s2_v, video_mask, cosine=False), batch_size=2, n_pair=2)
        stage_one = golden_model("pretrain_stage_one", losses=("joint",), target_loss="joint")
        s1_t, s1_v = stage_one.encode_text(x["input_ids"], types, text_mask), stage_one.encode_video(x["video"], video_mask)
        out["forward_loss_pretrain_stage_one"] = mil_nce_loss(
            stage_one.joint_similarity(s1_t, text_mask, s1_v, video_mask, cosine=False), batch_size=2, n_pair=2)
        ft_joint = golden_model("retrieval_ft_joint", losses=("joint",), target_loss="joint")
        out["forward_loss_retrieval_ft_joint"] = ft_joint(x)["joint"]
        out["eval_sim_retrieval_ft_joint"] = ft_joint.joint_similarity(
            ft_joint.encode_text(x["input_ids"], types, text_mask), text_mask,
            ft_joint.encode_video(x["video"], video_mask), video_mask)
        ft_align = golden_model("retrieval_ft_align", losses=("alignment",))
        a_t, a_v = ft_align.encode_text(x["input_ids"], types, text_mask), ft_align.encode_video(x["video"], video_mask)
        out["eval_sim_retrieval_ft_align"] = ft_align.alignment_similarity(a_t, text_mask, a_v, video_mask)
        out["forward_loss_retrieval_ft_align"] = max_margin_ranking_loss(out["eval_sim_retrieval_ft_align"], 0.1)
        caption = golden_model("caption", task="caption", losses=("decoder",))
        out["forward_loss_caption"] = caption(x)["decoder"]
        beams = caption.generate(x["input_ids"], types, text_mask, x["video"], video_mask, beam_size=5)
        out["beam5_hyp_ids"], out["beam5_hyp_scores"] = beams.ids, beams.scores

        out["meltr"] = full(x)  # MELTR's 8 losses, all modules built (the fork's layout)
    return out


def test_every_fixture_key_is_checked_or_explicitly_skipped(golden: dict[str, Any]) -> None:
    covered = set(OUTPUT_TOLERANCES) | {"beam5_hyp_ids"} | set(SKIPPED)
    assert set(golden["outputs"]) == covered, (
        f"unchecked fixture keys {sorted(set(golden['outputs']) - covered)}, "
        f"checks for absent keys {sorted(covered - set(golden['outputs']))}")
    assert set(golden["meltr_losses"]) == set(MELTR_TOLERANCES)


def test_tiny_config_matches_fixture_config(golden: dict[str, Any]) -> None:
    """``UniVLConfig.tiny()`` has the fixture's numbers (layer counts come from the task flags, as officially)."""
    cfg, ref = UniVLConfig.tiny(), golden["config"]
    task = ref["task"]
    towers = {"bert": (cfg.text, "text"), "visual": (cfg.visual, "visual"), "cross": (cfg.cross, "cross"),
              "decoder": (cfg.decoder, "decoder")}
    for official, (tower, prefix) in towers.items():
        json_cfg = ref[official]
        assert json_cfg["hidden_act"] == "gelu"
        for field in ("hidden_size", "intermediate_size", "num_attention_heads", "vocab_size", "hidden_dropout_prob",
                      "attention_probs_dropout_prob", "initializer_range"):
            assert getattr(tower, field) == json_cfg[field], f"{prefix}.{field}"
        max_pos = json_cfg["max_target_embeddings" if official == "decoder" else "max_position_embeddings"]
        assert tower.max_position_embeddings == max_pos, f"{prefix}.max_position_embeddings"
        assert tower.type_vocab_size == ref["type_vocab_size_forced"], f"{prefix}.type_vocab_size"
        assert tower.num_hidden_layers == task[f"{prefix}_num_hidden_layers"], f"{prefix}.num_hidden_layers"
        assert tower.layer_norm_eps == 1e-12
    assert (cfg.max_words, cfg.max_frames, cfg.video_dim, cfg.margin) == (
        task["max_words"], task["max_frames"], task["video_dim"], task["margin"])


def test_golden_tied_keys_hold_identical_values(golden: dict[str, Any]) -> None:
    state = golden["state_dict"]
    for alias, owner in TIED.items():
        assert torch.equal(state[alias], state[owner]), alias


@pytest.mark.parametrize("key", sorted(OUTPUT_TOLERANCES))
def test_output_matches_official(key: str, golden: dict[str, Any], ours: dict[str, Any]) -> None:
    expected, actual = golden["outputs"][key], ours[key]
    assert isinstance(actual, Tensor) and actual.shape == expected.shape, (key, getattr(actual, "shape", None))
    torch.testing.assert_close(actual, expected.to(actual.dtype), **OUTPUT_TOLERANCES[key], msg=lambda m: f"{key}: {m}")


def test_beam_search_ids_are_exact(golden: dict[str, Any], ours: dict[str, Any]) -> None:
    assert ours["beam5_hyp_ids"] == golden["outputs"]["beam5_hyp_ids"]


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_meltr_loss_matches_official(name: str, golden: dict[str, Any], ours: dict[str, Any]) -> None:
    losses = ours["meltr"]
    assert tuple(losses) == LOSS_NAMES
    expected = golden["meltr_losses"][f"meltr_loss_{name}"]
    torch.testing.assert_close(losses[name], expected, **MELTR_TOLERANCES[f"meltr_loss_{name}"],
                               msg=lambda m: f"meltr_loss_{name}: {m}")


def test_forward_is_identical_in_train_mode_without_dropout(golden: dict[str, Any]) -> None:
    """MELTR's losses do not depend on ``training`` (the fixture took them in eval mode): with dropout 0
    a train-mode forward gives the eval numbers."""
    model = golden_model("pretrain_stage_two")
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        train = model.train()(golden["inputs"])
        evaluated = model.eval()(golden["inputs"])
    for name in LOSS_NAMES:
        torch.testing.assert_close(train[name], evaluated[name], rtol=0, atol=0)


def test_default_layout_is_the_meltr_fork_module_set(golden: dict[str, Any]) -> None:
    """The 'auto' layout for MELTR's 8 losses is the stage-two module set, as in MELTR's fork."""
    auto = UniVL(UniVLConfig.tiny())
    assert set(auto.state_dict()) == set(golden["state_dict"])
    assert isinstance(auto, UniVL) and auto.loss_names == LOSS_NAMES and auto.target_loss == "alignment"
    assert UniVL(UniVLConfig.tiny(task="caption")).target_loss == "decoder"
