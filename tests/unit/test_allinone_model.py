"""All-in-one model mechanics on the tiny config: the padding row, the target-loss switch, patch shuffling, init,
config and batch checks, and the official weight-decay rule. (The loss contract, gradients and MELTR's
derivatives are checked for every backbone in ``tests/contract``.)"""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest
import torch

from backbones.allinone import AllInOne, AllInOneConfig, check_batch
from backbones.allinone.vit import random_patch_perm
from meltr import config as meltr_config
from meltr.optim import OptimConfig, param_groups
from tests.golden._allinone import random_batch


def test_the_padding_row_of_the_word_table_gets_no_gradient() -> None:
    """``padding_idx=0``, as officially: a [PAD] the collator's random replacement puts inside a caption is
    read by forward but its row is never trained."""
    model = AllInOne(AllInOneConfig.tiny()).train()
    batch = random_batch(model.cfg)
    batch["mlm_ids"][0, 2] = 0
    sum(model(batch).values()).backward()
    words = model.text_embeddings.word_embeddings.weight.grad
    assert words is not None and torch.equal(words[0], torch.zeros_like(words[0])) and words[101].abs().sum() > 0


def test_target_loss_switch_reorders_the_losses_without_changing_them() -> None:
    torch.manual_seed(1)
    paper = AllInOne(AllInOneConfig.tiny()).eval()
    fork = AllInOne(AllInOneConfig.tiny(target_loss="mlm")).eval()
    fork.load_state_dict(paper.state_dict())
    batch = random_batch(paper.cfg)
    a, b = paper(batch), fork(batch)
    assert (paper.loss_names, paper.target_loss) == (("ind_itc", "mlm"), "ind_itc") and list(a) == ["ind_itc", "mlm"]
    assert (fork.loss_names, fork.target_loss) == (("mlm", "ind_itc"), "mlm") and list(b) == ["mlm", "ind_itc"]
    for name in a:
        assert torch.equal(a[name], b[name])


def test_patch_shuffle_is_random_in_training_and_off_in_eval() -> None:
    torch.manual_seed(2)
    cfg = AllInOneConfig.tiny(patch_shuffle=True)
    model = AllInOne(cfg)
    raster = AllInOne(cfg.replace(patch_shuffle=False))
    raster.load_state_dict(model.state_dict())
    batch = random_batch(cfg)
    args = (batch["text_ids"], batch["text_mask"], batch["video"])
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.joint(*args).hidden, raster.eval().joint(*args).hidden)
        model.train()
        first, second = model.joint(*args).hidden, model.joint(*args).hidden
        assert (first - second).abs().max() > 1e-4  # a fresh permutation per call moves other patches in the roll
        # The video-only pass does not roll: its frame CLS is order-free up to rounding.
        torch.testing.assert_close(model.video_only(batch["video"]).mean[:, 0], raster.video_only(batch["video"]).mean[:, 0],
                                   rtol=0.0, atol=1e-5)
    perm = random_patch_perm(5, 16)
    assert torch.equal(perm.sort(dim=1).values, torch.arange(16).expand(5, 16))


def test_init_follows_the_official_rules() -> None:
    torch.manual_seed(3)
    model = AllInOne(AllInOneConfig.tiny(hidden_size=64, vocab_size=2048, max_text_len=40))
    vit = model.transformer
    assert torch.equal(vit.temporal_embed, torch.zeros_like(vit.temporal_embed))
    assert torch.equal(model.mlm_score.bias, torch.zeros_like(model.mlm_score.bias))
    for weight in (model.text_embeddings.word_embeddings.weight, model.mlm_score.decoder.weight,
                   vit.blocks[0].attn.qkv.weight, vit.blocks[1].mlp.fc1.weight, model.txt_proj.weight):
        assert abs(weight.std().item() - 0.02) < 0.002
    assert model.text_embeddings.word_embeddings.weight[0].abs().sum() > 0  # padding row overwritten too
    assert vit.pos_embed.abs().max() <= 2.0 and abs(vit.pos_embed.std().item() - 0.02) < 0.004
    # The patch conv keeps PyTorch's default (uniform, bound 1/sqrt(fan_in): std = bound/sqrt(3)).
    conv = vit.patch_embed.proj.weight
    bound = 1 / (3 * 8 * 8) ** 0.5
    assert conv.abs().max() <= bound and abs(conv.std().item() - bound / 3 ** 0.5) < 0.004
    for name, p in model.named_parameters():
        if name.endswith("bias") and not name.startswith("transformer.patch_embed"):
            assert torch.equal(p, torch.zeros_like(p)), name
        if "norm" in name.lower() and name.endswith("weight"):
            assert torch.equal(p, torch.ones_like(p)), name


