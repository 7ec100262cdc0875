"""Identity ensemble, "registers" design: a block's activations never leave the chip.

Same block layout as :mod:`kernels.identity` (point-anchor pairs sorted by MLP type into
single-type blocks of ``BM`` rows, padding rows -1), but every activation lives in registers as
chunks (:mod:`kernels.registers_mlp`) and each layer is a grid of ``tl.dot`` products on them.

With ``GRAD`` the same launch also runs the backward pass of every pair's MLP output ``f`` and
writes its Jacobians: ``d f / d offset`` ``(pairs, D)`` and, with ``PRE0``, ``d f / d pre0``
``(pairs, H)`` (the first-layer pre-activation, through which the code table's gradient flows).
An autograd backward is then only a scaling by the incoming gradient, with no recomputation.
The activation slopes the backward needs are written once per layer to a program-private
scratch block; with ``GRAD`` the grid is persistent (a few programs per SM looping over blocks)
so the scratch stays small enough to live in L2.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .registers_mlp import (
    activate,
    add_vector,
    load_chunks,
    matmul,
    mul_vector,
    project,
    rank_update,
    save_block,
    scale_by_block,
    store_chunks,
)


@triton.jit
def ensemble_chunked_kernel(
    table, rows, delta, sorted_ids, block_type, w0d, wt, wb, bh, wout, bout,
    out, jac_delta, jac_pre0, scratch, n_blocks, H, beta,
    NH: tl.constexpr, D: tl.constexpr, P: tl.constexpr,
    C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, C3: tl.constexpr, NC: tl.constexpr,
    BM: tl.constexpr, PRECISION: tl.constexpr, GRAD: tl.constexpr, PRE0: tl.constexpr,
):
    """Per pair: ``out = f``; with ``GRAD`` also ``jac_delta = df/d offset``; with ``PRE0``
    ``jac_pre0 = df/d pre0``. Padded weights: ``w0d (T, D, P)``, ``wt``/``wb (T, NH, P, P)``
    (transposed / not), ``bh (T, NH, P)``, ``wout (T, P)``, ``bout (T,)``; ``table (rows, P)``."""
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    rm = tl.arange(0, BM)
    slopes = scratch + pid.to(tl.int64) * (NH * BM * P)
    for blk in range(pid, n_blocks, n_prog):
        t = tl.load(block_type + blk)
        if t >= 0:
            ids = tl.load(sorted_ids + blk * BM + rm)
            valid = ids >= 0
            ids = tl.where(valid, ids, 0).to(tl.int64)
            row = tl.load(rows + ids, mask=valid, other=0).to(tl.int64)
            # first layer: the slot's code term from the table + the offset columns
            p0, p1, p2, p3 = load_chunks(table, row, valid, P, BM, C0, C1, C2, C3, NC)
            p0, p1, p2, p3 = rank_update(p0, p1, p2, p3, delta, ids, valid, D, w0d + t * (D * P), P, C0, C1, C2, C3, NC)
            h0, h1, h2, h3, s0, s1, s2, s3 = activate(p0, p1, p2, p3, beta)
            for layer in range(NH):  # a loop, not unrolled: compile time
                if GRAD:
                    save_block(slopes + layer * (BM * P), s0, s1, s2, s3, BM, P, C0, C1, C2, C3, NC)
                w = wt + (t * NH + layer) * (P * P)
                p0, p1, p2, p3 = matmul(h0, h1, h2, h3, w, P, C0, C1, C2, C3, NC, C0, C1, C2, C3, NC, BM, PRECISION)
                p0, p1, p2, p3 = add_vector(p0, p1, p2, p3, bh + (t * NH + layer) * P, C0, C1, C2, C3, NC)
                h0, h1, h2, h3, s0, s1, s2, s3 = activate(p0, p1, p2, p3, beta)
            f = project(h0, h1, h2, h3, wout + t * P, C0, C1, C2, C3, NC) + tl.load(bout + t)
            tl.store(out + ids, f, mask=valid)
            if GRAD:
                tl.debug_barrier()  # the slopes written above are read by other threads below
                # d f / d pre_last = w_out * slope; then back through the hidden layers
                g0, g1, g2, g3 = mul_vector(s0, s1, s2, s3, wout + t * P, C0, C1, C2, C3, NC)
                for i in range(NH):
                    layer = NH - 1 - i
                    w = wb + (t * NH + layer) * (P * P)
                    g0, g1, g2, g3 = matmul(g0, g1, g2, g3, w, P, C0, C1, C2, C3, NC, C0, C1, C2, C3, NC, BM, PRECISION)
                    g0, g1, g2, g3 = scale_by_block(slopes + layer * (BM * P), g0, g1, g2, g3, BM, P, C0, C1, C2, C3, NC)
                for d in tl.static_range(D):
                    jd = project(g0, g1, g2, g3, w0d + t * (D * P) + d * P, C0, C1, C2, C3, NC)
                    tl.store(jac_delta + ids * D + d, jd, mask=valid)
                if PRE0:
                    store_chunks(jac_pre0, ids, valid, H, g0, g1, g2, g3, C0, C1, C2, C3, NC, H)
                tl.debug_barrier()  # before the next block overwrites the slopes
