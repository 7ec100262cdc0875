"""Square x1.42 face crops: the pixels land where the crop's camera says, in and out of the image."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.preprocess import ENLARGE, crop, square_box
from nphmkit.render import default_intrinsics
from tests.helpers import assert_close


def _ramp(h, w):
    """Image whose channels are the continuous x and y of each pixel centre, and a constant 1."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([xs, ys, torch.ones(h, w)], -1)[None].double()


@settings(max_examples=25, deadline=None)
@given(h=st.integers(20, 90), w=st.integers(20, 90), size=st.integers(5, 40),
       x0=st.floats(0.2, 0.5), y0=st.floats(0.2, 0.5), bw=st.floats(0.1, 0.3), bh=st.floats(0.1, 0.3))
def test_crop_samples_the_box_and_maps_pixels_by_its_transform(h, w, size, x0, y0, bw, bh):
    box = torch.tensor([[x0 * w, y0 * h, (x0 + bw) * w, (y0 + bh) * h]], dtype=torch.float64)
    out = crop(_ramp(h, w), box, size)
    sq = out.box[0]
    side = float(sq[2] - sq[0])
    assert out.images.shape == (1, size, size, 3) and out.image_size == (h, w)
    assert abs(side - ENLARGE * max(bw * w, bh * h)) < 1e-9 and abs(float(sq[3] - sq[1]) - side) < 1e-9
    # centres unchanged
    assert abs(float(sq[0] + sq[2]) - float(box[0, 0] + box[0, 2])) < 1e-9
    # inside the image, each crop pixel holds the original coordinate its centre maps back to
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * side / size
    want_x, want_y = sq[0] + centres, sq[1] + centres
    half = side / size / 2  # half the footprint of a crop pixel (all of it averaged when downscaling)
    inside_x = (want_x - half > 0.5) & (want_x + half < w - 0.5)
    inside_y = (want_y - half > 0.5) & (want_y + half < h - 0.5)
    got = out.images[0]
    if bool(inside_x.any() and inside_y.any()):
        sub = got[inside_y][:, inside_x]
        tol = 1e-9  # bilinear samples of a linear ramp, and their averages, are exact
        assert_close(sub[..., 0], want_x[inside_x][None].expand_as(sub[..., 0]), atol=tol)
        assert_close(sub[..., 1], want_y[inside_y][:, None].expand_as(sub[..., 1]), atol=tol)
    # the transform maps an original pixel position to its crop position
    p = torch.tensor([float(sq[0]) + 0.3 * side, float(sq[1]) + 0.7 * side, 1.0], dtype=torch.float64)
    q = out.transform[0] @ p
    assert_close(q[:2], torch.tensor([0.3 * size, 0.7 * size], dtype=torch.float64), atol=1e-9)


def test_outside_the_image_is_zero_and_the_crop_camera_projects_consistently():
    img = torch.ones(1, 50, 50, 3)
    out = crop(img, torch.tensor([[-20.0, -20.0, 10.0, 10.0]]), 32, K=default_intrinsics((50, 50))[0])
    assert out.images[0, 0, 0].abs().max() == 0 and out.images[0, -1, -1].min() > 0.99
    X = torch.tensor([[0.1, -0.2, 2.5], [0.0, 0.05, 3.0]])
    K = default_intrinsics((50, 50))[0]
    uv = X @ K.T
    uv = torch.cat([uv[:, :2] / uv[:, 2:], torch.ones(2, 1)], -1)
    uv_crop = X @ out.K[0].T
    uv_crop = uv_crop[:, :2] / uv_crop[:, 2:]
    assert_close(uv_crop, (uv @ out.transform[0].T)[:, :2], atol=1e-4)


def test_bad_boxes_are_named():
    img = torch.zeros(2, 10, 10, 3)
    with pytest.raises(ValueError, match="box: expected x1 > x0"):
        crop(img, torch.tensor([[5.0, 5.0, 4.0, 8.0], [0.0, 0.0, 2.0, 2.0]]), 8)
    with pytest.raises(ValueError, match="box: expected shape"):
        crop(img, torch.zeros(1, 4), 8)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        crop(img, torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 2), 0)
    with pytest.raises(ValueError, match="must be square"):
        crop(img, torch.tensor([[0.0, 0.0, 2.0, 3.0]] * 2), 8, square=False)
    assert_close(square_box(torch.tensor([[0.0, 0.0, 4.0, 2.0]]), 1.0), torch.tensor([[0.0, -1.0, 4.0, 3.0]]))
