"""The field view of an NPHM with fixed codes (:class:`nphmkit.protocols.Field` with both capabilities)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM


class NPHMField:
    """``points (B, N, 3) -> (B, N)`` signed distances of an :class:`NPHM` with codes ``z_id``, ``z_ex``
    (None: neutral). Built by :meth:`NPHM.field`.

    Calls without an autograd graph on the torch path (sphere tracing: dozens per render, most of
    them on few points) reuse the per-code constants of the first call (anchors, the code parts of
    the first layers); new storage or an in-place change of the codes or of any weight (their
    version counters) recomputes them.
    """

    def __init__(self, model: "NPHM", z_id: torch.Tensor, z_ex: torch.Tensor | None, backend: str) -> None:
        self.model, self.z_id, self.z_ex, self.backend = model, z_id, z_ex, backend
        self._prep_key: tuple | None = None
        self._prep = None

    def _versions(self) -> tuple:
        """What the cached constants depend on: storage and in-place version of the codes and weights."""
        tensors = (self.z_id, self.z_ex, *self.model.parameters())
        return tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, N, 3) -> (B, N)`` signed distances (NPHM units)."""
        model = self.model
        if self.z_ex is None or model._needs_graph(points, self.z_id, self.z_ex):
            return model.sdf(points, self.z_id, self.z_ex, backend=self.backend)[..., 0]
        model._check_points("points", points, 3)
        model._check_codes(self.z_id, self.z_ex, points.shape[0])
        if model._backend(self.backend, points) != "torch":
            return model.sdf(points, self.z_id, self.z_ex, backend=self.backend)[..., 0]
        key = self._versions()
        with torch.no_grad():
            if key != self._prep_key:
                self._prep, self._prep_key = model._prepare(self.z_id, self.z_ex), key
            return model._sdf_prepared(points, *self._prep, graph=False)[..., 0]

    def sdf_and_gradient(self, points: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N)`` distances and ``(B, N, 3)`` gradients (:meth:`NPHM.sdf_and_gradient`; no graph unless
        ``create_graph``)."""
        sdf, grad = self.model.sdf_and_gradient(points, self.z_id, self.z_ex, backend=self.backend,
                                                create_graph=create_graph)
        return sdf[..., 0], grad

    def canonical(self, points: torch.Tensor) -> torch.Tensor:
        """Canonical xyz ``(B, N, 3)`` of posed points (hyper coordinates dropped)."""
        if self.z_ex is None:
            return points
        return self.model.canonical(points, self.z_id, self.z_ex, backend=self.backend)[..., :3]
