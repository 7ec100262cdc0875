"""Expression MLP, "registers" design: ``BM`` points through every layer with activations on chip.

One kernel, two modes. Forward: ``out (P, OUT)``. ``BACKWARD``: recompute the forward (writing
each layer's activation slopes once to a program-private scratch block, persistent grid), then
backpropagate ``grad_out (P, OUT)`` in registers into the points ``grad_x (P, 3)`` and, per point,
the rows of the two per-sample tables (``grad_first``, ``grad_skip``, ``(P, E)``), which the host
sums per sample. Per-sample parts of the first and skip layers come in as padded tables
``c_first``/``c_skip (B, EP)``; the point columns as transposed padded ``w0x``/``wsx (3, EP)``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .registers_mlp import (
    activate,
    add_vector,
    load_chunks,
    matmul,
    project,
    rank_update,
    save_block,
    scale_by_block,
    store_chunks,
)


@triton.jit
def expression_chunked_kernel(
    x, bidx, c_first, c_skip, w0x, wt, wb, bh, wsx, wout_t, wout, bout,
    out, grad_out, grad_x, grad_first, grad_skip, scratch, n_points, n_blocks, E, beta,
    NH: tl.constexpr, SKIP: tl.constexpr, OUT: tl.constexpr, OP: tl.constexpr, P: tl.constexpr,
    C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, C3: tl.constexpr, NC: tl.constexpr,
    BM: tl.constexpr, PRECISION: tl.constexpr, BACKWARD: tl.constexpr,
):
    """Padded weights: ``wt``/``wb (NH, P, P)`` (transposed / not), ``bh (NH, P)``, ``wout_t (P, OP)``,
    ``wout (OP, P)``, ``bout (OP,)``."""
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    rm = tl.arange(0, BM).to(tl.int64)  # row offsets below pass 2^31 at large chunks
    ro = tl.arange(0, OP)
    slopes = scratch + pid.to(tl.int64) * (NH * BM * P)
    for blk in range(pid, n_blocks, n_prog):
        rows = blk * BM + rm
        valid = rows < n_points
        b = tl.load(bidx + rows, mask=valid, other=0).to(tl.int64)
        p0, p1, p2, p3 = load_chunks(c_first, b, valid, P, BM, C0, C1, C2, C3, NC)
        p0, p1, p2, p3 = rank_update(p0, p1, p2, p3, x, rows, valid, 3, w0x, P, C0, C1, C2, C3, NC)
        h0, h1, h2, h3, s0, s1, s2, s3 = activate(p0, p1, p2, p3, beta)
        for layer in range(NH):  # a loop, not unrolled: compile time
            if BACKWARD:
                save_block(slopes + layer * (BM * P), s0, s1, s2, s3, BM, P, C0, C1, C2, C3, NC)
            w = wt + layer * (P * P)
            p0, p1, p2, p3 = matmul(h0, h1, h2, h3, w, P, C0, C1, C2, C3, NC, C0, C1, C2, C3, NC, BM, PRECISION)
            p0, p1, p2, p3 = add_vector(p0, p1, p2, p3, bh + layer * P, C0, C1, C2, C3, NC)
            if layer == SKIP:
                q0, q1, q2, q3 = load_chunks(c_skip, b, valid, P, BM, C0, C1, C2, C3, NC)
                p0, p1, p2, p3 = p0 + q0, p1 + q1, p2 + q2, p3 + q3
                p0, p1, p2, p3 = rank_update(p0, p1, p2, p3, x, rows, valid, 3, wsx, P, C0, C1, C2, C3, NC)
            h0, h1, h2, h3, s0, s1, s2, s3 = activate(p0, p1, p2, p3, beta)
        if not BACKWARD:
            o, _o1, _o2, _o3 = matmul(h0, h1, h2, h3, wout_t, OP, C0, C1, C2, C3, NC, OP, 16, 16, 16, 1, BM, PRECISION)
            o += tl.load(bout + ro)[None, :]
            tl.store(out + rows[:, None] * OUT + ro[None, :], o, mask=valid[:, None] & (ro[None, :] < OUT))
        else:
            tl.debug_barrier()  # the slopes written above are read by other threads below
            go = tl.load(grad_out + rows[:, None] * OUT + ro[None, :], mask=valid[:, None] & (ro[None, :] < OUT),
                         other=0.0)
            z = tl.zeros((BM, 16), dtype=tl.float32)
            g0, g1, g2, g3 = matmul(go, z, z, z, wout, P, OP, 16, 16, 16, 1, C0, C1, C2, C3, NC, BM, PRECISION)
            g0, g1, g2, g3 = g0 * s0, g1 * s1, g2 * s2, g3 * s3
            gx0 = tl.zeros((BM,), dtype=tl.float32)
            gx1 = tl.zeros((BM,), dtype=tl.float32)
            gx2 = tl.zeros((BM,), dtype=tl.float32)
            for i in range(NH):
                layer = NH - 1 - i
                if layer == SKIP:
                    store_chunks(grad_skip, rows, valid, E, g0, g1, g2, g3, C0, C1, C2, C3, NC, E)
                    gx0 += project(g0, g1, g2, g3, wsx, C0, C1, C2, C3, NC)
                    gx1 += project(g0, g1, g2, g3, wsx + P, C0, C1, C2, C3, NC)
                    gx2 += project(g0, g1, g2, g3, wsx + 2 * P, C0, C1, C2, C3, NC)
                w = wb + layer * (P * P)
                g0, g1, g2, g3 = matmul(g0, g1, g2, g3, w, P, C0, C1, C2, C3, NC, C0, C1, C2, C3, NC, BM, PRECISION)
                g0, g1, g2, g3 = scale_by_block(slopes + layer * (BM * P), g0, g1, g2, g3, BM, P, C0, C1, C2, C3, NC)
            store_chunks(grad_first, rows, valid, E, g0, g1, g2, g3, C0, C1, C2, C3, NC, E)
            gx0 += project(g0, g1, g2, g3, w0x, C0, C1, C2, C3, NC)
            gx1 += project(g0, g1, g2, g3, w0x + P, C0, C1, C2, C3, NC)
            gx2 += project(g0, g1, g2, g3, w0x + 2 * P, C0, C1, C2, C3, NC)
            tl.store(grad_x + rows * 3 + 0, gx0, mask=valid)
            tl.store(grad_x + rows * 3 + 1, gx1, mask=valid)
            tl.store(grad_x + rows * 3 + 2, gx2, mask=valid)
            tl.debug_barrier()  # before the next block overwrites the slopes
