"""The vectorized PyTorch path of the NPHM decoder ("torch" backend).

Same numbers as :mod:`nphmkit.nphm.reference`, computed with less work:

- per sample, the code-dependent part of every first layer is computed once: the identity MLPs'
  ``W0[:, :G+L] @ [global, local_a] + b0`` for each of the ``n_anchors + 1`` slots, and the
  expression MLP's ``[c, z_ex]`` terms of its first and skip layers; the per-point work of a first
  layer is then a ``(3 + n_hyper)``- or 3-column product;
- point-anchor pairs are sorted by MLP type once per chunk and every type runs its whole MLP on
  its contiguous block (a grouped matmul; blocks stay cache-sized); small chunks (the live rays of
  sphere tracing) instead cut the blocks into equal tiles and run each layer of all types as one
  batched matmul (:func:`identity_chunk_tiled`): a few ops instead of one per type and layer;
- without an autograd graph, normals come from an explicit backward pass that reuses the stored
  pre-activations (``d softplus = sigmoid``), no autograd bookkeeping and no weight gradients;
- queries run in chunks of ``config.chunk_size`` points, so without a graph peak memory is
  ``O(chunk_size * (n_neighbors + 1) * id_hidden)`` floats whatever N is.

With an autograd graph every operation is a differentiable torch op, so gradients w.r.t.
points, codes and weights, and double backward (eikonal), all work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from nphmkit._grouping import order_by_type, tile_layout
from nphmkit.nphm import reference
from nphmkit.nphm.layout import split_id_code

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM

_SQRT2 = math.sqrt(2.0)


@dataclass
class IdentityPrep:
    """Per-sample constants of the identity SDF."""

    anchors: torch.Tensor  # (B, A, 3)
    first_layer: torch.Tensor  # (B * (A + 1), H): code part of every slot's first layer, + bias


@dataclass
class ExpressionPrep:
    """Per-sample constants of the expression MLP."""

    first: torch.Tensor  # (B, E): [c, z_ex] part of layer 0, + bias
    skip: torch.Tensor  # (B, E): [c, z_ex] part of the skip layer / sqrt(2), + bias


def prepare_identity(model: "NPHM", z_id: torch.Tensor, anchors: torch.Tensor | None = None) -> IdentityPrep:
    cfg = model.config
    if anchors is None:
        anchors = reference.anchors(model, z_id)
    glob, local = split_id_code(z_id, cfg)
    b = z_id.shape[0]
    w0 = model.ensemble.weights[0][model.slot_types]  # (A + 1, H, id_in)
    b0 = model.ensemble.biases[0][model.slot_types]  # (A + 1, H)
    g = cfg.lat_dim_glob
    code_part = torch.einsum("ahg,bg->bah", w0[..., :g], glob) + torch.einsum(
        "ahl,bal->bah", w0[..., g : g + cfg.lat_dim_loc], local
    )
    first = (code_part + b0).reshape(b * (cfg.n_anchors + 1), -1)
    return IdentityPrep(anchors=anchors, first_layer=first)


def prepare_expression(
    model: "NPHM", z_id: torch.Tensor, z_ex: torch.Tensor, anchors: torch.Tensor | None = None
) -> ExpressionPrep:
    cfg = model.config
    ex = model.expression
    if anchors is None:
        anchors = reference.anchors(model, z_id)
    c = ex.compressor(torch.cat([z_id, anchors.reshape(z_id.shape[0], -1)], dim=-1))
    cz = torch.cat([c, z_ex], dim=-1)  # (B, C + Z)
    l0 = ex.layers[0]
    first = F.linear(cz, l0.weight[:, 3:], l0.bias)
    ls = ex.layers[cfg.ex_skip]
    e = cfg.ex_hidden
    skip = F.linear(cz, ls.weight[:, e + 3 :]) / _SQRT2 + ls.bias
    return ExpressionPrep(first=first, skip=skip)


def _softplus(x: torch.Tensor, beta: float) -> torch.Tensor:
    return F.softplus(x, beta=beta)


# ---------------------------------------------------------------------------------------
# identity SDF on a flat chunk of canonical queries
# ---------------------------------------------------------------------------------------
def _neighbourhood(model: "NPHM", prep: IdentityPrep, q: torch.Tensor, bidx: torch.Tensor):
    """Slots, mirrored offsets and blending weights of flat queries ``q (P, D)``."""
    cfg = model.config
    p = q.shape[0]
    anc = prep.anchors.index_select(0, bidx)  # (P, A, 3)
    d2 = ((q[:, None, :3] - anc) ** 2).sum(-1)  # (P, A)
    knn = d2.topk(cfg.n_neighbors, dim=-1, largest=False, sorted=True).indices  # (P, K)
    near = torch.gather(anc, 1, knn[..., None].expand(p, cfg.n_neighbors, 3))  # (P, K, 3)
    slots = torch.cat([knn, torch.full_like(knn[:, :1], cfg.n_anchors)], dim=1)  # (P, K + 1)

    sign = 1.0 - 2.0 * model.slot_flips[knn].to(q.dtype)  # (P, K)
    d_xyz = q[:, None, :3] - near  # (P, K, 3)
    delta_anchor = torch.cat(
        [
            d_xyz[..., :1] * sign[..., None],
            d_xyz[..., 1:],
            q[:, None, 3:].expand(p, cfg.n_neighbors, cfg.n_hyper),
        ],
        dim=-1,
    )
    delta = torch.cat([delta_anchor, q[:, None, :]], dim=1)  # (P, K + 1, D); background at origin

    dist = d_xyz.norm(dim=-1)  # (P, K)
    sigma = dist[:, : cfg.sigma_neighbor].max(dim=-1, keepdim=True).values / cfg.blend_std
    dist = torch.cat([dist, torch.full_like(dist[:, :1], cfg.background_distance)], dim=1)
    w = torch.exp(-((dist / sigma) ** 2) / 2)
    w = w / (w.sum(-1, keepdim=True) + 1e-8)
    return slots, delta, w, sign


def _sorted_pairs(model: "NPHM", slots: torch.Tensor, bidx: torch.Tensor):
    """Pairs sorted by MLP type: permutation, per-type counts (a host list), table rows."""
    cfg = model.config
    types = model.slot_types[slots].reshape(-1)
    order = order_by_type(types, cfg.n_types)
    counts = torch.bincount(types, minlength=cfg.n_types).tolist()
    rows = (bidx[:, None] * (cfg.n_anchors + 1) + slots).reshape(-1)
    return order, counts, rows


TILED_MAX_POINTS = 1536
"""Chunks of at most this many points run :func:`identity_chunk_tiled` without an autograd graph. Per call
on 2 CPU cores with the shipped small NPHM the tiled path is 4x faster at 8 points, 1.2-1.4x at 256-768
and even at 1500 (benchmarks/bench_tiled.py); larger chunks (meshing) keep the per-type loop, where the
padding and the gathered weights cost what the launches save (a 128^3 mesh: 2.1 s at this bound, 2.8 s
with every chunk tiled)."""
TILED_MAX_POINTS_GRAPH = 4096
"""The same bound for chunks that build an autograd graph, whose backward repeats the loop's launches:
a refinement step (1,500 pixels, double backward through the normals) ran 0.51 s with this bound
against 0.58 s with both bounds at 768 (demo image 0, the two alternated, best of 3 rounds of 20 steps)."""
TILED_MAX_WEIGHT_FLOATS = 1 << 24
"""And only while one layer's weights gathered per tile stay within this many floats (64 MiB in float32):
the official sizes (hidden width 200) then tile chunks of up to ~1,500 points without a graph and keep
the loop for the 4,096-point chunks of a graph (~35M floats per layer, kept for the backward)."""


def identity_chunk(model: "NPHM", prep: IdentityPrep, q: torch.Tensor, bidx: torch.Tensor,
                   tiled: bool | None = None) -> torch.Tensor:
    """Identity SDF ``(P,)`` of flat canonical queries ``q (P, D)`` of samples ``bidx (P,)``; differentiable.

    ``tiled``: run :func:`identity_chunk_tiled` (default: for ``P <= TILED_MAX_POINTS``, or
    ``TILED_MAX_POINTS_GRAPH`` when a graph is built); same values.
    """
    if tiled is None:
        graph = torch.is_grad_enabled() and (q.requires_grad or prep.first_layer.requires_grad
                                             or model.ensemble.weights[1].requires_grad)
        tiled = (q.shape[0] <= (TILED_MAX_POINTS_GRAPH if graph else TILED_MAX_POINTS)
                 and _tiled_weight_floats(model, q.shape[0]) <= TILED_MAX_WEIGHT_FLOATS)
    if tiled:
        return identity_chunk_tiled(model, prep, q, bidx)
    cfg = model.config
    ens = model.ensemble
    beta = cfg.softplus_beta
    slots, delta, w, _ = _neighbourhood(model, prep, q, bidx)
    order, counts, rows = _sorted_pairs(model, slots, bidx)
    delta_flat = delta.reshape(-1, cfg.query_dim)
    d0 = cfg.lat_dim_glob + cfg.lat_dim_loc
    n_layers = len(ens.weights)

    outs = []
    start = 0
    for t, cnt in enumerate(counts):
        if cnt == 0:
            continue
        idx = order[start : start + cnt]
        start += cnt
        pre = torch.addmm(
            prep.first_layer.index_select(0, rows.index_select(0, idx)),
            delta_flat.index_select(0, idx),
            ens.weights[0][t, :, d0:].t(),
        )
        h = _softplus(pre, beta)
        for i in range(1, n_layers):
            h = torch.addmm(ens.biases[i][t], h, ens.weights[i][t].t())
            if i < n_layers - 1:
                h = _softplus(h, beta)
        outs.append(h[:, 0])
    f_sorted = torch.cat(outs)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    f = f_sorted.index_select(0, inverse).view(w.shape)
    return (w * f).sum(-1)


def _tile_rows(n_pairs: int, n_types: int) -> int:
    """Rows per tile: about a quarter of a type's mean share of the pairs, a power of two in [8, 64]."""
    share = max(1, n_pairs // (4 * n_types))
    return min(64, max(8, 1 << (share - 1).bit_length()))


def _tiled_weight_floats(model: "NPHM", n_points: int) -> int:
    """Upper bound on the floats of the widest layer's weights gathered per tile for ``n_points`` queries."""
    cfg = model.config
    pairs = n_points * (cfg.n_neighbors + 1)
    n_tiles = -(-pairs // _tile_rows(pairs, cfg.n_types)) + cfg.n_types
    return n_tiles * max(w[0].numel() for w in model.ensemble.weights)


def identity_chunk_tiled(model: "NPHM", prep: IdentityPrep, q: torch.Tensor, bidx: torch.Tensor,
                         tile: int | None = None) -> torch.Tensor:
    """:func:`identity_chunk` with every layer of all MLP types as one batched matmul; differentiable.

    The point-anchor pairs, sorted by type, are cut into tiles of ``tile`` rows of one type each
    (padded; :func:`nphmkit._grouping.tile_layout`) and each layer gathers its weights per tile:
    ``(T, tile, in) @ (T, in, out)``. Padded rows compute on zeros and are dropped.
    """
    cfg = model.config
    ens = model.ensemble
    beta = cfg.softplus_beta
    slots, delta, w, _ = _neighbourhood(model, prep, q, bidx)
    types = model.slot_types[slots].reshape(-1)
    n_pairs = types.numel()
    tile = tile or _tile_rows(n_pairs, cfg.n_types)
    src, dest, tile_type = tile_layout(types, order_by_type(types, cfg.n_types), cfg.n_types, tile)
    n_tiles = tile_type.numel()
    d0 = cfg.lat_dim_glob + cfg.lat_dim_loc
    delta_flat = delta.reshape(n_pairs, cfg.query_dim)
    x = torch.cat([delta_flat, delta_flat.new_zeros(1, cfg.query_dim)]).index_select(0, src)
    rows = (bidx[:, None] * (cfg.n_anchors + 1) + slots).reshape(-1)
    rows = torch.cat([rows, rows.new_zeros(1)]).index_select(0, src)
    code_part = prep.first_layer.index_select(0, rows).view(n_tiles, tile, -1)
    w0 = ens.weights[0][:, :, d0:].index_select(0, tile_type)  # (T, H, D)
    h = _softplus(torch.baddbmm(code_part, x.view(n_tiles, tile, -1), w0.transpose(1, 2)), beta)
    n_layers = len(ens.weights)
    for i in range(1, n_layers):
        h = torch.baddbmm(ens.biases[i].index_select(0, tile_type)[:, None, :], h,
                          ens.weights[i].index_select(0, tile_type).transpose(1, 2))
        if i < n_layers - 1:
            h = _softplus(h, beta)
    f = h[..., 0].reshape(-1).index_select(0, dest).view(w.shape)  # the SDF column
    return (w * f).sum(-1)


@torch.no_grad()
def identity_chunk_with_grad(
    model: "NPHM", prep: IdentityPrep, q: torch.Tensor, bidx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity SDF ``(P,)`` and its gradient w.r.t. ``q`` ``(P, D)``, by an explicit backward pass.

    No autograd graph is kept or returned; this is the inference path of normals.
    """
    cfg = model.config
    ens = model.ensemble
    beta = cfg.softplus_beta
    d0 = cfg.lat_dim_glob + cfg.lat_dim_loc
    n_layers = len(ens.weights)
    p = q.shape[0]

    with torch.enable_grad():
        q_leaf = q.detach().requires_grad_(True)
        slots, delta, w, sign = _neighbourhood(model, prep, q_leaf, bidx)
    order, counts, rows = _sorted_pairs(model, slots, bidx)
    delta_flat = delta.detach().reshape(-1, cfg.query_dim)

    f_sorted = torch.empty(order.numel(), dtype=q.dtype, device=q.device)
    g_sorted = torch.empty(order.numel(), cfg.query_dim, dtype=q.dtype, device=q.device)
    start = 0
    for t, cnt in enumerate(counts):
        if cnt == 0:
            continue
        idx = order[start : start + cnt]
        pres = []
        pre = torch.addmm(
            prep.first_layer.index_select(0, rows.index_select(0, idx)),
            delta_flat.index_select(0, idx),
            ens.weights[0][t, :, d0:].t(),
        )
        for i in range(1, n_layers):
            pres.append(pre)
            pre = torch.addmm(ens.biases[i][t], _softplus(pre, beta), ens.weights[i][t].t())
        f_sorted[start : start + cnt] = pre[:, 0]
        # backward: d f / d delta through the stored pre-activations
        g = ens.weights[n_layers - 1][t].expand(cnt, -1) * torch.sigmoid(pres[-1] * beta)
        for i in range(n_layers - 2, 0, -1):
            g = (g @ ens.weights[i][t]).mul_(torch.sigmoid(pres[i - 1] * beta))
        g_sorted[start : start + cnt] = g @ ens.weights[0][t, :, d0:]
        start += cnt

    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    f = f_sorted.index_select(0, inverse).view(p, -1)  # (P, K + 1)
    g = g_sorted.index_select(0, inverse).view(p, -1, cfg.query_dim)  # (P, K + 1, D)
    g[:, : cfg.n_neighbors, 0] *= sign  # undo the mirroring of the local x
    grad_q = (w.detach()[..., None] * g).sum(1)

    # the blending weights depend on q too (distances and the Gaussian width)
    with torch.enable_grad():
        (grad_w,) = torch.autograd.grad((w * f).sum(), q_leaf)
    return (w.detach() * f).sum(-1), grad_q + grad_w


# ---------------------------------------------------------------------------------------
# expression MLP on a flat chunk of points
# ---------------------------------------------------------------------------------------
def _skip_weights(model: "NPHM") -> tuple[torch.Tensor, torch.Tensor]:
    e = model.config.ex_hidden
    w = model.expression.layers[model.config.ex_skip].weight
    return w[:, :e] / _SQRT2, w[:, e : e + 3] / _SQRT2


def expression_chunk(model: "NPHM", prep: ExpressionPrep, x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
    """Expression MLP output ``(P, 3 + n_hyper)`` for flat points ``x (P, 3)``; differentiable."""
    cfg = model.config
    layers = model.expression.layers
    beta = cfg.softplus_beta
    w_h, w_x = _skip_weights(model)
    h = _softplus(torch.addmm(prep.first.index_select(0, bidx), x, layers[0].weight[:, :3].t()), beta)
    last = len(layers) - 1
    for i in range(1, last):
        if i == cfg.ex_skip:
            pre = torch.addmm(torch.addmm(prep.skip.index_select(0, bidx), x, w_x.t()), h, w_h.t())
        else:
            pre = torch.addmm(layers[i].bias, h, layers[i].weight.t())
        h = _softplus(pre, beta)
    return torch.addmm(layers[last].bias, h, layers[last].weight.t())


@torch.no_grad()
def expression_chunk_vjp(
    model: "NPHM", prep: ExpressionPrep, x: torch.Tensor, bidx: torch.Tensor, grad_fn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expression output ``(P, D)`` and ``J^T g`` ``(P, 3)`` for the ``g = grad_fn(output)`` it returns.

    ``grad_fn(canonical (P, D)) -> (value, g (P, D))`` evaluates what sits on top of the
    deformation (the identity SDF) and its gradient w.r.t. the canonical query; the return is
    ``(value, d value / d x)`` with the identity part ``g[:, :3]`` included.
    """
    cfg = model.config
    layers = model.expression.layers
    beta = cfg.softplus_beta
    w_h, w_x = _skip_weights(model)
    last = len(layers) - 1
    pres = [torch.addmm(prep.first.index_select(0, bidx), x, layers[0].weight[:, :3].t())]
    for i in range(1, last):
        h = _softplus(pres[-1], beta)
        if i == cfg.ex_skip:
            pres.append(torch.addmm(torch.addmm(prep.skip.index_select(0, bidx), x, w_x.t()), h, w_h.t()))
        else:
            pres.append(torch.addmm(layers[i].bias, h, layers[i].weight.t()))
    out = torch.addmm(layers[last].bias, _softplus(pres[-1], beta), layers[last].weight.t())
    canonical = torch.cat([x + out[:, :3], out[:, 3:]], dim=-1)
    value, g_q = grad_fn(canonical)

    g = (g_q @ layers[last].weight).mul_(torch.sigmoid(pres[last - 1] * beta))
    g_x = g_q[:, :3].clone()
    for i in range(last - 1, 0, -1):
        if i == cfg.ex_skip:
            g_x += g @ w_x
            g = g @ w_h
        else:
            g = g @ layers[i].weight
        g.mul_(torch.sigmoid(pres[i - 1] * beta))
    g_x += g @ layers[0].weight[:, :3]
    return value, g_x
