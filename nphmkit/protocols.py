"""The contracts every part of nphmkit is written against: fields and head models.

A **field** is a batched signed-distance function of points in its head space::

    field(points (B, N, 3)) -> (B, N)          # negative inside, in the points' units

It may offer two optional capabilities, each a runtime-checkable protocol that callers test with
``isinstance`` (never ``hasattr``):

- :class:`GradientField`: ``sdf_and_gradient(points, create_graph=False) -> ((B, N), (B, N, 3))``,
  the values and their gradient w.r.t. the points. With ``create_graph=False`` neither output
  carries an autograd graph (a fast path may skip autograd entirely); with ``True`` both do, so
  a loss on the gradient (normals, eikonal) can be backpropagated.
- :class:`CanonicalField`: ``canonical(points) -> (B, N, 3)`` or ``((B, N, 3), valid (B, N) bool)``,
  where each posed point sits on the neutral head (``valid`` is False where it has no neutral
  counterpart, e.g. inside an open mouth).

Wrappers (:func:`nphmkit.fields.posed_field`, :func:`nphmkit.fields.unbatched`) keep the
capabilities of what they wrap.

A **head model** (:class:`HeadModel`) maps codes to fields. It has ``id_dim`` and ``ex_dim`` (code
sizes) and:

- ``field(z_id (B, id_dim), z_ex (B, ex_dim) | None) -> Field``; ``None`` is the neutral expression;
- ``initial_codes(batch, device=None, dtype=None) -> (z_id, z_ex)``: where fits start (zeros for an
  NPHM, the family mean for the synthetic family);
- ``code_regularizers(z_id, z_ex | None) -> dict[str, scalar]``: named prior terms; every fitting
  objective weights them by name (``ImageFitConfig.regularizers`` ...), a name it does not weight
  counts 0;
- ``landmarks(z_id, z_ex | None) -> (B, 7, 3)`` in head space, NoW order (right eye outer, right eye
  inner, left eye inner, left eye outer, nose tip, right mouth corner, left mouth corner; right =
  the subject's right, x < 0), or ``NotImplementedError`` with a message saying why.

:func:`check_head_model` is what every function taking a head model calls first: a model that
does not satisfy the protocol gets a ``TypeError`` naming the missing members.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

NOW_LANDMARKS = (
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer", "nose_tip",
    "right_mouth_corner", "left_mouth_corner",
)
"""Names of the 7 NoW landmarks, in order (right = the subject's right, x < 0 in head space)."""


@runtime_checkable
class Field(Protocol):
    """A batched field: ``points (B, N, 3) -> (B, N)`` signed distances."""

    def __call__(self, points: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class GradientField(Field, Protocol):
    """A field that gives its gradient itself (e.g. by an explicit backward pass, without autograd)."""

    def sdf_and_gradient(self, points: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``points (B, N, 3)`` -> values ``(B, N)`` and gradients ``(B, N, 3)``."""
        ...


@runtime_checkable
class CanonicalField(Field, Protocol):
    """A field that knows where each posed point sits on the neutral head."""

    def canonical(self, points: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``points (B, N, 3)`` -> canonical ``(B, N, 3)``, or ``(canonical, valid (B, N) bool)``."""
        ...


@runtime_checkable
class HeadModel(Protocol):
    """A parametric head model: codes -> fields (see the module notes for each member)."""

    id_dim: int
    ex_dim: int

    def field(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None) -> Field: ...

    def initial_codes(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def code_regularizers(self, z_id: torch.Tensor, z_ex: torch.Tensor | None) -> dict[str, torch.Tensor]: ...

    def landmarks(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None) -> torch.Tensor: ...


_HEAD_MODEL_MEMBERS = ("id_dim", "ex_dim", "field", "initial_codes", "code_regularizers", "landmarks")


def check_head_model(model: object, name: str = "model") -> HeadModel:
    """Return ``model`` if it satisfies :class:`HeadModel`, else raise a ``TypeError`` naming what is missing."""
    if isinstance(model, HeadModel):
        for dim in ("id_dim", "ex_dim"):
            value = getattr(model, dim)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TypeError(f"{name}.{dim}: expected a non-negative int (a code size), got {value!r}")
        return model
    missing = [m for m in _HEAD_MODEL_MEMBERS if not hasattr(model, m)]
    raise TypeError(
        f"{name}: expected a head model (nphmkit.protocols.HeadModel), got {type(model).__name__} missing "
        f"{', '.join(missing)}; see docs/head_models.md"
    )


def check_codes(
    model: HeadModel, z_id: torch.Tensor, z_ex: torch.Tensor | None, names: tuple[str, str] = ("z_id", "z_ex")
) -> int:
    """Check ``z_id (B, model.id_dim)`` and ``z_ex (B, model.ex_dim)`` (or None); returns ``B``."""
    from nphmkit._checks import check_tensor

    check_tensor(names[0], z_id, ("B", model.id_dim))
    b = z_id.shape[0]
    if z_ex is not None:
        check_tensor(names[1], z_ex, (b, model.ex_dim))
    return b
