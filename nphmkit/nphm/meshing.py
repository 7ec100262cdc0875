"""Posed and neutral meshes of one code set (neutral = identity SDF at hyper coordinates 0, docs/contracts.md)."""

from __future__ import annotations

import torch

from nphmkit.mesh import NPHM_BOUNDS, Mesh, extract_mesh
from nphmkit.nphm.model import NPHM


def head_mesh(
    model: NPHM,
    z_id: torch.Tensor,
    z_ex: torch.Tensor | None = None,
    resolution: int = 256,
    bounds=NPHM_BOUNDS,
    method: str = "coarse_to_fine",
    backend: str = "auto",
    **kwargs,
) -> Mesh:
    """Mesh of the head with codes ``z_id (1, id_dim)`` and ``z_ex (1, lat_dim_ex)`` in NPHM units.

    ``z_ex=None`` gives the neutral mesh. Extra keyword arguments go to :func:`extract_mesh`.
    """
    if z_id.dim() != 2 or z_id.shape[0] != 1:
        raise ValueError(f"z_id: expected one code of shape (1, {model.config.id_dim}), got {tuple(z_id.shape)}")
    device = model.mean_anchors.device
    z_id = z_id.to(device)
    z_ex = None if z_ex is None else z_ex.to(device)
    field = model.field(z_id, z_ex, backend=backend)
    with torch.no_grad():
        return extract_mesh(field, bounds, resolution, method, device=device, **kwargs)
