"""Cameras: OpenCV conventions, projection and rays agree, pose transforms invert."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nphmkit.render import Camera, default_intrinsics, nphm_to_world, world_to_nphm
from tests.helpers import assert_close


def test_look_at_follows_opencv_axes():
    cam = Camera.look_at(torch.tensor([[0.0, 0.0, 3.0]]), torch.zeros(1, 3), image_size=(64, 80))
    # a frontal camera on +z: NPHM +x is image right, +y is image up (camera y down), z towards the camera
    assert_close(cam.R[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    uv, z = cam.project(torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]]))
    assert_close(uv[0, 0], torch.tensor([40.0, 32.0]), atol=1e-4)
    assert uv[0, 1, 0] > 40 and uv[0, 2, 1] < 32 and torch.allclose(z, torch.full_like(z, 3.0))
    assert_close(cam.K[0], default_intrinsics((64, 80))[0])


@given(st.integers(1, 3), st.integers(5, 40), st.integers(0, 1000))
def test_rays_hit_the_pixels_they_come_from(batch, size, seed):
    g = torch.Generator().manual_seed(seed)
    eye = torch.randn(batch, 3, generator=g) * 2 + torch.tensor([0.0, 0.0, 3.0])
    cam = Camera.look_at(eye, torch.randn(batch, 3, generator=g) * 0.1, image_size=(size, size + 3))
    origins, dirs = cam.rays()
    assert origins.shape == (batch, size * (size + 3), 3)
    assert_close(dirs.norm(dim=-1), torch.ones(batch, size * (size + 3)), atol=1e-5)
    uv, depth = cam.project(origins + 1.7 * dirs)
    assert_close(uv, cam.pixel_grid().expand(batch, -1, -1), atol=2e-3)
    assert bool((depth > 0).all())
    pts = torch.randn(batch, 7, 3, generator=g)
    assert_close(cam.camera_to_world(cam.world_to_camera(pts)), pts, atol=1e-5)


def test_head_pose_round_trip():
    R = torch.linalg.qr(torch.randn(2, 3, 3)).Q
    t, s = torch.randn(2, 3), torch.tensor([1.0, 1.3])
    x = torch.randn(2, 9, 3)
    assert_close(world_to_nphm(nphm_to_world(x, R, t, s), R, t, s), x, atol=1e-5)


def test_bad_cameras_are_refused_by_name():
    K, R, t = default_intrinsics((8, 8)), torch.eye(3)[None], torch.tensor([[0.0, 0.0, 3.0]])
    for kwargs, message in (
        ({"K": K * float("nan")}, "K: expected finite values"),
        ({"t": t * float("inf")}, "t: expected finite values"),
        ({"R": 2 * R}, r"R: expected rotation matrices \(R R\^T = I, det \+1; off by 3\)"),
        ({"R": torch.diag(torch.tensor([1.0, 1.0, -1.0]))[None]}, "R: expected rotation matrices"),  # a mirror
    ):
        args = {"K": K, "R": R, "t": t, **kwargs}
        with pytest.raises(ValueError, match=message):
            Camera(args["K"], args["R"], args["t"], (8, 8))
    # rotations with float32 rounding, and ones that carry gradients, are accepted
    rot = torch.linalg.qr(torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(0))).Q
    rot = rot * torch.linalg.det(rot)[:, None, None]
    Camera(K.expand(4, 3, 3), rot.requires_grad_(True), t.expand(4, 3), (8, 8))
    assert len(Camera(K[:0], R[:0], t[:0], (8, 8)).K) == 0  # an empty batch is no error
