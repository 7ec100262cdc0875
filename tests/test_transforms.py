"""nphmkit.transforms (rotations, similarity transforms) and the default crop pose."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.data.synthetic import SyntheticHeadModel
from nphmkit.data.synthetic.framing import face_box, face_points
from nphmkit.preprocess import square_box
from nphmkit.render import Camera, default_crop_pose, default_intrinsics, render
from nphmkit.render.camera import CROP_CENTRE
from nphmkit.transforms import (
    FRONTAL_ROTATION,
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
    assert abs(float(centre[0])) < 1e-12 and abs(float(centre[1])) < 1e-12 and math.isclose(float(centre[2]), 1.846, abs_tol=0.01)
    # frontal: the head's nose (+z) points at the camera (-z in the camera frame), its up (+y) is image up (-y)
    assert_close(R[0] @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    assert_close(R[0] @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    # the mean head's face box, made square and enlarged x1.42, is the crop (as photos are cropped)
    model = SyntheticHeadModel()
    field = model.field(*model.initial_codes(1))
    cam = Camera(default_intrinsics((64, 64)), *default_crop_pose(1), (64, 64))
    box = square_box(face_box(cam, face_points(field)))[0]
    assert_close(box, torch.tensor([0.0, 0.0, 64.0, 64.0]), atol=2.5, rtol=0)
    with torch.no_grad():
        mask = render(field, cam, differentiable=False).mask[0]
    assert bool(mask[32, 32]) and bool(mask[:, 0].any()) is False  # the face centre is on the head; cheeks inside


@settings(max_examples=30, deadline=None)
@given(yaw=st.floats(-1.2, 1.2), pitch=st.floats(-0.5, 0.5), roll=st.floats(-0.4, 0.4), x=st.floats(-0.2, 0.2),
       y=st.floats(-0.2, 0.2), z=st.floats(1.0, 4.0), focal=st.floats(1.5, 5.0), size=st.integers(17, 300),
       cx=st.floats(0.3, 0.7))
def test_crop_pose_code_round_trip(yaw, pitch, roll, x, y, z, focal, size, cx):
    from nphmkit.transforms import decode_crop_pose, encode_crop_pose

    R = torch.tensor(FRONTAL_ROTATION, dtype=torch.float64) @ axis_angle_to_matrix(
        torch.tensor([[pitch, yaw, roll]], dtype=torch.float64))
    t = torch.tensor([[x, y, z]], dtype=torch.float64)
    K = torch.tensor([[[focal * size, 0, cx * size], [0, focal * size, 0.5 * size], [0, 0, 1]]], dtype=torch.float64)
    rel, pos = encode_crop_pose(R, t, K, (size, size))
    R2, t2 = decode_crop_pose(rel, pos, K, (size, size))
    assert_close(R2, R, atol=1e-10)
    assert_close(t2, t, atol=1e-10)
    # a frontal head on the optical axis is the identity rotation at the image centre
    rel0, pos0 = encode_crop_pose(torch.tensor(FRONTAL_ROTATION, dtype=torch.float64)[None],
                                  torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64), K, (size, size))
    assert_close(rel0[0], torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert_close(pos0[0], torch.tensor([2 * cx - 1, 0.0, 2.0 / focal], dtype=torch.float64), atol=1e-12)
