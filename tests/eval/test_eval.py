"""Evaluation: exact distances against brute force, alignment recovers known similarities, metrics on
analytic cases (spheres, planes) and invariance of the NoW figures to the prediction's pose."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.eval import (
    Similarity,
    closest_points,
    face_region,
    icp,
    now_errors,
    point_mesh_distance_reference,
    sample_surface,
    surface_metrics,
    umeyama,
)
from nphmkit.transforms import axis_angle_to_matrix
from tests.eval.shapes import icosphere as _sphere


def _rotation(seed, angle=0.5):
    g = np.random.default_rng(seed)
    axis = g.normal(size=3)
    axis /= np.linalg.norm(axis)
    import torch

    return axis_angle_to_matrix(torch.tensor(axis * angle)[None])[0].numpy()


@settings(max_examples=20, deadline=None)
@given(n_tri=st.integers(1, 30), n_pts=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_closest_points_equal_brute_force(n_tri, n_pts, seed):
    g = np.random.default_rng(seed)
    vertices = g.normal(size=(3 * n_tri, 3))
    faces = np.arange(3 * n_tri).reshape(n_tri, 3)
    points = g.normal(size=(n_pts, 3)) * 1.5
    got = closest_points(points, vertices, faces, chunk=7)
    ref = point_mesh_distance_reference(points, vertices, faces)
    np.testing.assert_allclose(got.distance, ref, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(got.point - points, axis=1), got.distance, atol=1e-10)
    recon = (got.bary[:, :, None] * vertices[faces[got.face]]).sum(1)
    np.testing.assert_allclose(recon, got.point, atol=1e-10)


def test_sphere_to_sphere_and_plane_to_plane():
    v, f = _sphere(1.0)
    outer = np.random.default_rng(0).normal(size=(500, 3))
    outer = 1.2 * outer / np.linalg.norm(outer, axis=1, keepdims=True)
    d = closest_points(outer, v, f).distance
    # the icosphere's faces sit slightly inside the unit sphere (level 3: < 0.5 %)
    assert np.all(d >= 0.2 - 1e-9) and np.all(d < 0.2 + 0.006)
    plane_v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float)
    plane_f = np.array([[0, 1, 2], [0, 2, 3]])
    above = np.random.default_rng(1).uniform(-0.9, 0.9, size=(200, 3))
    above[:, 2] = 0.3
    np.testing.assert_allclose(closest_points(above, plane_v, plane_f).distance, 0.3, atol=1e-12)
    metrics = surface_metrics(plane_v + [0, 0, 0.005], plane_f, plane_v, plane_f, mm_per_unit=250, n_samples=2000)
    assert metrics["accuracy"] == pytest.approx(1.25, abs=1e-9) and metrics["completeness"] == pytest.approx(1.25, abs=1e-9)
    assert metrics["recall"]["1mm"] == 0.0 and metrics["recall"]["2.5mm"] == 1.0 and metrics["normal_consistency"] > 0.999


@pytest.mark.parametrize("scale", [True, False])
def test_umeyama_recovers_a_similarity(scale):
    g = np.random.default_rng(3)
    src = g.normal(size=(7, 3))
    true = Similarity(1.7 if scale else 1.0, _rotation(4, 1.2), np.array([0.3, -0.2, 2.0]))
    found = umeyama(src, true.apply(src), scale=scale)
    np.testing.assert_allclose(found.R, true.R, atol=1e-10)
    np.testing.assert_allclose(found.t, true.t, atol=1e-10)
    assert found.s == pytest.approx(true.s, abs=1e-10)
    mirrored = src * [-1, 1, 1]  # a reflection is never returned
    assert np.linalg.det(umeyama(src, mirrored).R) > 0
    with pytest.raises(ValueError, match="src, dst"):
        umeyama(src[:2], src[:2])


def test_icp_and_now_recover_a_mesh_against_itself():
    v, f = _sphere(1.0, level=3)
    v = v * [0.8, 1.0, 0.9]  # an ellipsoid: orientation is observable
    v[:, 2] += 0.25 * np.maximum(v[:, 2], 0) ** 2  # and front differs from back
    scan = v.copy()
    true = Similarity(1.0, _rotation(7, 0.08), np.array([0.02, -0.01, 0.03]))
    moved = true.apply(v)  # the prediction is the scan seen in another pose
    inverse = Similarity(1.0, true.R.T, -true.R.T @ true.t)
    fit = icp(scan, moved, f, iterations=40)
    np.testing.assert_allclose(fit.transform.R @ true.R, np.eye(3), atol=1e-4)  # ICP undoes the rotation
    assert min(fit.errors) < 1e-9 and fit.converged and fit.iterations < 15
    lm = np.array([0, 5, 11, 30, 60, 90, 120])
    res = now_errors(scan, scan[lm], moved, f, moved[lm], mm_per_unit=250)
    assert res.mean < 0.05 and res.median < 0.05
    np.testing.assert_allclose(res.alignment.apply(moved), scan, atol=2e-4)
    assert inverse.apply(moved) == pytest.approx(scan)


def test_now_figures_ignore_the_predictions_pose_and_scale():
    v, f = _sphere(1.0, level=2)
    v = v * [0.8, 1.0, 0.9]
    g = np.random.default_rng(5)
    scan = v + 0.01 * g.normal(size=v.shape)  # a noisy scan of the same shape
    lm = np.array([0, 3, 6, 9, 12, 20, 33])
    base = now_errors(scan, scan[lm], v, f, v[lm], mm_per_unit=250)
    pose = Similarity(2.5, _rotation(9, 2.0), np.array([1.0, 2.0, -3.0]))
    posed = now_errors(scan, scan[lm], pose.apply(v), f, pose.apply(v[lm]), mm_per_unit=250)
    # the landmark similarity is exactly equivariant; ICP then stops within 0.1 % (mean) / 1 % (median)
    # of the same point on a noisy scan (its steps differ in the last float digits)
    assert posed.icp.errors[0] == pytest.approx(base.icp.errors[0], rel=1e-9)
    assert posed.mean == pytest.approx(base.mean, rel=5e-3) and posed.median == pytest.approx(base.median, rel=2e-2)
    assert 0.5 < base.mean < 3.0  # 0.01 units of noise = 2.5 mm rms per axis


def test_sampling_and_face_region():
    v, f = _sphere(2.0, level=2)
    pts, normals = sample_surface(v, f, 1000, seed=0)
    assert pts.shape == (1000, 3) and np.allclose(np.linalg.norm(normals, axis=1), 1)
    assert np.all(closest_points(pts, v, f).distance < 1e-9)
    mask = face_region(pts, [0, 0, 2.0], 1.0)
    assert 0 < mask.mean() < 0.2 and np.all(np.linalg.norm(pts[mask] - [0, 0, 2], axis=1) <= 1)
    with pytest.raises(ValueError, match="mesh: expected"):
        surface_metrics(v, f[:0], v, f)


def test_broken_meshes_are_refused_by_name():
    v, f = _sphere(0.4, level=1)
    bad = v.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="1 of .* vertices are NaN"):
        surface_metrics(bad, f, v, f)
    with pytest.raises(ValueError, match="faces index vertices"):
        surface_metrics(v, f + len(v), v, f)
    with pytest.raises(ValueError, match="non-empty faces"):
        surface_metrics(v, f[:0], v, f)
