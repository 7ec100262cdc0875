"""The Pix2NPHM regressor: code layout, frozen backbones, gradient flow, save/load."""

from __future__ import annotations

import pytest
import torch

from nphmkit import NPHMConfig
from nphmkit.heads import Pix2NPHMRegressor, RegressorConfig
from nphmkit.transforms import rotation_6d_to_matrix
from tests.helpers import assert_close


def test_outputs_follow_the_nphm_layout():
    model = Pix2NPHMRegressor(RegressorConfig.small())
    out = model(torch.rand(2, 3, 128, 128))
    cfg = NPHMConfig.small()
    assert out["z_id"].shape == (2, cfg.id_dim) and out["z_ex"].shape == (2, cfg.lat_dim_ex)
    R = out["rotation"]
    assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)
    assert_close(torch.linalg.det(R), torch.ones(2), atol=1e-5)
    assert out["translation"].shape == (2, 3)
    # the background slot (last local code) comes from the global token's own read-out
    with torch.no_grad():
        model.read_background[-1].bias.fill_(7.0)
        model.read_background[-1].weight.zero_()
    assert torch.all(model(torch.rand(1, 3, 128, 128))["z_id"][0, -32:] == 7.0)
    # other float dtypes are read as the network's; integer images are refused by name
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert_close(model(x.double())["z_ex"], model(x)["z_ex"], atol=1e-5)
    with pytest.raises(TypeError, match="images: expected float RGB in \\[0, 1\\], got dtype torch.uint8"):
        model((x * 255).to(torch.uint8))


def test_backbones_are_frozen_and_the_rest_learns():
    model = Pix2NPHMRegressor(RegressorConfig.small()).train()
    assert all(not bb.training for bb in model.backbones)
    out = model(torch.rand(2, 3, 128, 128))
    (out["z_id"].square().sum() + out["z_ex"].square().sum() + out["translation"].sum()).backward()
    assert all(p.grad is None for p in model.backbones.parameters())
    for name in ("queries", "proj.0.weight", "blocks.0.attn.qkv.weight", "read_local.0.weight", "read_expression.2.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    summary = model.parameter_summary()
    assert summary["backbones"]["trainable"] == 0 and summary["backbones"]["frozen"] > 0
    assert summary["blocks"]["trainable"] > 0
    assert summary["tokens"]["trainable"] == model.queries.numel() + model.source_embed.numel()


def test_save_load_round_trip_is_exact(tmp_path):
    model = Pix2NPHMRegressor(RegressorConfig.small())
    folder = model.save(tmp_path / "reg")
    back = Pix2NPHMRegressor.load(folder)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a, b = model(x), back(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="images: expected shape"):
        model(torch.rand(1, 3, 64, 64))


def test_rotation_6d_handles_any_input():
    x = torch.randn(5, 6)
    R = rotation_6d_to_matrix(x)
    assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert_close(rotation_6d_to_matrix(torch.tensor([[1.0, 0, 0, 0, 1, 0]]))[0], torch.eye(3))
