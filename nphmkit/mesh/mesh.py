"""A triangle mesh: vertices ``(V, 3)`` float32 and faces ``(F, 3)`` int64, with a few measures."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

MM_PER_NPHM_UNIT = 250.0
"""NPHM space is FLAME x 4 (FLAME in metres): 1 NPHM unit = 0.25 m = 250 mm."""


@dataclass(frozen=True)
class Mesh:
    """Triangles with outward-facing, counter-clockwise winding.

    Attributes:
        vertices: ``(V, 3)`` float32 positions (units: ``units``).
        faces: ``(F, 3)`` int64 vertex indices.
        units: ``"nphm"`` (NPHM units, 1 = 25 cm) or ``"mm"``.
        n_queries: SDF evaluations spent extracting it (0 if not extracted).
        seconds: wall time of the extraction.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    units: str = "nphm"
    n_queries: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vertices.dim() != 2 or self.vertices.shape[-1] != 3:
            raise ValueError(f"vertices: expected shape (V, 3), got {tuple(self.vertices.shape)}")
        if self.faces.dim() != 2 or self.faces.shape[-1] != 3:
            raise ValueError(f"faces: expected shape (F, 3), got {tuple(self.faces.shape)}")
        if self.units not in ("nphm", "mm"):
            raise ValueError(f"units: expected 'nphm' or 'mm', got {self.units!r}")

    @property
    def n_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def n_faces(self) -> int:
        return self.faces.shape[0]

    def to_units(self, units: str) -> "Mesh":
        """The same mesh with vertices in ``"nphm"`` units or ``"mm"``."""
        if units == self.units:
            return self
        if units not in ("nphm", "mm"):
            raise ValueError(f"units: expected 'nphm' or 'mm', got {units!r}")
        factor = MM_PER_NPHM_UNIT if units == "mm" else 1.0 / MM_PER_NPHM_UNIT
        return replace(self, vertices=self.vertices * factor, units=units)

    def face_normals(self) -> torch.Tensor:
        """Unit face normals ``(F, 3)`` (outward for an outward-wound mesh)."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        n = torch.cross(b - a, c - a, dim=-1)
        return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-20)

    def vertex_normals(self) -> torch.Tensor:
        """Area-weighted unit vertex normals ``(V, 3)``."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        n = torch.cross(b - a, c - a, dim=-1)
        acc = torch.zeros_like(self.vertices)
        for i in range(3):
            acc.index_add_(0, self.faces[:, i], n)
        return acc / acc.norm(dim=-1, keepdim=True).clamp_min(1e-20)

    def area(self) -> float:
        a, b, c = (self.vertices[self.faces[:, i]].double() for i in range(3))
        return float(torch.cross(b - a, c - a, dim=-1).norm(dim=-1).sum() / 2)

    def signed_volume(self) -> float:
        """Enclosed volume; positive when the faces point outwards."""
        a, b, c = (self.vertices[self.faces[:, i]].double() for i in range(3))
        return float((a * torch.cross(b, c, dim=-1)).sum() / 6)
