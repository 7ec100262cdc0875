"""Rotations and similarity transforms, in one place for every part of nphmkit.

Rotations are ``(B, 3, 3)`` matrices acting on column vectors (``x' = R @ x``). Optimizers and
networks use other parameterizations internally (axis-angle, 6D) and convert here; the public
value is always the matrix.

Head pose (a similarity from NPHM space to the world, docs/contracts.md): ``x_world = s * R @ x_nphm + t``
with ``R (B, 3, 3)``, ``t (B, 3)``, ``s (B,)``; for single-view fitting world = camera frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle ``v (B, 3)`` (axis times angle, radians) -> rotation ``(B, 3, 3)``; smooth at 0."""
    theta2 = (v * v).sum(-1, keepdim=True)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation ``R (B, 3, 3)`` -> axis-angle ``(B, 3)`` (angles below pi)."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    w = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], dim=-1)
    scale = torch.where(theta < 1e-4, 0.5 + theta**2 / 12, theta / (2 * torch.sin(theta)))
    return w * scale[:, None]


def rotation_about(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotations ``(B, 3, 3)`` about unit ``axis (3,)`` or ``(B, 3)`` by ``angle (B,)`` radians."""
    axis = axis.expand(angle.shape[0], 3) if axis.dim() == 1 else axis
    return axis_angle_to_matrix(axis * angle[:, None])


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """6D rotation ``x (B, 6)`` -> ``(B, 3, 3)``.

    Rows 1 and 2 are the Gram-Schmidt orthonormalisation of the two 3-vectors, row 3 their cross product.
    """
    a = F.normalize(x[:, :3], dim=-1)
    b = F.normalize(x[:, 3:] - (a * x[:, 3:]).sum(-1, keepdim=True) * a, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=1)


def angle_between(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """Angle ``(B,)`` in radians of the rotation taking ``Rb (B, 3, 3)`` to ``Ra (B, 3, 3)``."""
    return matrix_to_axis_angle(Ra @ Rb.transpose(-1, -2)).norm(dim=-1)


# ---------------------------------------------------------------------- similarity (head pose)
def nphm_to_world(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the head pose: ``x_world = s * R @ x_nphm + t`` for points ``(B, N, 3)`` (``s=None``: 1)."""
    out = torch.einsum("bij,bnj->bni", R, points)
    if s is not None:
        out = out * s[:, None, None]
    return out + t[:, None, :]


def world_to_nphm(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`nphm_to_world`: ``x_nphm = R^T (x_world - t) / s`` for points ``(B, N, 3)``."""
    out = torch.einsum("bji,bnj->bni", R, points - t[:, None, :])
    return out if s is None else out / s[:, None, None]


def rotate_vectors(R: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``R (B, 3, 3) @ v`` for vectors ``(B, N, 3)`` (directions, normals: no translation)."""
    return torch.einsum("bij,bnj->bni", R, vectors)


def rigid_inverse(p: torch.Tensor, rot: torch.Tensor, pivot: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Undo ``x -> rot @ (x - pivot) + pivot + shift`` on points ``p (B, N, 3)`` (``rot (B, 3, 3)``, ``pivot (B, 3)``)."""
    q = p - pivot[:, None, :]
    if shift is not None:
        q = q - shift[:, None, :]
    return torch.einsum("bji,bnj->bni", rot, q) + pivot[:, None, :]


FRONTAL_ROTATION = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))
"""Head-to-camera rotation of a frontal view (OpenCV camera axes; ``nphmkit.render.FRONTAL``)."""


def encode_crop_pose(R: torch.Tensor, t: torch.Tensor, K: torch.Tensor,
                     image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A head pose as a network regresses it from a crop: ``(rotation (B, 3, 3), position (B, 3))``.

    ``R (B, 3, 3)``, ``t (B, 3)``: head -> camera (``x_cam = R x_head + t``); ``K (B, 3, 3)`` pixels of
    an image of ``image_size (H, W)``. ``rotation`` is ``R`` relative to the frontal view
    (``R = rotation @ FRONTAL``: the identity is frontal); ``position`` is the head origin's image
    position in ``[-1, 1]`` crop coordinates (x, y) and its depth divided by the focal length in
    image widths (what a crop's framing fixes, whatever the focal length). :func:`decode_crop_pose`
    inverts it.
    """
    h, w = image_size
    frontal = torch.tensor(FRONTAL_ROTATION, dtype=R.dtype, device=R.device)
    uvw = torch.einsum("bij,bj->bi", K, t)
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    depth = t[:, 2] / (K[:, 0, 0] / w)
    return R @ frontal, torch.stack([2 * u / w - 1, 2 * v / h - 1, depth], dim=-1)  # FRONTAL is its own inverse


def decode_crop_pose(rotation: torch.Tensor, position: torch.Tensor, K: torch.Tensor,
                     image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``rotation (B, 3, 3)``, ``position (B, 3)`` (:func:`encode_crop_pose`) -> ``R (B, 3, 3)``, ``t (B, 3)``
    for intrinsics ``K (B, 3, 3)`` (zero skew)."""
    h, w = image_size
    frontal = torch.tensor(FRONTAL_ROTATION, dtype=rotation.dtype, device=rotation.device)
    z = position[:, 2] * K[:, 0, 0] / w
    u, v = (position[:, 0] + 1) * w / 2, (position[:, 1] + 1) * h / 2
    x = (u - K[:, 0, 2]) * z / K[:, 0, 0]
    y = (v - K[:, 1, 2]) * z / K[:, 1, 1]
    return rotation @ frontal, torch.stack([x, y, z], dim=-1)
