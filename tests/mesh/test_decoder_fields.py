"""Coarse-to-fine meshing on real fields: the shipped small NPHM (trained, posed) and a synthetic head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nphmkit.data.synthetic import SyntheticHead
from nphmkit.mesh import NPHM_BOUNDS, extract_mesh
from nphmkit.pretrained import SMALL_NPHM, load_small_nphm


def _same_surface(fn, res):
    """Coarse-to-fine (the default band, and every point of the flagged cells) gives dense's triangles;
    returns the default's fraction of dense's queries."""
    dense = extract_mesh(fn, NPHM_BOUNDS, res, method="dense", progress=False)
    fine = extract_mesh(fn, NPHM_BOUNDS, res, method="coarse_to_fine", progress=False)
    full = extract_mesh(fn, NPHM_BOUNDS, res, method="coarse_to_fine", band=None, progress=False)
    assert dense.n_vertices > 1000
    for mesh in (fine, full):
        assert mesh.n_vertices == dense.n_vertices and torch.equal(mesh.faces, dense.faces)
        assert torch.allclose(mesh.vertices, dense.vertices, atol=1e-5)
    assert fine.n_queries < 0.75 * full.n_queries  # 0.39x at 128^3 on a trained head
    return fine.n_queries / dense.n_queries


@pytest.mark.parametrize("index", [97])  # a training head with an expression
def test_trained_decoder_field_meshes_the_same_either_way(index):
    model = load_small_nphm()
    reg = np.load(SMALL_NPHM / "registrations.npz")
    z_id = torch.from_numpy(reg["z_id"][index : index + 1]).float()
    z_ex = torch.from_numpy(reg["z_ex"][index : index + 1]).float()
    with torch.no_grad():
        fraction = _same_surface(lambda p: model.sdf(p[None], z_id, z_ex)[0, :, 0], 72)
    assert fraction < 0.5  # ~4.6 % at 256^3; coarse levels dominate at this small grid


def test_synthetic_head_meshes_the_same_either_way():
    head = SyntheticHead.sample(1, seed=11)
    with torch.no_grad():
        fraction = _same_surface(lambda p: head.sdf(p[None])[0], 80)
    assert fraction < 0.5
