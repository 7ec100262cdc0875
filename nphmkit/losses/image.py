"""Image losses between rendered and target maps (channels-last; masks ``(B, H, W)``).

Robust penalties keep outliers (a wrong predicted pixel, hair, occluders) from dominating:
``"l1"``, ``"l2"``, ``"huber"`` (quadratic below ``delta``) or ``"cauchy"`` (``log(1 + (r/delta)^2)``).
Wherever a loss takes a mask it takes either a bool validity mask or float per-pixel weights
(e.g. a predictor's confidence): the loss is then the weighted mean. Maps may also be flat
samples of pixels, ``(B, M, 3)`` with masks ``(B, M)``.
"""

from __future__ import annotations

import torch

from nphmkit._checks import check_tensor

ROBUST = ("l1", "l2", "huber", "cauchy")


def _check_pair(name: str, values: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, mask_name: str = "mask") -> None:
    check_tensor(name, values, ("B", ..., 3))
    check_tensor("target", target, tuple(values.shape))
    check_mask(mask_name, mask, tuple(values.shape[:-1]))


def check_mask(name: str, mask: torch.Tensor, shape: tuple) -> None:
    """A bool mask or float weights of ``shape``."""
    check_tensor(name, mask, shape, floating=False)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name}: expected a bool mask or float weights, got dtype {mask.dtype}")


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
    raise ValueError(f"kind: expected one of {ROBUST}, got {kind!r}")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def normal_map_loss(
    normals: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "huber", delta: float = 0.1
) -> torch.Tensor:
    """Robust mean of ``|n - n_target|`` over ``mask`` (bool, or float weights); normals ``(B, H, W, 3)``
    (or ``(B, M, 3)``), unit."""
    _check_pair("normals", normals, target, mask)
    return _masked_mean(robust((normals - target).norm(dim=-1), kind, delta), mask)


def point_map_loss(
    points: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "huber",
    delta: float = 0.02,
) -> torch.Tensor:
    """Robust mean of ``|p - p_target|`` (head units) over ``mask`` (e.g. rendered & target & valid; or float
    weights); points ``(B, H, W, 3)`` or ``(B, M, 3)``."""
    _check_pair("points", points, target, mask)
    return _masked_mean(robust((points - target).norm(dim=-1), kind, delta), mask)


def silhouette_loss(soft_mask: torch.Tensor, target_mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy between a soft silhouette in [0, 1] ``(B, H, W)`` and the target mask (bool
    ``(B, H, W)``); optionally a weighted mean with float ``weight (B, H, W)``."""
    check_tensor("soft_mask", soft_mask, ("B", ...))
    check_mask("target_mask", target_mask, tuple(soft_mask.shape))
    if weight is not None:
        check_tensor("weight", weight, tuple(soft_mask.shape))
    p = soft_mask.clamp(1e-6, 1 - 1e-6)
    t = target_mask.to(p.dtype)
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    return bce.mean() if weight is None else (bce * weight).sum() / weight.sum().clamp_min(1e-8)
