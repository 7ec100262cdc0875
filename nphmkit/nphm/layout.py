"""How anchors map to local MLPs, and how an identity code splits into its parts.

Slots ``0 .. n_anchors - 1`` are the predicted anchors, slot ``n_anchors`` is the anchor-free
background MLP (it sits at the origin). Pair ``i`` (anchors ``2i`` at x < 0 and ``2i + 1`` at
x > 0) shares MLP type ``i``; the odd member sees its local x coordinate negated. Middle anchor
``2P + j`` uses type ``P + j``; the background slot uses the last type.
"""

from __future__ import annotations

import torch

from nphmkit.nphm.config import NPHMConfig


def slot_types(config: NPHMConfig) -> torch.Tensor:
    """MLP type of every slot, ``(n_anchors + 1,)`` int64."""
    pairs = config.n_symmetric_pairs
    paired = torch.arange(2 * pairs) // 2
    rest = torch.arange(pairs, config.n_types)
    return torch.cat([paired, rest])


def slot_flips(config: NPHMConfig) -> torch.Tensor:
    """Whether a slot's local x coordinate is negated, ``(n_anchors + 1,)`` bool."""
    flips = torch.zeros(config.n_anchors + 1, dtype=torch.bool)
    flips[1 : 2 * config.n_symmetric_pairs : 2] = True
    return flips


def split_id_code(z_id: torch.Tensor, config: NPHMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``z_id (B, id_dim)`` into the global code ``(B, G)`` and local codes ``(B, n_anchors + 1, L)``."""
    glob = z_id[:, : config.lat_dim_glob]
    local = z_id[:, config.lat_dim_glob :].reshape(z_id.shape[0], config.n_anchors + 1, config.lat_dim_loc)
    return glob, local


def mirror_id_code(z_id: torch.Tensor, config: NPHMConfig) -> torch.Tensor:
    """Swap the local codes of every mirrored anchor pair, ``(B, id_dim) -> (B, id_dim)``.

    With mirror-symmetric middle and background MLPs, the head of the mirrored code is the
    mirror image (x -> -x) of the head of the original code.
    """
    glob, local = split_id_code(z_id, config)
    perm = torch.arange(config.n_anchors + 1, device=z_id.device)
    n = 2 * config.n_symmetric_pairs
    perm[:n] = perm[:n].view(-1, 2).flip(-1).reshape(-1)
    return torch.cat([glob, local[:, perm].reshape(z_id.shape[0], -1)], dim=1)
