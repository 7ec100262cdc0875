"""The field view of an NPHM with fixed codes (:class:`nphmkit.protocols.Field` with both capabilities)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM


class NPHMField:
    """``points (B, N, 3) -> (B, N)`` signed distances of an :class:`NPHM` with codes ``z_id``, ``z_ex``
    (None: neutral). Built by :meth:`NPHM.field`."""

    def __init__(self, model: "NPHM", z_id: torch.Tensor, z_ex: torch.Tensor | None, backend: str) -> None:
        self.model, self.z_id, self.z_ex, self.backend = model, z_id, z_ex, backend

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, N, 3) -> (B, N)`` signed distances (NPHM units)."""
        return self.model.sdf(points, self.z_id, self.z_ex, backend=self.backend)[..., 0]

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
