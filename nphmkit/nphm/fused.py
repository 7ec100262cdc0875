"""The decoder on the fused kernels (``backend="triton"``): what runs where.

The decoder prepares what depends on the codes (anchors, per-slot first-layer tables, the
neighbourhoods and blending weights of each chunk, as the vectorized path does) and hands the
MLPs to :mod:`nphmkit.kernels` as tensors and weight packs. The registers design's expression
MLP does not fit the GPU in the float32-accurate modes: there the vectorized path runs it
(``kernels.expression_kernel_runs``).

Gradients: w.r.t. points and codes (through the per-sample tables); not w.r.t. the network
weights, and no double backward (``NPHM._backend`` routes those cases to the torch path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from nphmkit import kernels
from nphmkit.nphm import reference, vectorized

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM


def ensemble_pack(model: "NPHM") -> kernels.EnsembleWeights:
    cfg, ens = model.config, model.ensemble
    return kernels.EnsembleWeights(tuple(ens.weights), tuple(ens.biases), cfg.lat_dim_glob + cfg.lat_dim_loc,
                                   cfg.softplus_beta, ens)


def expression_pack(model: "NPHM") -> kernels.ExpressionWeights:
    ex = model.expression
    return kernels.ExpressionWeights(tuple((m.weight, m.bias) for m in ex.layers), model.config.ex_skip,
                                     model.config.softplus_beta, ex)


def chunk_points(model: "NPHM") -> int:
    """Points per chunk of a triton-path query (``KernelOptions.chunk_points``; 0: ``config.chunk_size``)."""
    return kernels.get_options().chunk_points or model.config.chunk_size


def identity_chunk(model: "NPHM", prep: vectorized.IdentityPrep, q: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
    """Identity SDF ``(P,)`` of flat canonical queries ``q (P, D)`` (the kernels run the MLPs, torch the blending)."""
    cfg = model.config
    slots, delta, w, _ = vectorized._neighbourhood(model, prep, q, bidx)
    types = model.slot_types[slots].reshape(-1)
    rows = (bidx[:, None] * (cfg.n_anchors + 1) + slots).reshape(-1).to(torch.int32)
    f = kernels.identity_mlps(prep.first_layer, delta.reshape(-1, cfg.query_dim), rows, types, ensemble_pack(model))
    return (w * f.view(w.shape)).sum(-1)


def expression_chunk(model: "NPHM", prep: vectorized.ExpressionPrep, x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
    """Expression MLP output ``(P, 3 + n_hyper)`` of flat points ``x (P, 3)``."""
    if not kernels.expression_kernel_runs(x.device):
        return vectorized.expression_chunk(model, prep, x, bidx)
    return kernels.expression_mlp(prep.first, prep.skip, x, bidx, expression_pack(model))


def _graph(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def identity_sdf(model: "NPHM", canonical_points: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
    """``(B, N, 1)`` identity SDF of canonical queries ``(B, N, 3 + n_hyper)``."""
    graph = _graph(canonical_points, z_id)
    with torch.set_grad_enabled(graph):
        prep = vectorized.prepare_identity(model, z_id)
        return model._chunked(canonical_points, lambda q, b: identity_chunk(model, prep, q, b)[:, None], 1, graph,
                              chunk_points(model))


def canonical(model: "NPHM", points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    """``(B, N, 3 + n_hyper)`` canonical queries of posed ``points (B, N, 3)``."""
    graph = _graph(points, z_id, z_ex)
    with torch.set_grad_enabled(graph):
        prep = vectorized.prepare_expression(model, z_id, z_ex)

        def run(x, b):
            d = expression_chunk(model, prep, x, b)
            return torch.cat([x + d[:, :3], d[:, 3:]], dim=-1)

        return model._chunked(points, run, model.config.query_dim, graph, chunk_points(model))


def sdf(model: "NPHM", points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    """``(B, N, 1)`` SDF of posed ``points (B, N, 3)``."""
    graph = _graph(points, z_id, z_ex)
    with torch.set_grad_enabled(graph):
        anc = reference.anchors(model, z_id)
        id_prep = vectorized.prepare_identity(model, z_id, anc)
        ex_prep = vectorized.prepare_expression(model, z_id, z_ex, anc)

        def run(x, b):
            d = expression_chunk(model, ex_prep, x, b)
            q = torch.cat([x + d[:, :3], d[:, 3:]], dim=-1)
            return identity_chunk(model, id_prep, q, b)[:, None]

        return model._chunked(points, run, 1, graph, chunk_points(model))
