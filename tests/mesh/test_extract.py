"""Mesh extraction: coarse-to-fine equals dense on distance fields, at a fraction of the queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from nphmkit.mesh import Mesh, extract_mesh, load_mesh, save_mesh
from nphmkit.mesh.extract import _cell_reduce, _crossing_cells
from tests.mesh import shapes

BOX = ((-0.5, -0.45, -0.55), (0.5, 0.55, 0.45))


def _hausdorff(a: torch.Tensor, b: torch.Tensor) -> float:
    d = torch.cdist(a.double(), b.double())
    return max(d.min(0).values.max().item(), d.min(1).values.max().item())


@given(
    st.sampled_from(["sphere", "torus", "box"]),
    st.integers(20, 70),
    st.tuples(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1), st.floats(-0.1, 0.1)),
    st.integers(1, 4),
)
def test_coarse_to_fine_equals_dense(shape, res, shift, levels):
    base = {"sphere": shapes.sphere(radius=0.27), "torus": shapes.torus(), "box": shapes.box()}[shape]
    offset = torch.tensor(shift)
    fn = lambda p: base(p - offset)  # noqa: E731
    dense = extract_mesh(fn, BOX, res, method="dense")
    fine = extract_mesh(fn, BOX, res, method="coarse_to_fine", levels=levels, margin=1.0)
    assert dense.n_vertices > 0
    voxel = max((np.array(BOX[1]) - np.array(BOX[0])) / (res - 1))
    assert abs(fine.n_vertices - dense.n_vertices) <= 0.01 * dense.n_vertices
    assert _hausdorff(fine.vertices, dense.vertices) <= 0.5 * voxel
    assert fine.n_queries < dense.n_queries


@given(st.integers(2, 9), st.integers(2, 9), st.integers(2, 9), st.integers(0, 2**31 - 1))
def test_cell_reductions_match_pooling(x, y, z, seed):
    """The per-cell min/max/any/all over 8 corners equal 2x2x2 pooling (the plain reference), odd sizes too."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(x, y, z, generator=g)
    grid[torch.rand(x, y, z, generator=g) < 0.2] = 0.0  # zeros count as inside
    pool = lambda t: F.max_pool3d(t[None, None], kernel_size=2, stride=1)[0, 0]  # noqa: E731
    assert torch.equal(_cell_reduce(grid, torch.maximum), pool(grid))
    assert torch.equal(_cell_reduce(grid.abs(), torch.minimum), -pool(-grid.abs()))
    pos = (grid > 0).float()
    crossing = (pool(pos) > 0) & (pool(1.0 - pos) > 0)
    assert torch.equal(_crossing_cells(grid), crossing)
    assert torch.equal(_cell_reduce(grid > 0, torch.logical_and), pool(pos) * -pool(-pos) > 0)


@given(st.sampled_from(["sphere", "torus", "box"]), st.integers(24, 90), st.floats(0.2, 2.0))
def test_band_keeps_the_triangles_with_fewer_queries(shape, res, band):
    fn = {"sphere": shapes.sphere(radius=0.27), "torus": shapes.torus(), "box": shapes.box()}[shape]
    full = extract_mesh(fn, BOX, res, band=None)
    banded = extract_mesh(fn, BOX, res, band=band)
    assert banded.n_faces == full.n_faces and torch.equal(banded.faces, full.faces)
    assert torch.allclose(banded.vertices, full.vertices, atol=1e-6)
    assert banded.n_queries <= full.n_queries


def _steep_torus(steep: float):
    """A torus whose SDF is ``1 + steep`` times too steep for ``margin=1`` on its x > 0 side."""
    base = shapes.torus(0.3, 0.035)
    return lambda p: base(p) * (1 + steep * torch.sigmoid(p[:, 0] / 0.05))


@given(st.integers(64, 100), st.floats(2.0, 9.0))
def test_surface_following_recovers_what_a_too_tight_lipschitz_bound_misses(res, steep):
    fn = _steep_torus(steep)
    dense = extract_mesh(fn, BOX, res, method="dense")
    for band in (0.5, None):
        fine = extract_mesh(fn, BOX, res, band=band)
        assert fine.n_vertices == dense.n_vertices and torch.equal(fine.faces, dense.faces)
        assert torch.allclose(fine.vertices, dense.vertices, atol=1e-6)
        assert fine.n_queries < 0.1 * dense.n_queries


