"""The loss transformer: shapes, reference parity, official key table, presets, ablations, a_t."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from meltr.loss_transformer import (
    PRESETS,
    EncoderLayer,
    LossTransformer,
    LossTransformerConfig,
    OfficialKeyError,
    load_official_meltr,
    official_to_ours,
    preset,
)


class OfficialLayout(nn.Module):
    """The official MELTR module's layout, built from torch's own layers (an independent reference)."""

    def __init__(self, t: int, f: int, h1: int, d: int) -> None:
        super().__init__()
        self.task_embedding = nn.Embedding(t, d)
        self.loss_fc1 = nn.Linear(1, h1)
        self.loss_fc2 = nn.Linear(h1, d)
        self.encoder = nn.TransformerEncoderLayer(d_model=d, nhead=8, batch_first=True, dim_feedforward=f)
        self.fc1 = nn.Linear(d, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, 1]
        e = self.loss_fc2(torch.relu(self.loss_fc1(x))) + self.task_embedding.weight
        return self.fc1(self.encoder(e.unsqueeze(0)).mean(1))


def test_shapes_single_and_batched() -> None:
    m = LossTransformer(LossTransformerConfig(dropout=0.0), ["a", "b", "c"])
    assert m(torch.rand(3)).shape == ()
    assert m(torch.rand(5, 3)).shape == (5,)
    with pytest.raises(ValueError, match="T=3"):
        m(torch.rand(4))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_equals_torch_reference(norm_first: bool) -> None:
    torch.manual_seed(0)
    cfg = LossTransformerConfig(hidden_dim=32, ffn_dim=48, num_heads=4, dropout=0.0, norm_first=norm_first)
    ours = EncoderLayer(cfg)
    ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, batch_first=True, norm_first=norm_first)
    ref.load_state_dict(ours.state_dict())  # same parameter names
    x = torch.randn(2, 5, 32)
    ref.train()  # avoid the inference fast path; dropout is 0 anyway
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,t", [("univl", 8), ("violet_retrieval", 3), ("violet_qa", 4), ("allinone", 2)])
def test_official_state_dict_loads_through_key_table(name: str, t: int) -> None:
    torch.manual_seed(1)
    cfg = PRESETS[name]
    off = OfficialLayout(t, cfg.ffn_dim, cfg.scale_hidden_dim, cfg.hidden_dim).eval()
    ours = load_official_meltr(off.state_dict()).eval()
    x = torch.rand(t) * 3
    torch.testing.assert_close(ours(x), off(x.unsqueeze(-1)).reshape(()), rtol=1e-5, atol=1e-6)
    # inverse: our state dict in official keys loads into the official layout unchanged
    back = ours.to_official()
    assert set(back) == set(off.state_dict())
    for k, v in off.state_dict().items():
        torch.testing.assert_close(back[k], v)


def test_official_loader_handles_module_prefix_and_files(tmp_path) -> None:
    off = OfficialLayout(3, 16, 8, 16)
    sd = {f"module.{k}": v for k, v in off.state_dict().items()}
    path = tmp_path / "meltr.pt"
    torch.save(sd, path)
    m = load_official_meltr(path, loss_names=["a", "b", "c"])
    assert m.loss_names == ("a", "b", "c") and m.cfg.ffn_dim == 16 and m.cfg.scale_hidden_dim == 8
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_official_meltr(tmp_path / "nope.pt")


def test_official_loader_rejects_foreign_keys_naming_source() -> None:
    sd = OfficialLayout(3, 16, 8, 16).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["fc1.weight"]
    with pytest.raises(OfficialKeyError, match=r"<state_dict>.*extra\.weight.*fc1\.weight"):
        official_to_ours(sd)


@pytest.mark.parametrize(
    "name,t,count", [("univl", 8, 562_688), ("violet_retrieval", 3, 1_712_128), ("violet_qa", 4, 430_336), ("allinone", 2, 116_736)]
)
def test_preset_parameter_counts_match_official_sizes(name: str, t: int, count: int) -> None:
    m = LossTransformer(preset(name, num_tasks=t))
    assert sum(p.numel() for p in m.parameters()) == count


def test_permutation_behaviour_with_and_without_task_embedding() -> None:
    torch.manual_seed(2)
    x = torch.tensor([0.3, 1.7, 4.0, 0.9])
    perm = torch.tensor([2, 0, 3, 1])
    se = LossTransformer(LossTransformerConfig(num_tasks=4, dropout=0.0, embedding="se")).eval()
    torch.testing.assert_close(se(x[perm]), se(x))  # no task identity: a set function
    # the paper's form: with residual "sum" the untrained transformer is the (symmetric) sum
    full = LossTransformer(LossTransformerConfig(num_tasks=4, dropout=0.0, residual="none")).eval()
    assert not torch.allclose(full(x[perm]), full(x))  # the task embedding breaks the symmetry
    # ... but permuting the task-embedding rows together with the losses restores the output
    perm_model = LossTransformer(LossTransformerConfig(num_tasks=4, dropout=0.0, residual="none")).eval()
    perm_model.load_state_dict(full.state_dict())
    with torch.no_grad():
        perm_model.task_embedding.weight.copy_(full.task_embedding.weight[perm])
    torch.testing.assert_close(perm_model(x[perm]), full(x))


def test_gradient_reaches_every_parameter() -> None:
    # the paper's form (a zero-initialised residual head blocks every other gradient until it moves)
    for cfg in (LossTransformerConfig(num_tasks=3, num_layers=2, residual="none"),
                LossTransformerConfig(num_tasks=3, norm_first=True, init="normal", residual="none")):
        m = LossTransformer(cfg)
        m(torch.rand(4, 3)).sum().backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_task_weights_equal_finite_differences() -> None:
    torch.manual_seed(3)
    m = LossTransformer(LossTransformerConfig(num_tasks=3, dropout=0.0, residual="none")).double().eval()
    x = torch.tensor([0.5, 2.0, 1.1], dtype=torch.float64)
    a = m.task_weights(x)
    eps = 1e-6
    fd = torch.stack([(m(x + eps * e) - m(x - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=torch.float64)])
    torch.testing.assert_close(a, fd, rtol=1e-6, atol=1e-8)
    assert m.task_weights(torch.stack([x, 2 * x])).shape == (2, 3)


def test_te_only_ignores_losses_and_se_only_has_no_task_embedding() -> None:
    te = LossTransformer(LossTransformerConfig(num_tasks=3, dropout=0.0, embedding="te")).eval()
    torch.testing.assert_close(te(torch.rand(3)), te(torch.rand(3) * 10))
    assert torch.equal(te.task_weights(torch.rand(3)), torch.zeros(3))
    assert not hasattr(te, "scale_embedding")
    se = LossTransformer(LossTransformerConfig(num_tasks=3, embedding="se"))
    assert "task_embedding.weight" not in se.state_dict()


def test_normal_init_matches_allinone_rules() -> None:
    torch.manual_seed(4)
    m = LossTransformer(preset("allinone", num_tasks=2, hidden_dim=256, ffn_dim=256))
    w = m.layers[0].linear1.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert torch.equal(m.layers[0].linear1.bias, torch.zeros_like(m.layers[0].linear1.bias))
    assert abs(m.task_embedding.weight.std().item() - 0.02) < 0.003
    # in-projection keeps Xavier-uniform: bound sqrt(6 / (d + 3d))
    bound = (6 / (256 + 3 * 256)) ** 0.5
    w_in = m.layers[0].self_attn.in_proj_weight
    assert 0.95 * bound < w_in.abs().max() <= bound
    assert abs(w_in.std().item() - bound / 3**0.5) < 0.002  # uniform std, not N(0, 0.02)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="divisible"):
        LossTransformer(LossTransformerConfig(num_tasks=2, hidden_dim=30, num_heads=8))
    with pytest.raises(ValueError, match="num_tasks"):
        LossTransformer(LossTransformerConfig())
    with pytest.raises(KeyError, match="univl"):
        preset("nope")
