"""Each backbone's ``config_from_official`` reads the configuration the official code was run with.

The golden fixtures record it (``golden["config"]``: UniVL's four JSON configs and task flags, VIOLET's
substituted literals, All-in-one's sacred config); the golden models are built from it
(``tests/golden/_*.py``), and here it must give exactly the tiny configuration the fixture READMEs describe
(the hand-written ``XConfig.tiny()``), while the official combination rules and refusals hold.
"""

from __future__ import annotations

import copy

import pytest

from backbones.allinone import AllInOneConfig
from backbones.allinone import pretrained as allinone
from backbones.univl import UniVLConfig
from backbones.univl import pretrained as univl
from backbones.violet import VioletConfig
from backbones.violet import pretrained as violet
from tests.golden import _allinone, _univl, _violet


def test_univl_fixture_config_is_the_tiny_config() -> None:
    assert _univl.golden_config() == UniVLConfig.tiny()
    caption = dict(task="caption", layout="caption", losses=("decoder",))
    assert _univl.golden_config(**caption) == UniVLConfig.tiny(**caption)


def test_univl_task_flags_override_the_json_depths_as_update_attr_does() -> None:
    official = copy.deepcopy(_univl.load_golden()["config"])
    # The fixture's JSON says visual 1 layer and decoder num_decoder_layers 1 (num_hidden_layers 12, unused);
    # its task flags say 2 and 2.
    assert (official["visual"]["num_hidden_layers"], official["decoder"]["num_decoder_layers"]) == (1, 1)
    cfg = univl.config_from_official(official)
    assert (cfg.visual.num_hidden_layers, cfg.decoder.num_hidden_layers, cfg.decoder.max_position_embeddings) == (2, 2, 64)
    del official["task"]["visual_num_hidden_layers"], official["task"]["decoder_num_hidden_layers"]
    cfg = univl.config_from_official(official)
    assert (cfg.visual.num_hidden_layers, cfg.decoder.num_hidden_layers) == (1, 1)
    official["cross"]["hidden_act"] = "relu"
    with pytest.raises(ValueError, match="cross config: hidden_act='relu'"):
        univl.config_from_official(official)


@pytest.mark.parametrize("task", ["retrieval", "qa_oe", "qa_mc"])
def test_violet_fixture_config_is_the_tiny_config(task: str) -> None:
    assert _violet.golden_config(task) == VioletConfig.tiny(task=task)


def test_violet_absent_entries_keep_the_official_literals_and_unknown_ones_raise() -> None:
    assert violet.config_from_official({}, task="qa_mc") == VioletConfig.base(task="qa_mc")
    official = copy.deepcopy(_violet.load_golden()["config"])
    with pytest.raises(ValueError, match=r"unknown swin keys \['window'\]"):
        violet.config_from_official({**official, "swin": {**official["swin"], "window": 3}})
    with pytest.raises(ValueError, match="D=64 but bert.hidden_size=32"):
        violet.config_from_official({**official, "D": 64})


def test_allinone_fixture_config_is_the_tiny_config() -> None:
    assert _allinone.golden_config() == AllInOneConfig.tiny()
    official = _allinone.load_golden()["config"]
    assert allinone.config_from_official(official).drop_path_rate == 0.1  # timm's ViT default, not in the sacred config
    with pytest.raises(ValueError, match=r"lacks \['num_frames'\]"):
        allinone.config_from_official({k: v for k, v in official.items() if k != "num_frames"})
