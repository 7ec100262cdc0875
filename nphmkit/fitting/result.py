"""What a fit returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FitResult:
    """Codes ``z_id (B, id_dim)``, ``z_ex (B, lat_dim_ex)`` and the head pose (docs/contracts.md).

    ``rotation (B, 3, 3)``, ``translation (B, 3)``, ``scale (B,)``: ``x_world = s R x_nphm + t``
    (for single-view fitting world = camera). ``history``: the total loss per step (and, for
    image fits, per-term values under ``terms``).
    """

    z_id: torch.Tensor
    z_ex: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    history: list[float] = field(default_factory=list)
    terms: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
