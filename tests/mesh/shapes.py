"""Analytic signed distance fields for mesh and renderer tests (exact distances, Lipschitz 1)."""

from __future__ import annotations

import torch


def sphere(center=(0.0, 0.0, 0.0), radius: float = 0.3):
    c = torch.tensor(center)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        return (p - c.to(p)).norm(dim=-1) - radius

    return sdf


def torus(major: float = 0.3, minor: float = 0.1):
    """A torus around the y axis."""

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = torch.stack([torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2) - major, p[..., 1]], dim=-1)
        return q.norm(dim=-1) - minor

    return sdf


def box(half=(0.2, 0.15, 0.25)):
    h = torch.tensor(half)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = p.abs() - h.to(p)
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    return sdf


def smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Polynomial smooth minimum (Lipschitz 1 when a and b are)."""
    h = (k - (a - b).abs()).clamp_min(0) / k
    return torch.minimum(a, b) - h * h * k / 4


def capsule(a, b, radius: float):
    pa, pb = torch.tensor(a), torch.tensor(b)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        ab = (pb - pa).to(p)
        ap = p - pa.to(p)
        t = ((ap * ab).sum(-1) / (ab * ab).sum()).clamp(0, 1)
        return (ap - t[..., None] * ab).norm(dim=-1) - radius

    return sdf


def head_like():
    """A crude head in NPHM units (cranium, face, nose, ears, neck), an exact-distance-bounded field."""
    parts = [
        sphere((0.0, 0.12, -0.08), 0.3),
        sphere((0.0, -0.05, 0.05), 0.24),
        capsule((0.0, 0.02, 0.28), (0.0, -0.08, 0.36), 0.04),
        capsule((-0.28, 0.02, -0.08), (-0.3, -0.1, -0.1), 0.05),
        capsule((0.28, 0.02, -0.08), (0.3, -0.1, -0.1), 0.05),
        capsule((0.0, -0.2, -0.1), (0.0, -0.5, -0.12), 0.13),
    ]

    def sdf(p: torch.Tensor) -> torch.Tensor:
        d = parts[0](p)
        for part in parts[1:]:
            d = smooth_union(d, part(p), 0.05)
        return d

    return sdf
