"""Losses on SDF values and gradients at 3D points (point clouds, eikonal, free space).

Inputs are the SDF ``values (B, N)`` and ``gradients (B, N, 3)`` a field gives at points, so any
head model plugs in. Every loss is a mean; zero at the truth.
"""

from __future__ import annotations

import torch

from nphmkit._checks import check_tensor


def surface_sdf_loss(values: torch.Tensor) -> torch.Tensor:
    """``mean |sdf|`` at points that should lie on the surface, ``values (B, N)``."""
    check_tensor("values", values, ("B", "N"))
    return values.abs().mean()


def normal_loss(gradients: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """``mean |grad / |grad| - n|`` between SDF gradients and unit target normals, both ``(B, N, 3)``."""
    check_tensor("gradients", gradients, ("B", "N", 3))
    check_tensor("normals", normals, tuple(gradients.shape))
    unit = gradients / gradients.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return (unit - normals).norm(dim=-1).mean()


def eikonal_loss(gradients: torch.Tensor) -> torch.Tensor:
    """``mean | |grad| - 1 |`` (gradients ``(B, N, 3)``): a distance field has unit gradients."""
    check_tensor("gradients", gradients, ("B", "N", 3))
    return (gradients.norm(dim=-1) - 1.0).abs().mean()


def free_space_loss(values: torch.Tensor, alpha: float = 10.0) -> torch.Tensor:
    """``mean exp(-alpha |sdf|)`` at points far from the surface, ``values (B, N)``: no spurious surface there."""
    check_tensor("values", values, ("B", "N"))
    return torch.exp(-alpha * values.abs()).mean()
