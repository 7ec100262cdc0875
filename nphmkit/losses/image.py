"""Image losses between rendered and target maps (channels-last, masks ``(B, H, W)`` bool).

Robust penalties keep outliers (a wrong predicted pixel, hair, occluders) from dominating:
``"l1"``, ``"huber"`` (quadratic below ``delta``) or ``"cauchy"`` (``log(1 + (r/delta)^2)``).
"""

from __future__ import annotations

import torch


def robust(residual: torch.Tensor, kind: str = "huber", delta: float = 0.1) -> torch.Tensor:
    """Elementwise robust penalty of non-negative residuals."""
    if kind == "l1":
        return residual
    if kind == "l2":
        return residual * residual
    if kind == "huber":
        quad = residual.clamp_max(delta)
        return 0.5 * quad * quad / delta + (residual - quad)
    if kind == "cauchy":
        return delta * torch.log1p((residual / delta) ** 2)
    raise ValueError(f"kind: expected 'l1', 'l2', 'huber' or 'cauchy', got {kind!r}")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def normal_map_loss(
    normals: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "huber", delta: float = 0.1
) -> torch.Tensor:
    """Robust mean of ``|n - n_target|`` over ``mask``; normals ``(B, H, W, 3)`` (or ``(B, N, 3)``), unit."""
    return _masked_mean(robust((normals - target).norm(dim=-1), kind, delta), mask)


def point_map_loss(
    points: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "huber",
    delta: float = 0.02,
) -> torch.Tensor:
    """Robust mean of ``|p - p_target|`` (NPHM units) over ``mask`` (e.g. rendered & target & valid)."""
    return _masked_mean(robust((points - target).norm(dim=-1), kind, delta), mask)


def silhouette_loss(soft_mask: torch.Tensor, target_mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy between a soft silhouette in [0, 1] and the target mask."""
    p = soft_mask.clamp(1e-6, 1 - 1e-6)
    t = target_mask.to(p.dtype)
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    return bce.mean() if weight is None else (bce * weight).sum() / weight.sum().clamp_min(1e-8)
