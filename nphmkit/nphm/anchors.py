"""A default mean-anchor layout for models built without the official ``anchors_65.npy``.

The layout follows the MonoNPHM order (mirrored pairs first, even index at x < 0, then the
middle anchors on x = 0) and spreads the anchors over the front and sides of a head-sized
ellipsoid, so that nearest-anchor queries have no ties. It is a placeholder for randomly
initialized models; trained models carry their own mean anchors.
"""

from __future__ import annotations

import math

import torch

from nphmkit.nphm.config import NPHMConfig

# semi-axes of the ellipsoid in NPHM units (x: half width, y: half height, z: half depth)
_AXES = (0.33, 0.42, 0.36)


def default_mean_anchors(config: NPHMConfig) -> torch.Tensor:
    """Deterministic, mirror-symmetric mean anchors ``(n_anchors, 3)`` float32 in NPHM units."""
    pairs = config.n_symmetric_pairs
    middle = config.n_anchors - 2 * pairs
    golden = math.pi * (3.0 - math.sqrt(5.0))
    left = []
    for i in range(pairs):
        # spiral over the x < 0 half of the ellipsoid, avoiding the mid-plane
        y = 1.0 - 2.0 * (i + 0.5) / max(pairs, 1)
        r = math.sqrt(max(1.0 - y * y, 0.0))
        phi = golden * i
        x = -abs(r * math.cos(phi)) - 0.05
        z = r * math.sin(phi)
        left.append((x * _AXES[0], y * _AXES[1], z * _AXES[2]))
    rows = []
    for x, y, z in left:
        rows.append((x, y, z))
        rows.append((-x, y, z))
    for j in range(middle):
        angle = -0.5 * math.pi + math.pi * (j + 0.5) / max(middle, 1)  # from chin to top of the face
        rows.append((0.0, _AXES[1] * math.sin(angle), _AXES[2] * math.cos(angle)))
    return torch.tensor(rows, dtype=torch.float32)
