"""Exact signed-distance primitives and Lipschitz-1 combinations, batched.

Every primitive takes points ``(B, N, 3)`` and per-sample parameters with a leading batch
dimension (``(B, 3)`` centres, ``(B,)`` radii, ...) and returns ``(B, N)`` distances. All are
exact Euclidean distances (Lipschitz 1); the smooth combinations below keep the Lipschitz
constant at most 1 (their gradients are convex combinations of the operands' gradients).
Everything is differentiable w.r.t. points and parameters.

The points may also come as a :class:`Vec3`: three ``(B, N)`` coordinate tensors instead of one
``(B, N, 3)`` tensor. The primitives then run the same formulas on whole coordinate planes, which the
CPU vectorises (a reduction over a trailing dimension of 3 does not): the analytic head's SDF runs 1.5-2.5x
as fast that way. The ``(B, N, 3)`` form is the reference; the two agree to float rounding
(tests/data/test_synthetic.py).
"""

from __future__ import annotations

import torch

from nphmkit.transforms import rigid_inverse as _rigid_inverse_points


class Vec3:
    """Points or vectors as three coordinate tensors ``x, y, z`` that broadcast together: ``(B, N)`` for
    points, ``(B, 1)`` for one vector per batch element (:meth:`of`)."""

    __slots__ = ("x", "y", "z")

    def __init__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> None:
        self.x, self.y, self.z = x, y, z

    @classmethod
    def of(cls, v: torch.Tensor) -> "Vec3":
        """From points ``(B, N, 3)`` (contiguous ``(B, N)`` planes) or per-sample vectors ``(B, 3)`` (``(B, 1)``)."""
        if v.dim() == 2:
            return cls(v[:, 0:1], v[:, 1:2], v[:, 2:3])
        x, y, z = v.permute(2, 0, 1).contiguous().unbind(0)
        return cls(x, y, z)

    def stack(self) -> torch.Tensor:
        """``(B, N, 3)``."""
        return torch.stack(torch.broadcast_tensors(self.x, self.y, self.z), dim=-1)

    def __add__(self, o: "Vec3") -> "Vec3":
        return Vec3(self.x + o.x, self.y + o.y, self.z + o.z)

    def __sub__(self, o: "Vec3") -> "Vec3":
        return Vec3(self.x - o.x, self.y - o.y, self.z - o.z)

    def scale(self, s: torch.Tensor) -> "Vec3":
        """Each coordinate times ``s`` (a tensor that broadcasts with them)."""
        return Vec3(self.x * s, self.y * s, self.z * s)

    def dot(self, o: "Vec3") -> torch.Tensor:
        return self.x * o.x + self.y * o.y + self.z * o.z

    def norm(self) -> torch.Tensor:
        """Length; its gradient at a zero vector is zero (as ``Tensor.norm``'s), not NaN."""
        return _safe_sqrt(self.dot(self))

    def rotate_inverse(self, rot: torch.Tensor) -> "Vec3":
        """``rot^T v`` for ``rot (B, 3, 3)``."""
        r = [[rot[:, i, j : j + 1] for j in range(3)] for i in range(3)]
        return Vec3(*(r[0][k] * self.x + r[1][k] * self.y + r[2][k] * self.z for k in range(3)))

    def rotate(self, rot: torch.Tensor) -> "Vec3":
        """``rot v`` for ``rot (B, 3, 3)``."""
        r = [[rot[:, i, j : j + 1] for j in range(3)] for i in range(3)]
        return Vec3(*(r[k][0] * self.x + r[k][1] * self.y + r[k][2] * self.z for k in range(3)))


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero gradient at 0 (below 1e-30 the value is 1e-15)."""
    return x.clamp_min(1e-30).sqrt()


Points = torch.Tensor | Vec3
"""Points ``(B, N, 3)``, or the same as a :class:`Vec3` of ``(B, N)`` planes."""


def _b(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1)`` for broadcasting over points."""
    return x[:, None]


def offset(p: Points, v: torch.Tensor) -> Points:
    """``p - v`` for points ``p`` and per-sample vectors ``v (B, 3)``."""
    return p - Vec3.of(v) if isinstance(p, Vec3) else p - v[:, None, :]


def _vector(p: Points, v: torch.Tensor) -> Points:
    """Per-sample vectors ``v (B, 3)`` in ``p``'s layout, broadcasting over the points."""
    return Vec3.of(v) if isinstance(p, Vec3) else v[:, None, :]