def test_without_following_the_steep_torus_loses_triangles():
    fn = _steep_torus(7.0)
    dense = extract_mesh(fn, BOX, 80, method="dense")
    lost = extract_mesh(fn, BOX, 80, follow_surface=False)
    assert lost.n_vertices < 0.8 * dense.n_vertices
    # without following, the band is off (it relies on the following): the same queries as band=None
    assert extract_mesh(fn, BOX, 80, follow_surface=False, band=None).n_queries == lost.n_queries


def test_query_fraction_and_same_surface_at_256():
    fn = shapes.torus(0.25, 0.08)
    dense = extract_mesh(fn, BOX, 256, method="dense", progress=False)
    fine = extract_mesh(fn, BOX, 256, progress=False)
    assert fine.n_queries <= 0.05 * dense.n_queries, fine.n_queries / dense.n_queries
    assert fine.n_vertices == dense.n_vertices and torch.equal(fine.faces, dense.faces)
    assert torch.allclose(fine.vertices, dense.vertices, atol=1e-5)


def test_faces_point_outwards_and_geometry_is_right():
    r = 0.3
    mesh = extract_mesh(shapes.sphere(radius=r), BOX, 96)
    assert mesh.signed_volume() > 0
    assert math.isclose(mesh.signed_volume(), 4 / 3 * math.pi * r**3, rel_tol=0.01)
    centroid = mesh.vertices[mesh.faces].mean(1)
    assert (mesh.face_normals() * centroid).sum(-1).min() > 0  # outward on a sphere
    assert torch.allclose(mesh.vertices.norm(dim=-1), torch.full((mesh.n_vertices,), r), atol=2e-3)


def test_level_sets_and_empty_grids():
    inner = extract_mesh(shapes.sphere(radius=0.3), BOX, 48, level=-0.1)
    assert torch.allclose(inner.vertices.norm(dim=-1), torch.full((inner.n_vertices,), 0.2), atol=3e-3)
    empty = extract_mesh(shapes.sphere(center=(3.0, 0, 0)), BOX, 16)
    assert empty.n_vertices == 0 and empty.n_faces == 0 and empty.n_queries > 0


def test_anisotropic_resolution_and_bad_arguments():
    mesh = extract_mesh(shapes.sphere(), BOX, (40, 50, 33))
    assert mesh.info["resolution"] == (40, 50, 33) and mesh.n_faces > 0
    with pytest.raises(ValueError, match="bounds"):
        extract_mesh(shapes.sphere(), ((0, 0, 0), (0, 1, 1)), 16)
    with pytest.raises(ValueError, match="method"):
        extract_mesh(shapes.sphere(), BOX, 16, method="octree")
    for resolution in (1, 16.5, True, "16", (16, 16), (16, 16.0, 16), None):
        with pytest.raises(ValueError, match="resolution: expected an int >= 2 or three of them"):
            extract_mesh(shapes.sphere(), BOX, resolution)
    assert extract_mesh(shapes.sphere(), BOX, np.array([12, 13, 14])).info["resolution"] == (12, 13, 14)
    for band in (0.0, -1.0, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="band: expected a positive number"):
            extract_mesh(shapes.sphere(), BOX, 16, band=band)
    with pytest.raises(ValueError, match=r"sdf_fn: expected an unbatched field \(N, 3\) -> \(N,\) or a batched field"):
        extract_mesh(lambda p: p, BOX, 8)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_export_round_trip_in_both_units(tmp_path, suffix):
    mesh = extract_mesh(shapes.torus(), BOX, 40)
    path = save_mesh(tmp_path / f"m{suffix}", mesh)
    back = load_mesh(path)
    assert back.units == "nphm" and torch.equal(back.faces, mesh.faces)
    assert torch.allclose(back.vertices, mesh.vertices, atol=1e-6)
    mm = load_mesh(save_mesh(tmp_path / f"mm{suffix}", mesh, units="mm"))
    assert mm.units == "mm" and torch.allclose(mm.vertices, mesh.vertices * 250, atol=1e-3)
    assert not list(tmp_path.glob(".*.tmp"))


def test_ply_with_colours_and_bad_names(tmp_path):
    mesh = Mesh(torch.rand(4, 3), torch.tensor([[0, 1, 2], [0, 2, 3]]))
    colors = np.full((4, 3), 200, np.uint8)
    back = load_mesh(save_mesh(tmp_path / "c.ply", mesh, vertex_colors=colors))
    assert torch.allclose(back.vertices, mesh.vertices)
    with pytest.raises(ValueError, match="vertex_colors"):
        save_mesh(tmp_path / "c.ply", mesh, vertex_colors=colors[:2])
    with pytest.raises(ValueError, match=r"\.ply, \.obj or \.glb"):
        save_mesh(tmp_path / "c.stl", mesh)