def test_meltr_optim_decay_split_equals_the_official_name_rule() -> None:
    """Official set_schedule: no decay where the name contains bias / LayerNorm / norm / norm1 / norm2."""
    model = AllInOne(AllInOneConfig.tiny())
    groups = param_groups(model.named_parameters(), OptimConfig(weight_decay=0.01))
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    official = ("*bias*", "*LayerNorm.bias*", "*LayerNorm.weight*", "*norm.bias*", "*norm.weight*", "*norm1.*", "*norm2.*")
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (not any(fnmatchcase(name, pat) for pat in official)), name
    assert {n for n, p in model.named_parameters() if id(p) in decayed} >= {"transformer.pos_embed", "transformer.cls_token",
                                                                            "transformer.temporal_embed"}


@pytest.mark.parametrize("changes,match", [
    ({"image_size": 16}, "temporal-roll fold of 0"),
    ({"fold_div": 1}, "temporal-roll fold of 17"),
    ({"num_heads": 5}, "not a multiple of num_heads"),
    ({"image_size": 36}, "not a multiple of patch_size"),
    ({"target_loss": "vtm"}, "target_loss='vtm'"),
    ({"drop_rate": 1.0}, r"drop_rate must be in \[0, 1\)"),
    ({"temperature": 0.0}, "temperature must be > 0"),
])
def test_config_errors_name_the_field(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AllInOneConfig.tiny(**changes)


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = AllInOneConfig.tiny(target_loss="mlm", patch_shuffle=True)
    assert meltr_config.from_dict(meltr_config.to_dict(cfg), AllInOneConfig) == cfg
    with pytest.raises(ValueError, match=r"hidden: unknown key; did you mean 'hidden_size'"):
        meltr_config.from_dict({"hidden": 3}, AllInOneConfig)


# Written by the hand-made AllInOneConfig.to_dict that meltr.config.to_dict replaced (checkpoints hold this form).
OLD_TO_DICT = {
    "vocab_size": 256, "max_text_len": 12, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "mlp_ratio": 4.0,
    "image_size": 32, "patch_size": 8, "num_frames": 3, "shared_embedding_dim": 16, "drop_rate": 0.0,
    "drop_path_rate": 0.0, "temperature": 0.05, "fold_div": 8, "primary": "mlm", "patch_shuffle": True,
    "initializer_range": 0.02, "attention": "explicit",
}


def test_a_config_dict_of_the_old_to_dict_still_loads() -> None:
    with pytest.warns(FutureWarning, match="'primary' is renamed 'target_loss'"):
        cfg = meltr_config.from_dict(OLD_TO_DICT, AllInOneConfig)
    assert cfg == AllInOneConfig.tiny(target_loss="mlm", patch_shuffle=True, attention="explicit")
    assert cfg.loss_names == ("mlm", "ind_itc")


def test_bad_batches_raise_naming_the_problem() -> None:
    cfg = AllInOneConfig.tiny()
    model = AllInOne(cfg)
    batch = random_batch(cfg)
    with pytest.raises(ValueError, match="missing 'mlm_labels'"):
        check_batch({k: v for k, v in batch.items() if k != "mlm_labels"}, cfg.max_text_len)
    with pytest.raises(ValueError, match="text length 13 exceeds max_text_len=12"):
        long = {k: (torch.cat([v, v[:, :1]], 1) if k in ("text_ids", "text_mask", "mlm_ids", "mlm_labels") else v)
                for k, v in batch.items()}
        check_batch(long, cfg.max_text_len)
    with pytest.raises(ValueError, match="batch sizes disagree"):
        check_batch({**batch, "video": batch["video"][:2]}, cfg.max_text_len)
    with pytest.raises(ValueError, match=r"video must be \[B, 3, 3, 32, 32\], got \(3, 2, 3, 32, 32\)"):
        model({**batch, "video": batch["video"][:, :2]})
