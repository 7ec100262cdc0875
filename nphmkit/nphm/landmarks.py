"""Landmarks of an NPHM: the surface points whose canonical positions are given anchors.

MonoNPHM's anchors live in canonical (neutral) space, on or near the neutral surface. A landmark
marked by anchor ``a`` is found on the posed head by inverting the backward deformation
(``canonical(x) = a``, fixed-point iterations ``x <- x - (canonical(x) - a)``, which converge for
the near-identity deformations of a face), then moved onto the zero level set by Newton steps
along the SDF gradient. Neutral heads skip the inversion.

Gradients w.r.t. the codes are first order: one last inversion and one last Newton step are
taken with a graph (the implicit-function derivative for a deformation Jacobian near the identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM


def _canonical(model: "NPHM", x, z_id, z_ex, backend):
    return model.canonical(x, z_id, z_ex, backend=backend)[..., :3]


def _newton(model: "NPHM", x, z_id, z_ex, backend, grad=None):
    """One step ``x - f(x) g / |g|^2`` onto the zero level set (``g``: the gradient at ``x`` unless given)."""
    if grad is None:
        _, grad = model.sdf_and_gradient(x, z_id, z_ex, backend=backend)
    f = model.sdf(x, z_id, z_ex, backend=backend)
    return x - f * grad / (grad * grad).sum(-1, keepdim=True).clamp_min(1e-12)


def landmarks_from_anchors(
    model: "NPHM",
    z_id: torch.Tensor,
    z_ex: torch.Tensor | None,
    anchor_ids: Sequence[int],
    backend: str = "auto",
    inversion_steps: int = 10,
    surface_steps: int = 3,
) -> torch.Tensor:
    """Points ``(B, K, 3)`` (NPHM units) on the posed surface (``z_ex``; None: neutral) of anchors ``anchor_ids`` (K)."""
    target = model.anchors(z_id)[:, list(anchor_ids)]  # canonical positions (B, K, 3)
    with torch.no_grad():
        x, a = target.detach(), target.detach()
        if z_ex is not None:
            for _ in range(inversion_steps):
                x = x - (_canonical(model, x, z_id, z_ex, backend) - a)
        for _ in range(surface_steps):
            x = _newton(model, x, z_id, z_ex, backend)
        _, grad = model.sdf_and_gradient(x, z_id, z_ex, backend=backend)
    # differentiable last steps (first-order gradients): follow the anchors, then the surface
    if z_ex is not None:
        x = x - (_canonical(model, x, z_id, z_ex, backend) - target)
    else:
        x = x + (target - target.detach())
    return _newton(model, x, z_id, z_ex, backend, grad)
