"""nphmkit.transforms (rotations, similarity transforms) and the default crop pose."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.data.synthetic import SyntheticHeadModel
from nphmkit.render import Camera, default_crop_pose, default_intrinsics, render
from nphmkit.render.camera import CROP_CENTRE
from nphmkit.transforms import (
    angle_between,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    nphm_to_world,
    rigid_inverse,
    rotation_6d_to_matrix,
    rotation_about,
    world_to_nphm,
)
from tests.helpers import assert_close

_batch = st.integers(1, 5)


def _rotvecs(batch, seed, max_angle=3.0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(batch, 3, generator=g, dtype=torch.float64), dim=-1)
    return axis * torch.rand(batch, 1, generator=g, dtype=torch.float64) * max_angle


@settings(max_examples=30, deadline=None)
@given(batch=_batch, seed=st.integers(0, 10_000))
def test_axis_angle_round_trip_and_orthonormal(batch, seed):
    v = _rotvecs(batch, seed)
    R = axis_angle_to_matrix(v)
    eye = torch.eye(3, dtype=torch.float64).expand(batch, 3, 3)
    assert_close(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert_close(torch.linalg.det(R), torch.ones(batch, dtype=torch.float64), atol=1e-12)
    assert_close(matrix_to_axis_angle(R), v, atol=1e-6)
    assert_close(angle_between(R, eye), v.norm(dim=-1), atol=1e-6)
    # about a unit axis: same as the axis-angle vector
    angle = v.norm(dim=-1)
    assert_close(rotation_about(v / angle[:, None], angle), R, atol=1e-12)


def test_small_angles_are_exact_and_differentiable():
    v = torch.tensor([[1e-9, -2e-9, 0.0]], dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(v)
    (g,) = torch.autograd.grad(R[0, 2, 1], v)  # d R_zy / d v_x = 1 at the identity
    assert torch.isfinite(g).all() and abs(float(g[0, 0]) - 1) < 1e-6
    assert_close(axis_angle_to_matrix(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))


@settings(max_examples=20, deadline=None)
@given(batch=_batch, seed=st.integers(0, 10_000))
def test_6d_gives_rotations_and_keeps_a_rotation(batch, seed):
    x = torch.randn(batch, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    R = rotation_6d_to_matrix(x)
    assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(batch, 3, 3), atol=1e-12)
    assert_close(torch.linalg.det(R), torch.ones(batch, dtype=torch.float64), atol=1e-12)
    Q = axis_angle_to_matrix(_rotvecs(batch, seed))
    assert_close(rotation_6d_to_matrix(Q[:, :2].reshape(batch, 6)), Q, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(batch=_batch, n=st.integers(1, 9), seed=st.integers(0, 10_000), scaled=st.booleans())
def test_similarity_transforms_invert(batch, n, seed, scaled):
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(_rotvecs(batch, seed))
    t = torch.randn(batch, 3, generator=g, dtype=torch.float64)
    s = 0.5 + torch.rand(batch, generator=g, dtype=torch.float64) if scaled else None
    p = torch.randn(batch, n, 3, generator=g, dtype=torch.float64)
    world = nphm_to_world(p, R, t, s)
    expected = (p if s is None else p * s[:, None, None]) @ R.transpose(1, 2) + t[:, None]
    assert_close(world, expected, atol=1e-12)
    assert_close(world_to_nphm(world, R, t, s), p, atol=1e-12)


def test_rigid_inverse_undoes_a_rotation_about_a_pivot():
    R = axis_angle_to_matrix(_rotvecs(2, 7))
    pivot = torch.randn(2, 3, dtype=torch.float64)
    shift = torch.randn(2, 3, dtype=torch.float64)
    q = torch.randn(2, 11, 3, dtype=torch.float64)
    p = (q - pivot[:, None]) @ R.transpose(1, 2) + pivot[:, None] + shift[:, None]  # forward: rotate, then shift
    assert_close(rigid_inverse(p, R, pivot, shift), q, atol=1e-12)


def test_default_crop_pose_frames_the_mean_head():
    R, t = default_crop_pose(2, dtype=torch.float64)
    assert R.shape == (2, 3, 3) and t.shape == (2, 3) and R.dtype == torch.float64
    centre = R[0] @ torch.tensor(CROP_CENTRE, dtype=torch.float64) + t[0]  # the crop centre in the camera frame
    assert abs(float(centre[0])) < 1e-12 and abs(float(centre[1])) < 1e-12 and math.isclose(float(centre[2]), 2.70, abs_tol=0.01)
    # frontal: the head's nose (+z) points at the camera (-z in the camera frame), its up (+y) is image up (-y)
    assert_close(R[0] @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    assert_close(R[0] @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    model = SyntheticHeadModel()
    field = model.field(*model.initial_codes(1))
    cam = Camera(default_intrinsics((64, 64)), *default_crop_pose(1), (64, 64))
    with torch.no_grad():
        mask = render(field, cam, differentiable=False).mask[0]
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    centre = (float(cols.float().mean()), float(rows.float().mean()))
    assert 40 <= height <= 64 and 30 <= width <= 62, (height, width)  # fills most of the crop, inside it
    assert abs(centre[0] - 31.5) < 3 and abs(centre[1] - 31.5) < 6, centre
