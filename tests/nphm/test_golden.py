"""nphmkit reproduces the official MonoNPHM code's numbers (see data/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nphmkit.nphm.checkpoint import load_mononphm
from tests.helpers import assert_close
from tests.nphm import golden_weights as gw

DATA = Path(__file__).parent / "data" / "mononphm_golden.npz"


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """The golden weights written to disk in the official checkpoint layout, as torch.save does."""
    id_np, ex_np = gw.official_state()
    folder = tmp_path_factory.mktemp("mononphm")
    ckpt = {
        "id_decoder": {k: torch.from_numpy(v) for k, v in id_np.items()},
        "ex_decoder": {k: torch.from_numpy(v) for k, v in ex_np.items()},
        "epoch": 2500,
        "latent_codes": {"geo": torch.zeros(3, 2176), "exp": torch.zeros(5, 100)},
    }
    torch.save(ckpt, folder / "checkpoint_epoch_2500.tar")
    np.save(folder / "anchors_65.npy", gw.mean_anchors().astype(np.float64))
    return folder


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_matches_official_code(official_checkpoint, backend):
    golden = np.load(DATA)
    model = load_mononphm(official_checkpoint / "checkpoint_epoch_2500.tar", official_checkpoint / "anchors_65.npy")
    inp = gw.inputs()
    x, z_id, z_ex = (torch.from_numpy(inp[k]) for k in ("points", "z_id", "z_ex"))
    with torch.no_grad():
        assert_close(model.anchors(z_id), torch.from_numpy(golden["anchors"]), atol=1e-6)
        assert_close(model.sdf(x, z_id, z_ex, backend=backend)[..., 0], torch.from_numpy(golden["sdf"]))
        assert_close(model.canonical(x, z_id, z_ex, backend=backend), torch.from_numpy(golden["canonical"]))
        assert_close(model.identity_sdf(x, z_id, backend=backend)[..., 0], torch.from_numpy(golden["neutral_sdf"]))
    _, grad = model.sdf_and_gradient(x, z_id, z_ex, backend=backend, create_graph=False)
    assert_close(grad, torch.from_numpy(golden["gradient"]), atol=1e-5)
