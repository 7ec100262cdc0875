"""Rotation parameterizations used inside optimizers (the public value is always the matrix)."""

from __future__ import annotations

import torch


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle ``(B, 3)`` -> rotation ``(B, 3, 3)``; smooth at 0."""
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
    """Rotation ``(B, 3, 3)`` -> axis-angle ``(B, 3)`` (angles below pi)."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    w = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], dim=-1)
    scale = torch.where(theta < 1e-4, 0.5 + theta**2 / 12, theta / (2 * torch.sin(theta)))
    return w * scale[:, None]
