"""The plain reference of the NPHM decoder: the test oracle for every fast path.

Written for clarity, step by step per point-anchor pair, in the order MonoNPHM computes it:
every pair builds its full ``[global, local, q - anchor]`` input and runs its type's MLP; the
expression MLP sees the full ``[x, c, z_ex]`` input and the concatenated skip. Runs on any
device and dtype (float64 for gradchecks); keeps autograd graphs, so memory grows with N.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from nphmkit.nphm.layout import split_id_code

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM


def anchors(model: "NPHM", z_id: torch.Tensor) -> torch.Tensor:
    """Predicted anchors ``(B, n_anchors, 3)`` = mean anchors + offsets from the global code."""
    cfg = model.config
    glob = z_id[:, : cfg.lat_dim_glob]
    offsets = model.anchor_mlp(glob).view(-1, cfg.n_anchors, 3)
    return model.mean_anchors.to(offsets.dtype) + offsets


def _local_mlp(model: "NPHM", t: int, x: torch.Tensor) -> torch.Tensor:
    ens = model.ensemble
    n = len(ens.weights)
    for i in range(n):
        x = F.linear(x, ens.weights[i][t], ens.biases[i][t])
        if i < n - 1:
            x = F.softplus(x, beta=model.config.softplus_beta)
    return x


def identity_sdf(model: "NPHM", canonical_points: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
    """Identity SDF of canonical queries ``(B, N, 3 + n_hyper)`` -> ``(B, N, 1)``."""
    cfg = model.config
    b, n, _ = canonical_points.shape
    q = canonical_points
    anc = anchors(model, z_id)  # (B, A, 3)
    glob, local = split_id_code(z_id, cfg)

    # the K nearest anchors (3-d distance, sorted), then the background slot
    d2 = ((q[:, :, None, :3] - anc[:, None, :, :]) ** 2).sum(-1)  # (B, N, A)
    knn = d2.topk(cfg.n_neighbors, dim=-1, largest=False, sorted=True).indices  # (B, N, K)
    background = torch.full_like(knn[..., :1], cfg.n_anchors)
    slots = torch.cat([knn, background], dim=-1)  # (B, N, K + 1)

    # slot positions in query space: anchors get zero hyper coordinates, background = origin
    pos = torch.zeros(b, cfg.n_anchors + 1, cfg.query_dim, dtype=q.dtype, device=q.device)
    pos[:, : cfg.n_anchors, :3] = anc
    batch = torch.arange(b, device=q.device)[:, None, None]
    delta = q[:, :, None, :] - pos[batch, slots]  # (B, N, K + 1, D)
    sign = 1.0 - 2.0 * model.slot_flips[slots].to(q.dtype)  # -1 where the local x is mirrored
    delta = torch.cat([delta[..., :1] * sign[..., None], delta[..., 1:]], dim=-1)

    feats = torch.cat(
        [
            glob[:, None, None, :].expand(b, n, cfg.n_neighbors + 1, cfg.lat_dim_glob),
            local[batch, slots],
            delta,
        ],
        dim=-1,
    )  # (B, N, K + 1, id_in)
    types = model.slot_types[slots]
    out = torch.zeros(b, n, cfg.n_neighbors + 1, dtype=q.dtype, device=q.device)
    for t in range(cfg.n_types):
        mask = types == t
        if mask.any():
            out = out.masked_scatter(mask, _local_mlp(model, t, feats[mask])[:, 0])

    dist = delta[..., :3].norm(dim=-1)
    dist = torch.where(types == cfg.n_types - 1, torch.full_like(dist, cfg.background_distance), dist)
    sigma = dist[..., : cfg.sigma_neighbor].max(dim=-1, keepdim=True).values / cfg.blend_std
    w = torch.exp(-((dist / sigma) ** 2) / 2)
    w = w / (w.sum(-1, keepdim=True) + 1e-8)
    return (w * out).sum(-1, keepdim=True)


def deformation(model: "NPHM", points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    """Raw expression-MLP output ``(B, N, 3 + n_hyper)`` = [offset xyz, hyper coordinates]."""
    cfg = model.config
    b, n, _ = points.shape
    ex = model.expression
    anc = anchors(model, z_id)
    c = ex.compressor(torch.cat([z_id, anc.reshape(b, -1)], dim=-1))  # (B, C)
    inp = torch.cat(
        [points, c[:, None, :].expand(b, n, -1), z_ex[:, None, :].expand(b, n, -1)], dim=-1
    )  # (B, N, ex_in)
    h = inp
    last = len(ex.layers) - 1
    for i, lin in enumerate(ex.layers):
        if i == cfg.ex_skip:
            h = torch.cat([h, inp], dim=-1) / math.sqrt(2.0)
        h = lin(h)
        if i < last:
            h = F.softplus(h, beta=cfg.softplus_beta)
    return h


def canonical(model: "NPHM", points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    """Canonical queries ``(B, N, 3 + n_hyper)`` = [x + offset, hyper coordinates]."""
    d = deformation(model, points, z_id, z_ex)
    return torch.cat([points + d[..., :3], d[..., 3:]], dim=-1)


def sdf(model: "NPHM", points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    """Posed SDF ``(B, N, 1)`` of points ``(B, N, 3)``."""
    return identity_sdf(model, canonical(model, points, z_id, z_ex), z_id)
