"""Fused kernels for the expression (deformation) MLP: points -> [offset, hyper coordinates].

A program runs ``BM`` points through every layer. The per-sample parts of the first and the skip
layer (the compressed identity and the expression code, with their biases) come in as tables
``c_first (B, E)`` and ``c_skip (B, E)``; the per-point parts are 3-column products. The
backward kernel recomputes the pre-activations and returns the gradients w.r.t. the points and,
per point, w.r.t. the two tables' rows.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .scratch_mlp import dense_backward, dense_forward, softplus


@triton.jit
def _rank3(acc, x, rows, valid, w, E, HP: tl.constexpr):
    """``acc += x[rows] @ w^T`` for ``w (E, 3)``."""
    rh = tl.arange(0, HP)
    for d in tl.static_range(3):
        xd = tl.load(x + rows * 3 + d, mask=valid, other=0.0)
        wd = tl.load(w + rh * 3 + d, mask=rh < E, other=0.0)
        acc += xd[:, None] * wd[None, :]
    return acc


@triton.jit
def _forward_body(x, bidx, c_first, c_skip, w0x, wh, bh, wsx, rows, valid, s0, s1, p_base, P, E,
                  NH: tl.constexpr, SKIP: tl.constexpr, beta,
                  HP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  SAVE_PRE: tl.constexpr, PRECISION: tl.constexpr):
    rm = tl.arange(0, BM)
    rh = tl.arange(0, HP)
    hmask = rh < E
    b = tl.load(bidx + rows, mask=valid, other=0)
    acc = tl.load(c_first + b[:, None] * E + rh[None, :], mask=valid[:, None] & hmask[None, :], other=0.0)
    acc = _rank3(acc, x, rows, valid, w0x, E, HP)
    if SAVE_PRE:
        tl.store(p_base + rm[:, None] * HP + rh[None, :], acc)
    tl.store(s0 + rm[:, None] * HP + rh[None, :], tl.where(hmask[None, :], softplus(acc, beta), 0.0))
    tl.debug_barrier()
    for layer in tl.static_range(NH):
        src = s0 if layer % 2 == 0 else s1
        dst = s1 if layer % 2 == 0 else s0
        pre = p_base + (layer + 1) * BM * HP
        if layer == SKIP:
            dense_forward(src, dst, pre, wh + layer * E * E, bh + layer * E, E, E, beta,
                          HP, HP, BM, BN, BK, False, False, PRECISION)
            tl.debug_barrier()
            a = tl.load(dst + rm[:, None] * HP + rh[None, :])
            a += tl.load(c_skip + b[:, None] * E + rh[None, :], mask=valid[:, None] & hmask[None, :], other=0.0)
            a = _rank3(a, x, rows, valid, wsx, E, HP)
            if SAVE_PRE:
                tl.store(pre + rm[:, None] * HP + rh[None, :], a)
            tl.store(dst + rm[:, None] * HP + rh[None, :], tl.where(hmask[None, :], softplus(a, beta), 0.0))
        else:
            dense_forward(src, dst, pre, wh + layer * E * E, bh + layer * E, E, E, beta,
                          HP, HP, BM, BN, BK, True, SAVE_PRE, PRECISION)
        tl.debug_barrier()


@triton.jit
def expression_forward_kernel(
    x, bidx, c_first, c_skip, w0x, wh, bh, wsx, wout, bout, out, scratch, P, E,
    NH: tl.constexpr, SKIP: tl.constexpr, OUT: tl.constexpr, beta,
    HP: tl.constexpr, OP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)  # offsets below pass 2^31 at large chunks
    rm = tl.arange(0, BM)
    rows = pid * BM + rm
    valid = rows < P
    s0 = scratch + pid * 2 * BM * HP
    s1 = s0 + BM * HP
    _forward_body(x, bidx, c_first, c_skip, w0x, wh, bh, wsx, rows, valid, s0, s1, s0, P, E, NH, SKIP, beta,
                  HP, BM, BN, BK, False, PRECISION)
    last = s0 if NH % 2 == 0 else s1
    dst = s1 if NH % 2 == 0 else s0
    dense_forward(last, dst, dst, wout, bout, E, OUT, beta, HP, OP, BM, BN, BK, False, False, PRECISION)
    tl.debug_barrier()
    ro = tl.arange(0, OP)
    o = tl.load(dst + rm[:, None] * HP + ro[None, :])
    tl.store(out + rows[:, None] * OUT + ro[None, :], o, mask=valid[:, None] & (ro[None, :] < OUT))


@triton.jit
def expression_backward_kernel(
    x, bidx, c_first, c_skip, w0x, wh, bh, wsx, wout, grad_out, grad_x, grad_first, grad_skip, scratch, pres, P, E,
    NH: tl.constexpr, SKIP: tl.constexpr, OUT: tl.constexpr, beta,
    HP: tl.constexpr, OP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)  # offsets below pass 2^31 at large chunks
    rm = tl.arange(0, BM)
    rh = tl.arange(0, HP)
    hmask = rh < E
    rows = pid * BM + rm
    valid = rows < P
    s0 = scratch + pid * 2 * BM * HP
    s1 = s0 + BM * HP
    p_base = pres + pid * (NH + 1) * BM * HP
    _forward_body(x, bidx, c_first, c_skip, w0x, wh, bh, wsx, rows, valid, s0, s1, p_base, P, E, NH, SKIP, beta,
                  HP, BM, BN, BK, True, PRECISION)
    # d out / d h_last: the upstream gradient (OUT wide, zero-padded) through W_out
    ro = tl.arange(0, OP)
    go = tl.load(grad_out + rows[:, None] * OUT + ro[None, :], mask=valid[:, None] & (ro[None, :] < OUT), other=0.0)
    tl.store(s0 + rm[:, None] * HP + ro[None, :], go)
    tl.debug_barrier()
    dense_backward(s0, s1, p_base + NH * BM * HP, wout, E, OUT, beta, HP, OP, BM, BN, BK, PRECISION)
    tl.debug_barrier()
    gx0 = tl.zeros((BM,), dtype=tl.float32)
    gx1 = tl.zeros((BM,), dtype=tl.float32)
    gx2 = tl.zeros((BM,), dtype=tl.float32)
    for i in tl.static_range(NH):
        layer = NH - 1 - i
        src = s1 if i % 2 == 0 else s0
        dst = s0 if i % 2 == 0 else s1
        if layer == SKIP:
            g = tl.load(src + rm[:, None] * HP + rh[None, :])
            tl.store(grad_skip + rows[:, None] * E + rh[None, :], g, mask=valid[:, None] & hmask[None, :])
            gx0 += tl.sum(g * tl.load(wsx + rh * 3 + 0, mask=hmask, other=0.0)[None, :], axis=1)
            gx1 += tl.sum(g * tl.load(wsx + rh * 3 + 1, mask=hmask, other=0.0)[None, :], axis=1)
            gx2 += tl.sum(g * tl.load(wsx + rh * 3 + 2, mask=hmask, other=0.0)[None, :], axis=1)
        dense_backward(src, dst, p_base + layer * BM * HP, wh + layer * E * E, E, E, beta, HP, HP, BM, BN, BK, PRECISION)
        tl.debug_barrier()
    first = s1 if NH % 2 == 0 else s0
    g0 = tl.load(first + rm[:, None] * HP + rh[None, :])
    tl.store(grad_first + rows[:, None] * E + rh[None, :], g0, mask=valid[:, None] & hmask[None, :])
    gx0 += tl.sum(g0 * tl.load(w0x + rh * 3 + 0, mask=hmask, other=0.0)[None, :], axis=1)
    gx1 += tl.sum(g0 * tl.load(w0x + rh * 3 + 1, mask=hmask, other=0.0)[None, :], axis=1)
    gx2 += tl.sum(g0 * tl.load(w0x + rh * 3 + 2, mask=hmask, other=0.0)[None, :], axis=1)
    tl.store(grad_x + rows * 3 + 0, gx0, mask=valid)
    tl.store(grad_x + rows * 3 + 1, gx1, mask=valid)
    tl.store(grad_x + rows * 3 + 2, gx2, mask=valid)
