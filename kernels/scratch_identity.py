"""Fused kernels for the identity ensemble: every point-anchor pair through its type's whole MLP.

Pairs are sorted by MLP type and laid out in blocks of ``BM`` rows that each hold one type
(padding rows have id -1), as fused mixture-of-experts kernels do; a program runs its block
through the first layer (the per-sample-slot code terms from a table plus the ``D``-column
offset part), the hidden layers (tiled ``tl.dot``) and the scalar output, all in one launch.
The backward kernel recomputes the block's pre-activations and returns, per pair, the
gradient w.r.t. the first-layer pre-activation (for the code table) and w.r.t. the offset.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .scratch_mlp import dense_backward, dense_forward, sigmoid, softplus


@triton.jit
def _first_layer(table, rows, delta, w0d, ids, valid, t, scratch, pre, H, D: tl.constexpr, beta,
                 HP: tl.constexpr, BM: tl.constexpr, SAVE_PRE: tl.constexpr):
    rm = tl.arange(0, BM)
    rh = tl.arange(0, HP)
    hmask = rh < H
    row = tl.load(rows + ids, mask=valid, other=0)
    acc = tl.load(table + row[:, None] * H + rh[None, :], mask=valid[:, None] & hmask[None, :], other=0.0)
    for d in tl.static_range(D):
        dv = tl.load(delta + ids * D + d, mask=valid, other=0.0)
        wd = tl.load(w0d + t * H * D + rh * D + d, mask=hmask, other=0.0)
        acc += dv[:, None] * wd[None, :]
    if SAVE_PRE:
        tl.store(pre + rm[:, None] * HP + rh[None, :], acc)
    acc = tl.where(hmask[None, :], softplus(acc, beta), 0.0)
    tl.store(scratch + rm[:, None] * HP + rh[None, :], acc)


@triton.jit
def ensemble_forward_kernel(
    table, rows, delta, sorted_ids, block_type, w0d, wh, bh, wout, bout, out, scratch,
    H, N_HIDDEN: tl.constexpr, D: tl.constexpr, beta,
    HP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)  # offsets below pass 2^31 at large chunks
    t = tl.load(block_type + pid)
    if t >= 0:
        rm = tl.arange(0, BM)
        ids = tl.load(sorted_ids + pid * BM + rm)
        valid = ids >= 0
        ids = tl.where(valid, ids, 0)
        s0 = scratch + pid * 2 * BM * HP
        s1 = s0 + BM * HP
        _first_layer(table, rows, delta, w0d, ids, valid, t, s0, s0, H, D, beta, HP, BM, False)
        tl.debug_barrier()
        for layer in tl.static_range(N_HIDDEN):
            src = s0 if layer % 2 == 0 else s1
            dst = s1 if layer % 2 == 0 else s0
            dense_forward(src, dst, dst, wh + (t * N_HIDDEN + layer) * H * H, bh + (t * N_HIDDEN + layer) * H, H, H, beta,
                          HP, HP, BM, BN, BK, True, False, PRECISION)
            tl.debug_barrier()
        last = s0 if N_HIDDEN % 2 == 0 else s1
        rh = tl.arange(0, HP)
        h = tl.load(last + rm[:, None] * HP + rh[None, :])
        w = tl.load(wout + t * H + rh, mask=rh < H, other=0.0)
        f = tl.sum(h * w[None, :], axis=1) + tl.load(bout + t)
        tl.store(out + ids, f, mask=valid)


@triton.jit
def ensemble_backward_kernel(
    table, rows, delta, sorted_ids, block_type, w0d, wh, bh, wout, grad_out, grad_pre0, grad_delta, scratch, pres,
    H, N_HIDDEN: tl.constexpr, D: tl.constexpr, beta,
    HP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)  # offsets below pass 2^31 at large chunks
    t = tl.load(block_type + pid)
    if t >= 0:
        rm = tl.arange(0, BM)
        rh = tl.arange(0, HP)
        hmask = rh < H
        ids = tl.load(sorted_ids + pid * BM + rm)
        valid = ids >= 0
        ids = tl.where(valid, ids, 0)
        s0 = scratch + pid * 2 * BM * HP
        s1 = s0 + BM * HP
        p_base = pres + pid * (N_HIDDEN + 1) * BM * HP
        # recompute the forward, keeping every pre-activation
        _first_layer(table, rows, delta, w0d, ids, valid, t, s0, p_base, H, D, beta, HP, BM, True)
        tl.debug_barrier()
        for layer in tl.static_range(N_HIDDEN):
            src = s0 if layer % 2 == 0 else s1
            dst = s1 if layer % 2 == 0 else s0
            dense_forward(src, dst, p_base + (layer + 1) * BM * HP, wh + (t * N_HIDDEN + layer) * H * H,
                          bh + (t * N_HIDDEN + layer) * H, H, H, beta, HP, HP, BM, BN, BK, True, True, PRECISION)
            tl.debug_barrier()
        # backward: d f / d h_last = w_out, through the last softplus
        g_out = tl.load(grad_out + ids, mask=valid, other=0.0)
        w = tl.load(wout + t * H + rh, mask=hmask, other=0.0)
        p_last = tl.load(p_base + N_HIDDEN * BM * HP + rm[:, None] * HP + rh[None, :])
        g = g_out[:, None] * w[None, :] * sigmoid(beta * p_last)
        g = tl.where(hmask[None, :], g, 0.0)
        tl.store(s0 + rm[:, None] * HP + rh[None, :], g)
        tl.debug_barrier()
        for i in tl.static_range(N_HIDDEN):
            layer = N_HIDDEN - 1 - i
            src = s0 if i % 2 == 0 else s1
            dst = s1 if i % 2 == 0 else s0
            dense_backward(src, dst, p_base + layer * BM * HP, wh + (t * N_HIDDEN + layer) * H * H, H, H, beta,
                           HP, HP, BM, BN, BK, PRECISION)
            tl.debug_barrier()
        first = s0 if N_HIDDEN % 2 == 0 else s1
        g0 = tl.load(first + rm[:, None] * HP + rh[None, :])
        tl.store(grad_pre0 + ids[:, None] * H + rh[None, :], g0, mask=valid[:, None] & hmask[None, :])
        for d in tl.static_range(D):
            wd = tl.load(w0d + t * H * D + rh * D + d, mask=hmask, other=0.0)
            tl.store(grad_delta + ids * D + d, tl.sum(g0 * wd[None, :], axis=1), mask=valid)