def _dot(a: Points, b: Points) -> torch.Tensor:
    return a.dot(b) if isinstance(a, Vec3) else (a * b).sum(-1)


def _norm(a: Points) -> torch.Tensor:
    return a.norm() if isinstance(a, Vec3) else a.norm(dim=-1)


def _scale(a: Points, s: torch.Tensor) -> Points:
    """``a`` times the per-point scalars ``s`` (``(B, N)`` or ``(B, 1)``)."""
    return a.scale(s) if isinstance(a, Vec3) else a * s[..., None]


def coordinate(p: Points, axis: int) -> torch.Tensor:
    """Coordinate ``axis`` (0, 1, 2) of points: ``(B, N)``."""
    return (p.x, p.y, p.z)[axis] if isinstance(p, Vec3) else p[..., axis]


def rigid_inverse(p: Points, rot: torch.Tensor, pivot: torch.Tensor) -> Points:
    """Undo ``x -> rot @ (x - pivot) + pivot`` (:func:`nphmkit.transforms.rigid_inverse` for either layout)."""
    if not isinstance(p, Vec3):
        return _rigid_inverse_points(p, rot, pivot)
    return offset(p, pivot).rotate_inverse(rot) + Vec3.of(pivot)


def sphere(p: Points, center: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return _norm(offset(p, center)) - _b(radius)


def capsule(p: Points, a: torch.Tensor, b: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Segment ``a``-``b`` swept by a sphere of ``radius``."""
    ab = _vector(p, b - a)
    ap = offset(p, a)
    t = (_dot(ap, ab) / _dot(ab, ab).clamp_min(1e-12)).clamp(0.0, 1.0)
    return _norm(ap - _scale(ab, t)) - _b(radius)


def round_cone(p: Points, a: torch.Tensor, b: torch.Tensor, ra: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """Convex hull of a sphere of radius ``ra`` at ``a`` and one of radius ``rb`` at ``b`` (exact)."""
    ba = _vector(p, b - a)
    pa = offset(p, a)
    l2 = _dot(ba, ba)
    rr = _b(ra - rb)
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    y = _dot(pa, ba)
    z = y - l2
    xv = _scale(pa, l2) - _scale(ba, y)
    x2 = _dot(xv, xv)
    y2 = y * y * l2
    z2 = z * z * l2
    k = torch.sign(rr) * rr * rr * x2
    cap_b = (x2 + z2).clamp_min(1e-30).sqrt() * il2 - _b(rb)
    cap_a = (x2 + y2).clamp_min(1e-30).sqrt() * il2 - _b(ra)
    side = ((x2 * a2 * il2).clamp_min(1e-30).sqrt() + y * rr) * il2 - _b(ra)
    use_b = torch.sign(z) * a2 * z2 > k
    use_a = torch.sign(y) * a2 * y2 < k
    return torch.where(use_b, cap_b, torch.where(use_a, cap_a, side))


def disc(p: Points, center: torch.Tensor, axis_frame: torch.Tensor, radius: torch.Tensor,
         half_thickness: torch.Tensor, rounding: torch.Tensor) -> torch.Tensor:
    """A rounded cylinder (a thick disc): ``axis_frame (B, 3, 3)`` rows = local (u, v, axis)."""
    if isinstance(p, Vec3):
        local = offset(p, center).rotate(axis_frame)
        radial = _safe_sqrt(local.x * local.x + local.y * local.y) - _b(radius) + _b(rounding)
        axial = local.z.abs() - _b(half_thickness) + _b(rounding)
        outside = _safe_sqrt(radial.clamp_min(0.0).square() + axial.clamp_min(0.0).square())
        return torch.maximum(radial, axial).clamp_max(0.0) + outside - _b(rounding)
    local = torch.einsum("bij,bnj->bni", axis_frame, p - center[:, None, :])
    radial = local[..., :2].norm(dim=-1) - _b(radius) + _b(rounding)
    axial = local[..., 2].abs() - _b(half_thickness) + _b(rounding)
    d = torch.stack([radial, axial], dim=-1)
    return d.max(dim=-1).values.clamp_max(0.0) + d.clamp_min(0.0).norm(dim=-1) - _b(rounding)


def half_space(p: Points, point: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Signed distance to the plane through ``point`` with unit ``normal`` (negative behind it)."""
    return _dot(offset(p, point), _vector(p, normal))


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
