"""Regularizers of latent codes and poses: norms, mirrored-pair symmetry, temporal smoothness."""

from __future__ import annotations

import torch

from nphmkit._checks import check_tensor
from nphmkit.losses.layout import CodeLayout


def code_norms(z_id: torch.Tensor, layout: CodeLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared norms of the global and of the local parts of ``z_id (B, id_dim)``."""
    check_tensor("z_id", z_id, ("B", layout.id_dim))
    glob = z_id[:, : layout.glob]
    local = z_id[:, layout.glob :].reshape(z_id.shape[0], layout.n_local, layout.loc)
    return (glob * glob).sum(-1).mean(), (local * local).sum(-1).mean()


def expression_norm(z_ex: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of ``z_ex (B, E)``."""
    check_tensor("z_ex", z_ex, ("B", "E"))
    return (z_ex * z_ex).sum(-1).mean()


def symmetry_loss(z_id: torch.Tensor, layout: CodeLayout) -> torch.Tensor:
    """Mean distance between the local codes of each mirrored pair of ``z_id (B, id_dim)`` (0 for a symmetric head)."""
    check_tensor("z_id", z_id, ("B", layout.id_dim))
    if layout.n_pairs == 0:
        return z_id.new_zeros(())
    local = z_id[:, layout.glob :].reshape(z_id.shape[0], layout.n_local, layout.loc)
    pairs = local[:, : 2 * layout.n_pairs].reshape(z_id.shape[0], layout.n_pairs, 2, layout.loc)
    return (pairs[:, :, 0] - pairs[:, :, 1]).norm(dim=-1).mean()


def temporal_smoothness(sequence: torch.Tensor, order: int = 1) -> torch.Tensor:
    """Mean squared ``order``-th difference along time of ``sequence (T, ...)`` (codes, translations, rotations)."""
    if order not in (1, 2):
        raise ValueError(f"order: expected 1 or 2, got {order}")
    check_tensor("sequence", sequence, ("T", ...))
    if sequence.shape[0] <= order:
        return sequence.new_zeros(())
    d = sequence[1:] - sequence[:-1]
    if order == 2:
        d = d[1:] - d[:-1]
    return (d * d).reshape(d.shape[0], -1).sum(-1).mean()
