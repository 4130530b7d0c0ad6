"""One name for the target loss across the backbones: each config's ``target_loss`` defaults to its task's,
can pick any active loss without changing the losses (values or order), is validated, and the All-in-one's
old key ``primary`` still loads from stored configs (``RENAMED``, applied by meltr.config)."""

from __future__ import annotations

import pytest
import torch

from backbones.allinone import AllInOne, AllInOneConfig
from backbones.univl.config import TARGET_LOSS, UniVLConfig
from backbones.violet import Violet
from backbones.violet.config import TASK_LOSSES, VioletConfig
from meltr.config import ConfigError, from_dict, to_dict
from scripts.recipes import allinone as allinone_recipe
from tests.golden._violet import random_batch


@pytest.mark.parametrize("task", sorted(TARGET_LOSS))
def test_univl_derives_the_target_loss_of_its_task(task: str) -> None:
    cfg = UniVLConfig.tiny(task=task, losses=("sentiment", "joint", "alignment", "decoder"))
    assert cfg.target_loss == TARGET_LOSS[task]
    assert cfg.replace(task="caption").target_loss == "decoder"  # follows the task unless given
    assert UniVLConfig.tiny(target_loss="joint").target_loss == "joint"
    assert UniVLConfig.tiny(target_loss="").target_loss == "alignment"  # what configs stored before None


@pytest.mark.parametrize("task", sorted(TASK_LOSSES))
def test_violet_derives_the_target_loss_of_its_task_and_validates_a_given_one(task: str) -> None:
    cfg = VioletConfig.tiny(task=task)
    assert cfg.target_loss == TASK_LOSSES[task][0]
    assert cfg.replace(losses=TASK_LOSSES[task][1:]).target_loss == TASK_LOSSES[task][1]
    assert VioletConfig.tiny(task=task, target_loss="mvm").target_loss == "mvm"
    assert from_dict(to_dict(VioletConfig.tiny(task=task, target_loss="mtm")), VioletConfig).target_loss == "mtm"
    with pytest.raises(ValueError, match=r"VioletConfig.target_loss='mlm' is not an active loss"):
        VioletConfig.tiny(task=task, target_loss="mlm")


@pytest.mark.parametrize("task", ["qa_oe", "qa_mc"])
def test_violet_target_loss_does_not_change_the_losses(task: str) -> None:
    # The answer loss keeps its own key whichever loss is the target (it used to be keyed by the target).
    torch.manual_seed(0)
    default = Violet(VioletConfig.tiny(task=task)).eval()
    other = Violet(VioletConfig.tiny(task=task, target_loss="vtm")).eval()
    other.load_state_dict(default.state_dict())
    batch = random_batch(task, batch=2, frames=2, size=64, length=8)
    a, b = (m(batch, generator=torch.Generator().manual_seed(1)) for m in (default, other))  # the same masking draws
    assert list(a) == list(b) == list(TASK_LOSSES[task]) and other.target_loss == "vtm"
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_allinone_target_loss_orders_the_losses_and_reads_the_old_key() -> None:
    assert AllInOne(AllInOneConfig.tiny(target_loss="mlm")).loss_names == ("mlm", "ind_itc")
    with pytest.warns(DeprecationWarning, match="AllInOneConfig.__init__: 'primary=' is renamed 'target_loss='"):
        assert AllInOneConfig.tiny(primary="mlm") == AllInOneConfig.tiny(target_loss="mlm")
    with pytest.warns(FutureWarning, match="'primary' is renamed 'target_loss'"):
        assert from_dict({"primary": "mlm"}, AllInOneConfig).target_loss == "mlm"
    # A checkpoint's stored run config (scripts/evaluate.py re-reads it) written with model.primary.
    with pytest.warns(FutureWarning, match="'model.primary' is renamed 'model.target_loss'"):
        run = from_dict({"model": {"size": "tiny", "primary": "mlm"}}, allinone_recipe.RunConfig)
    assert allinone_recipe.model_config(run.model, run.data).loss_names == ("mlm", "ind_itc")
    with pytest.raises(ConfigError, match="target_loss: expected one of 'ind_itc', 'mlm'"):
        from_dict({"model": {"target_loss": "vtm"}}, allinone_recipe.RunConfig)
