"""Builders of decoders, codes and points shared by the nphm tests and benchmarks."""

from __future__ import annotations

import dataclasses

import torch

from nphmkit import NPHM, NPHMConfig


def make_model(config: NPHMConfig | None = None, seed: int = 0, dtype=torch.float32, chunk_size: int | None = None) -> NPHM:
    """A randomly initialized decoder with small anchor offsets (so anchors stay near the mean)."""
    config = config or NPHMConfig.tiny()
    if chunk_size is not None:
        config = dataclasses.replace(config, chunk_size=chunk_size)
    torch.manual_seed(seed)
    model = NPHM(config)
    with torch.no_grad():
        model.anchor_mlp.layers[-1].weight.mul_(0.1)
        model.anchor_mlp.layers[-1].bias.mul_(0.1)
    return model.to(dtype)


def make_inputs(model: NPHM, batch: int, n_points: int, seed: int = 0, dtype=None):
    """Points ``(B, N, 3)`` in a head-sized box and codes ``z_id (B, D)``, ``z_ex (B, E)``."""
    cfg = model.config
    dtype = dtype or model.mean_anchors.dtype
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor([0.9, 1.1, 1.0], dtype=torch.float64)
    points = (torch.rand(batch, n_points, 3, generator=g, dtype=torch.float64) - 0.5) * box
    z_id = 0.1 * torch.randn(batch, cfg.id_dim, generator=g, dtype=torch.float64)
    z_ex = 0.2 * torch.randn(batch, cfg.lat_dim_ex, generator=g, dtype=torch.float64)
    return points.to(dtype), z_id.to(dtype), z_ex.to(dtype)
