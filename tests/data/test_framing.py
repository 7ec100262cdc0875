"""Synthetic renders are framed as photo crops: the face box, squared and enlarged x1.42, is the image."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.data.synthetic import SyntheticHead
from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.framing import crop_camera, face_box, face_points
from nphmkit.preprocess import square_box
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def points():
    head = SyntheticHead(P.sample_identity(3, 21), P.sample_expression(3, 22))
    return face_points(head).double()


def _direction(yaw: float, pitch: float) -> torch.Tensor:
    return torch.tensor([[math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)]],
                        dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(
    head=st.integers(0, 2), size=st.integers(17, 300), yaw=st.floats(-0.8, 0.8), pitch=st.floats(-0.3, 0.4),
    focal=st.floats(1.5, 6.0),
)
def test_the_enlarged_face_box_is_the_crop(points, head, size, yaw, pitch, focal):
    pts = points[head:head + 1]
    target = torch.tensor([[0.0, -0.02, 0.13]], dtype=torch.float64)
    cam, box = crop_camera(pts, _direction(yaw, pitch), target, size, torch.tensor([focal], dtype=torch.float64))
    assert cam.image_size == (size, size) and cam.K.dtype == torch.float64
    assert_close(box, face_box(cam, pts))
    # the square x1.42 box around the face box is exactly the image (as a photo crop is)
    assert_close(square_box(box)[0], torch.tensor([0.0, 0.0, size, size], dtype=torch.float64), atol=1e-6 * size, rtol=0)
    # the crop's focal length is the one asked for
    assert abs(float(cam.K[0, 0, 0]) / size / focal - 1) < 0.003
    assert float(cam.K[0, 0, 0]) == float(cam.K[0, 1, 1])
    # the camera looks at the target from `direction`
    centre = cam.center()[0] - target[0]
    assert_close(centre / centre.norm(), _direction(yaw, pitch)[0])


def test_jitter_moves_and_scales_the_crop(points):
    pts = points[:2]
    direction = torch.cat([_direction(0.2, 0.1), _direction(-0.4, 0.0)])
    target = torch.tensor([[0.0, -0.02, 0.13]], dtype=torch.float64).expand(2, 3)
    focal = torch.tensor([2.0, 3.0], dtype=torch.float64)
    _, plain = crop_camera(pts, direction, target, 128, focal)
    shift = torch.tensor([[0.05, -0.02], [0.0, 0.03]], dtype=torch.float64)
    scale = torch.tensor([1.1, 0.9], dtype=torch.float64)
    _, moved = crop_camera(pts, direction, target, 128, focal, shift=shift, scale=scale)
    side = lambda b: torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])  # noqa: E731
    assert_close(side(moved), side(plain) / scale)  # a larger crop shows the face smaller
    # the crop centre moved by `shift` crop sides: the face box centre moves the other way, in crop pixels
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    assert_close(centre(moved) - 64, -shift * 128)


def test_dataset_images_are_face_crops(tmp_path):
    from nphmkit.data.dataset import ImageDataset
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    cfg = SynthConfig(image_size=64, expressions_per_head=1, views_per_expression=3, seed=4, shift=0.0, scale=(1, 1))
    ds = ImageDataset(write_dataset(tmp_path, 3, cfg, progress=False))
    for i in range(3):
        item = ds[i]
        box = torch.tensor(item["record"]["face_box"])[None]
        assert_close(square_box(box)[0], torch.tensor([0.0, 0.0, 64.0, 64.0]), atol=1e-3, rtol=0)
        assert cfg.focal[0] * 0.997 < item["record"]["focal"] < cfg.focal[1] * 1.003
        assert_close(item["K"][0, 0] / 64, torch.tensor(item["record"]["focal"]))
        # the face fills the middle; the head is cut by the crop's top (crown) but not at the centre
        mask = item["mask"]
        assert bool(mask[32, 32]) and 0.35 < float(mask.float().mean()) < 0.9
