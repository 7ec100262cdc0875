"""Exact signed-distance primitives and Lipschitz-1 combinations, batched.

Every primitive takes points ``(B, N, 3)`` and per-sample parameters with a leading batch
dimension (``(B, 3)`` centres, ``(B,)`` radii, ...) and returns ``(B, N)`` distances. All are
exact Euclidean distances (Lipschitz 1); the smooth combinations below keep the Lipschitz
constant at most 1 (their gradients are convex combinations of the operands' gradients).
Everything is differentiable w.r.t. points and parameters.
"""

from __future__ import annotations

import torch


def _b(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1)`` for broadcasting over points."""
    return x[:, None]


def sphere(p: torch.Tensor, center: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return (p - center[:, None, :]).norm(dim=-1) - _b(radius)


def capsule(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Segment ``a``-``b`` swept by a sphere of ``radius``."""
    ab = (b - a)[:, None, :]
    ap = p - a[:, None, :]
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (ap - t[..., None] * ab).norm(dim=-1) - _b(radius)


def round_cone(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, ra: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """Convex hull of a sphere of radius ``ra`` at ``a`` and one of radius ``rb`` at ``b`` (exact)."""
    ba = (b - a)[:, None, :]
    pa = p - a[:, None, :]
    l2 = (ba * ba).sum(-1)
    rr = _b(ra - rb)
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    y = (pa * ba).sum(-1)
    z = y - l2
    xv = pa * l2[..., None] - y[..., None] * ba
    x2 = (xv * xv).sum(-1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = torch.sign(rr) * rr * rr * x2
    cap_b = (x2 + z2).clamp_min(1e-30).sqrt() * il2 - _b(rb)
    cap_a = (x2 + y2).clamp_min(1e-30).sqrt() * il2 - _b(ra)
    side = ((x2 * a2 * il2).clamp_min(1e-30).sqrt() + y * rr) * il2 - _b(ra)
    use_b = torch.sign(z) * a2 * z2 > k
    use_a = torch.sign(y) * a2 * y2 < k
    return torch.where(use_b, cap_b, torch.where(use_a, cap_a, side))


def disc(p: torch.Tensor, center: torch.Tensor, axis_frame: torch.Tensor, radius: torch.Tensor,
         half_thickness: torch.Tensor, rounding: torch.Tensor) -> torch.Tensor:
    """A rounded cylinder (a thick disc): ``axis_frame (B, 3, 3)`` rows = local (u, v, axis)."""
    local = torch.einsum("bij,bnj->bni", axis_frame, p - center[:, None, :])
    radial = local[..., :2].norm(dim=-1) - _b(radius) + _b(rounding)
    axial = local[..., 2].abs() - _b(half_thickness) + _b(rounding)
    d = torch.stack([radial, axial], dim=-1)
    return d.max(dim=-1).values.clamp_max(0.0) + d.clamp_min(0.0).norm(dim=-1) - _b(rounding)


def half_space(p: torch.Tensor, point: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Signed distance to the plane through ``point`` with unit ``normal`` (negative behind it)."""
    return ((p - point[:, None, :]) * normal[:, None, :]).sum(-1)


def smooth_union_weight(a: torch.Tensor, b: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Polynomial smooth minimum of ``a`` and ``b`` (blend width ``k``) and the weight of ``a`` in [0, 1].

    The gradient of the result is ``w * grad(a) + (1 - w) * grad(b)``, so Lipschitz 1 is kept.
    """
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return torch.lerp(b, a, h) - k * h * (1.0 - h), h


def smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    return smooth_union_weight(a, b, k)[0]


def smooth_subtract(a: torch.Tensor, b: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` minus ``b`` with a smooth edge; returns the value and the weight of ``b``'s carving in [0, 1]."""
    value, h = smooth_union_weight(-a, b, k)  # max(a, -b) = -min(-a, b)
    return -value, 1.0 - h
