"""Working with fields (:mod:`nphmkit.protocols`): gradients, posed fields, unbatched adapters.

Every wrapper here keeps the capabilities of the field it wraps: a posed view of a
:class:`~nphmkit.protocols.GradientField` is a ``GradientField`` (its gradient rotated into the
world), of a :class:`~nphmkit.protocols.CanonicalField` a ``CanonicalField``; of a plain field, a
plain field.
"""

from __future__ import annotations

import torch

from nphmkit.protocols import CanonicalField, Field, GradientField
from nphmkit.transforms import rotate_vectors, world_to_nphm


def sdf_and_gradient(field: Field, points: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``(B, N)`` and gradients ``(B, N, 3)`` of ``field`` at ``points (B, N, 3)``.

    Uses the field's own ``sdf_and_gradient`` when it has one (:class:`GradientField`), autograd
    otherwise. ``create_graph=False``: neither output carries a graph; ``True``: both do (and the
    graph reaches ``points`` when they require grad), for losses on the gradient.
    """
    if isinstance(field, GradientField):
        return field.sdf_and_gradient(points, create_graph=create_graph)
    with torch.enable_grad():
        x = points if (points.requires_grad and create_graph) else points.detach().requires_grad_(True)
        values = field(x)
        (grad,) = torch.autograd.grad(values.sum(), x, create_graph=create_graph)
    if not create_graph:
        values, grad = values.detach(), grad.detach()
    return values, grad


def canonical_of(field: Field, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(canonical (B, N, 3), valid (B, N) bool or None)`` of a :class:`CanonicalField` (TypeError otherwise)."""
    if not isinstance(field, CanonicalField):
        raise TypeError(f"field: expected a canonical field (with a canonical(points) method), got {type(field).__name__}")
    out = field.canonical(points)
    return out if isinstance(out, tuple) else (out, None)


class PosedField:
    """A field of head space seen in the world through the pose ``x_world = s R x_head + t``.

    ``f_world(x) = s * f(R^T (x - t) / s)`` is still a distance (in world units). Built by
    :func:`posed_field`; has ``sdf_and_gradient`` and ``canonical`` exactly when the wrapped field does.
    """

    def __init__(self, field: Field, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> None:
        self.field, self.R, self.t, self.s = field, R, t, s
        if isinstance(field, GradientField):
            self.sdf_and_gradient = self._sdf_and_gradient
        if isinstance(field, CanonicalField):
            self.canonical = self._canonical

    def _to_head(self, points: torch.Tensor) -> torch.Tensor:
        return world_to_nphm(points, self.R, self.t, self.s)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """World points ``(B, N, 3)`` -> distances ``(B, N)`` in world units."""
        value = self.field(self._to_head(points))
        return value if self.s is None else value * self.s[:, None]

    def _sdf_and_gradient(self, points: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = self.field.sdf_and_gradient(self._to_head(points), create_graph=create_graph)
        if self.s is not None:
            value = value * self.s[:, None]  # d(s f(q))/dx = s R grad_q / s = R grad_q
        return value, rotate_vectors(self.R, grad)

    def _canonical(self, points: torch.Tensor):
        return self.field.canonical(self._to_head(points))


def posed_field(field: Field, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> PosedField:
    """``field`` (head space) seen in the world: pose ``R (B, 3, 3)``, ``t (B, 3)``, ``s (B,)`` or None (1)."""
    return PosedField(field, R, t, s)


class UnbatchedField:
    """A batched field with ``B = 1`` as an unbatched function ``points (N, 3) -> (N,)`` (mesh extraction).

    Keeps the capabilities: ``sdf_and_gradient`` gives ``((N,), (N, 3))``, ``canonical`` ``(N, 3)``
    (or with ``valid (N,)``).
    """

    def __init__(self, field: Field) -> None:
        self.field = field
        if isinstance(field, GradientField):
            self.sdf_and_gradient = self._sdf_and_gradient
        if isinstance(field, CanonicalField):
            self.canonical = self._canonical

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        return self.field(points[None])[0]

    def _sdf_and_gradient(self, points: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = self.field.sdf_and_gradient(points[None], create_graph=create_graph)
        return value[0], grad[0]

    def _canonical(self, points: torch.Tensor):
        out = self.field.canonical(points[None])
        return (out[0][0], out[1][0]) if isinstance(out, tuple) else out[0]


def unbatched(field: Field) -> UnbatchedField:
    """Adapt a batched field with ``B = 1`` to ``(N, 3) -> (N,)``."""
    return UnbatchedField(field)
