"""Cameras that frame synthetic heads exactly as photos are cropped (docs/contracts.md "Crops").

A photo is cropped to the square box around its detected face, enlarged x1.42
(:func:`nphmkit.preprocess.square_box`). A synthetic head's *face box* is the bounding box of the
projections of :data:`FACE_BOX_ANCHORS` (forehead, brows, cheekbones, jaw and chin: mid-forehead
to chin, cheek to cheek, like a face detector's box; a detector whose boxes differ is calibrated
to it). :func:`crop_camera` places a camera at a view direction, projects the face box, squares
and enlarges it, and returns the camera whose image is exactly that crop at ``size x size``
pixels: the crop is rendered directly, never resampled, so its maps stay exact. The camera's
distance is chosen so that the crop's focal length is ``focal`` image widths (the perspective of
a photo crop: a wide-angle selfie near 2, a portrait lens 4 or more).
"""

from __future__ import annotations

import torch

from nphmkit.data.synthetic.head import SyntheticHead
from nphmkit.data.synthetic.landmarks import ANCHOR_NAMES, anchors
from nphmkit.preprocess.crop import ENLARGE
from nphmkit.render import Camera

FACE_BOX_ANCHORS = tuple(
    f"{side}_{name}" for name in ("forehead_side", "brow_outer", "cheekbone", "jaw_mid", "chin_side")
    for side in ("right", "left")
) + ("forehead", "chin")
"""The anchors whose projections bound a synthetic face box."""
_FACE_INDEX = [ANCHOR_NAMES.index(n) for n in FACE_BOX_ANCHORS]


def face_points(head: SyntheticHead) -> torch.Tensor:
    """The :data:`FACE_BOX_ANCHORS` of each head, ``(B, 12, 3)`` NPHM units (on the neutral surface)."""
    return anchors(head)[:, _FACE_INDEX]


def face_box(camera: Camera, points: torch.Tensor) -> torch.Tensor:
    """Bounding boxes ``(B, 4)`` ``[x0, y0, x1, y1]`` (pixels) of world points ``(B, P, 3)`` seen by ``camera``."""
    uv, _ = camera.project(points)
    return torch.cat([uv.amin(1), uv.amax(1)], dim=-1)


def _look(direction: torch.Tensor, target: torch.Tensor, distance: torch.Tensor, K: torch.Tensor,
          size: int) -> Camera:
    return Camera.look_at(target + distance[:, None] * direction, target, K=K, image_size=(size, size))


def crop_camera(
    points: torch.Tensor,
    direction: torch.Tensor,
    target: torch.Tensor,
    size: int,
    focal: torch.Tensor,
    shift: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    enlarge: float = ENLARGE,
) -> tuple[Camera, torch.Tensor]:
    """The camera of a face crop and the face box in its pixels.

    Args:
        points: ``(B, P, 3)`` face points in world coordinates (:func:`face_points`).
        direction: ``(B, 3)`` unit vectors from ``target`` towards the camera.
        target: ``(B, 3)`` the point the camera looks at (world).
        size: crop width and height in pixels.
        focal: ``(B,)`` wanted focal length of the crop, multiples of ``size`` (met to about 0.1 %
            before the jitter's ``scale``).
        shift: ``(B, 2)`` offset of the crop centre from the box centre, fractions of the crop side
            (crop jitter), or None.
        scale: ``(B,)`` factor on the crop side (scale jitter), or None.

    Returns:
        ``(camera, box)``: the crop's :class:`~nphmkit.render.Camera` (``size x size``, its ``K`` with
        the principal point wherever the crop puts it) and the face box ``(B, 4)`` in crop pixels.
    """
    b = points.shape[0]
    dtype = points.dtype
    unit = torch.eye(3, dtype=dtype).expand(b, 3, 3)  # normalized image coordinates: K = I
    # the face box side is close to A / distance: two probes give the distance at which it is 1 / focal
    distance = torch.full((b,), 2.5, dtype=dtype)
    for _ in range(2):
        probe = face_box(_look(direction, target, distance, unit, size), points)
        side = torch.maximum(probe[:, 2] - probe[:, 0], probe[:, 3] - probe[:, 1]) * enlarge
        distance = focal * side * distance
    cam = _look(direction, target, distance, unit, size)
    box = face_box(cam, points)
    centre = (box[:, :2] + box[:, 2:]) / 2
    half = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) * enlarge / 2
    if scale is not None:
        half = half * scale
    if shift is not None:
        centre = centre + shift * 2 * half[:, None]
    # normalized (x, y) -> crop pixel: (x - (centre - half)) * size / (2 half)
    f = size / (2 * half)
    K = torch.zeros(b, 3, 3, dtype=dtype)
    K[:, 0, 0] = K[:, 1, 1] = f
    K[:, :2, 2] = (half[:, None] - centre) * f[:, None]
    K[:, 2, 2] = 1
    crop_cam = Camera(K, cam.R, cam.t, (size, size))
    return crop_cam, face_box(crop_cam, points)
