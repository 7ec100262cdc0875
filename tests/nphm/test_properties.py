"""Model properties: mirror symmetry through the pair MLPs, input checks, code I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nphmkit import NPHMConfig
from nphmkit.nphm import mirror_id_code
from nphmkit.nphm.codes import load_codes, save_codes, save_official_codes
from tests.helpers import assert_close
from tests.nphm.cases import make_inputs, make_model


def _symmetric_model(config, seed):
    model = make_model(config, seed=seed)
    cfg = model.config
    with torch.no_grad():
        # symmetric anchor offsets: zero the offset MLP, mirror-symmetric mean anchors (default layout)
        model.anchor_mlp.layers[-1].weight.zero_()
        model.anchor_mlp.layers[-1].bias.zero_()
        # x-even middle and background MLPs: their first layer ignores the local x coordinate
        x_col = cfg.lat_dim_glob + cfg.lat_dim_loc
        model.ensemble.weights[0][cfg.n_symmetric_pairs :, :, x_col] = 0
    return model


@given(st.integers(0, 500), st.integers(1, 30))
def test_mirror_symmetry_through_pair_mlps(seed, n_points):
    model = _symmetric_model(NPHMConfig.tiny(), seed % 11)
    x, z_id, _ = make_inputs(model, 2, n_points, seed)
    hyper = 0.05 * torch.randn(2, n_points, 2)
    q = torch.cat([x, hyper], -1)
    q_mirror = torch.cat([x * torch.tensor([-1.0, 1.0, 1.0]), hyper], -1)
    with torch.no_grad():
        a = model.identity_sdf(q, z_id, backend="torch")
        b = model.identity_sdf(q_mirror, mirror_id_code(z_id, model.config), backend="torch")
        c = model.identity_sdf(q_mirror, z_id, backend="torch")
    assert_close(a, b)
    assert (a - c).abs().max() > 1e-4  # without mirroring the code the head is not symmetric


def test_mirror_id_code_is_an_involution():
    cfg = NPHMConfig.tiny()
    z = torch.randn(3, cfg.id_dim)
    assert torch.equal(mirror_id_code(mirror_id_code(z, cfg), cfg), z)
    assert not torch.equal(mirror_id_code(z, cfg), z)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda x, zi, ze: (x[0], zi, ze), ValueError, r"points: expected shape \(B, N, 3\), got \(5, 3\)"),
        (lambda x, zi, ze: (x, zi[:, :-1], ze), ValueError, r"z_id: expected shape \(B, 2176\)"),
        (lambda x, zi, ze: (x, zi, ze[:1]), ValueError, r"z_ex: expected batch size 2"),
        (lambda x, zi, ze: (x, zi.clone().fill_(float("nan")), ze), ValueError, "z_id: expected finite"),
        (lambda x, zi, ze: (x.double(), zi, ze), TypeError, "points: expected dtype torch.float32"),
        (lambda x, zi, ze: (x.long(), zi, ze), TypeError, "points: expected a floating-point"),
        (lambda x, zi, ze: (x.numpy(), zi, ze), TypeError, "points: expected a torch.Tensor"),
    ],
)
def test_bad_inputs_name_the_argument(change, error, match):
    model = make_model()
    args = change(*make_inputs(model, 2, 5))
    with pytest.raises(error, match=match):
        model.sdf(*args)


def test_unknown_backend_is_named():
    model = make_model()
    with pytest.raises(ValueError, match="backend must be one of"):
        model.sdf(*make_inputs(model, 1, 3), backend="cuda")


def test_triton_backend_without_triton_names_the_extra(monkeypatch):
    import nphmkit.kernels as kernels

    monkeypatch.setitem(kernels._state, "checked", True)
    monkeypatch.setitem(kernels._state, "error", "backend='triton' needs the optional package 'triton'; install it "
                        "with: pip install 'nphmkit[triton]'")
    model = make_model().requires_grad_(False)
    with pytest.raises(ImportError, match=r"nphmkit\[triton\]"):
        model.sdf(*make_inputs(model, 1, 3), backend="triton")
    assert not kernels.available()
    with torch.no_grad():
        model.sdf(*make_inputs(model, 1, 3), backend="auto")  # auto never needs triton on the CPU


def test_codes_round_trip_npz_and_official_layout(tmp_path):
    z_id, z_ex = torch.randn(3, 2176), torch.randn(3, 100)
    rot = torch.linalg.qr(torch.randn(3, 3, 3)).Q
    path = save_codes(tmp_path / "codes.npz", z_id, z_ex, rotation=rot, translation=torch.randn(3, 3), scale=torch.ones(3))
    codes = load_codes(path)
    assert torch.equal(codes.z_id, z_id) and torch.equal(codes.z_ex, z_ex) and torch.equal(codes.rotation, rot)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind

    folder = save_official_codes(tmp_path / "track", z_id[:1], z_ex)
    assert np.load(folder / "z_geo.npy").shape == (1, 1, 2176)
    codes = load_codes(folder)
    assert codes.z_id.shape == (3, 2176) and torch.equal(codes.z_id[2], z_id[0]) and torch.equal(codes.z_ex, z_ex)
    with pytest.raises(ValueError, match="one identity"):
        save_official_codes(tmp_path / "t2", z_id, z_ex)
    with pytest.raises(ValueError, match=".npz"):
        save_codes(tmp_path / "codes.txt", z_id, z_ex)
    with pytest.raises(FileNotFoundError, match="z_geo.npy"):
        load_codes(tmp_path)
