"""Triton building blocks of the "registers" design: activations stay on chip, split in chunks.

A Triton tensor's dimensions are powers of two, but the NPHM widths are not (200, 400). Here a
block's activations ``(BM, W)`` are held as up to four register tensors ``(BM, C0)`` ...
``(BM, C3)`` whose widths are powers of two >= 16, at most ``max_chunk`` (128: a 128 x 128 fp32
weight tile, 64 KiB, is the largest ``tl.dot`` operand that leaves shared memory for a second
one), summing to ``W`` padded to a multiple of 16: 200 -> 128 + 64 + 16, 400 -> 3 x 128 + 16.
A dense layer is then a grid of ``tl.dot`` products on chunks, with no round trip through
memory. ``NC`` says how many chunks are real; the others are 16-wide zero placeholders whose
products are skipped at compile time (``NC`` is a constexpr), so narrow layers (an MLP output
padded to 16) share the same code. Chunk ``i`` starts at column ``C0 + ... + C(i-1)``.

Weights come pre-padded with zeros to the chunked width (``registers_ops``), so every load is
unmasked and rows are 64-byte aligned; padded activation columns meet zero weight rows.

This module imports triton; it is only imported when a kernel is first used.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def dot(a, b, PRECISION: tl.constexpr):
    """``a @ b`` with fp32 accumulation: "ieee" (fp32 FMA), "tf32x3" or "tf32" (``tl.dot``'s input
    precisions, tensor cores), or "fp16" (both operands rounded to float16: the same 10-bit
    mantissa as TF32, twice its tensor-core rate, half the shared memory per tile)."""
    if PRECISION == "fp16":
        out = tl.dot(a.to(tl.float16), b.to(tl.float16), out_dtype=tl.float32)
    else:
        out = tl.dot(a, b, input_precision=PRECISION)
    return out


@triton.jit
def softplus_and_slope(pre, beta):
    """Softplus(beta) of ``pre`` (linear above beta * pre = 20, as torch) and its derivative, one exp."""
    bx = pre * beta
    e = tl.exp(-tl.abs(bx))
    soft = tl.maximum(pre, 0.0) + tl.log(1.0 + e) / beta
    soft = tl.where(bx > 20.0, pre, soft)
    inv = 1.0 / (1.0 + e)
    slope = tl.where(bx >= 0.0, inv, e * inv)
    return soft, slope


@triton.jit
def load_tile(ptr, ld, r0: tl.constexpr, c0: tl.constexpr, R: tl.constexpr, C: tl.constexpr):
    """Tile ``(R, C)`` at row ``r0``, column ``c0`` of a padded row-major matrix with ``ld`` columns."""
    r = r0 + tl.arange(0, R)
    c = c0 + tl.arange(0, C)
    return tl.load(ptr + r[:, None] * ld + c[None, :])


@triton.jit
def load_rows(ptr, rows, valid, ld, c0: tl.constexpr, C: tl.constexpr):
    """Columns ``c0 .. c0 + C`` of the rows ``rows (BM,)`` of a padded matrix (zeros where not ``valid``)."""
    c = c0 + tl.arange(0, C)
    return tl.load(ptr + rows[:, None] * ld + c[None, :], mask=valid[:, None], other=0.0)


@triton.jit
def load_chunks(ptr, rows, valid, ld, BM: tl.constexpr, C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr,
                C3: tl.constexpr, NC: tl.constexpr):
    """The rows ``rows`` of a padded ``(n, ld)`` matrix as chunks (placeholders are zeros)."""
    a0 = load_rows(ptr, rows, valid, ld, 0, C0)
    a1 = tl.zeros((BM, C1), dtype=tl.float32)
    a2 = tl.zeros((BM, C2), dtype=tl.float32)
    a3 = tl.zeros((BM, C3), dtype=tl.float32)
    if NC > 1:
        a1 = load_rows(ptr, rows, valid, ld, C0, C1)
    if NC > 2:
        a2 = load_rows(ptr, rows, valid, ld, C0 + C1, C2)
    if NC > 3:
        a3 = load_rows(ptr, rows, valid, ld, C0 + C1 + C2, C3)
    return a0, a1, a2, a3


@triton.jit
def _store_rows(ptr, rows, valid, ld, a, c0: tl.constexpr, C: tl.constexpr, WIDTH):
    c = c0 + tl.arange(0, C)
    tl.store(ptr + rows[:, None] * ld + c[None, :], a, mask=valid[:, None] & (c[None, :] < WIDTH))


@triton.jit
def store_chunks(ptr, rows, valid, ld, a0, a1, a2, a3, C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr,
                 C3: tl.constexpr, NC: tl.constexpr, WIDTH):
    """Store the first ``WIDTH`` columns of chunked rows into rows ``rows`` of a ``(n, ld)`` matrix."""
    _store_rows(ptr, rows, valid, ld, a0, 0, C0, WIDTH)
    if NC > 1:
        _store_rows(ptr, rows, valid, ld, a1, C0, C1, WIDTH)
    if NC > 2:
        _store_rows(ptr, rows, valid, ld, a2, C0 + C1, C2, WIDTH)
    if NC > 3:
        _store_rows(ptr, rows, valid, ld, a3, C0 + C1 + C2, C3, WIDTH)


@triton.jit
def _column_chunk(a0, a1, a2, a3, w, ld, n0: tl.constexpr, CN: tl.constexpr, K0: tl.constexpr, K1: tl.constexpr,
                  K2: tl.constexpr, K3: tl.constexpr, NK: tl.constexpr, PRECISION: tl.constexpr):
    acc = dot(a0, load_tile(w, ld, 0, n0, K0, CN), PRECISION)
    if NK > 1:
        acc += dot(a1, load_tile(w, ld, K0, n0, K1, CN), PRECISION)
    if NK > 2:
        acc += dot(a2, load_tile(w, ld, K0 + K1, n0, K2, CN), PRECISION)
    if NK > 3:
        acc += dot(a3, load_tile(w, ld, K0 + K1 + K2, n0, K3, CN), PRECISION)
    return acc


@triton.jit
def matmul(a0, a1, a2, a3, w, ld,
           K0: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr, K3: tl.constexpr, NK: tl.constexpr,
           N0: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr, N3: tl.constexpr, NN: tl.constexpr,
           BM: tl.constexpr, PRECISION: tl.constexpr):
    """Chunked ``a @ w``: ``a`` in chunks ``K*``, ``w`` a padded row-major ``(K0 + .., ld)`` matrix;
    returns the product in chunks ``N*`` (placeholders are zeros)."""
    o0 = _column_chunk(a0, a1, a2, a3, w, ld, 0, N0, K0, K1, K2, K3, NK, PRECISION)
    o1 = tl.zeros((BM, N1), dtype=tl.float32)
    o2 = tl.zeros((BM, N2), dtype=tl.float32)
    o3 = tl.zeros((BM, N3), dtype=tl.float32)
    if NN > 1:
        o1 = _column_chunk(a0, a1, a2, a3, w, ld, N0, N1, K0, K1, K2, K3, NK, PRECISION)
    if NN > 2:
        o2 = _column_chunk(a0, a1, a2, a3, w, ld, N0 + N1, N2, K0, K1, K2, K3, NK, PRECISION)
    if NN > 3:
        o3 = _column_chunk(a0, a1, a2, a3, w, ld, N0 + N1 + N2, N3, K0, K1, K2, K3, NK, PRECISION)
    return o0, o1, o2, o3


@triton.jit
def _vec(v, c0: tl.constexpr, C: tl.constexpr):
    return tl.load(v + c0 + tl.arange(0, C))[None, :]


@triton.jit
def add_vector(a0, a1, a2, a3, v, C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, C3: tl.constexpr,
               NC: tl.constexpr):
    """Add the padded row vector ``v`` to every row of the chunks."""
    a0 += _vec(v, 0, C0)
    if NC > 1:
        a1 += _vec(v, C0, C1)
    if NC > 2:
        a2 += _vec(v, C0 + C1, C2)
    if NC > 3:
        a3 += _vec(v, C0 + C1 + C2, C3)
    return a0, a1, a2, a3


@triton.jit
def mul_vector(a0, a1, a2, a3, v, C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, C3: tl.constexpr,
               NC: tl.constexpr):
    """Multiply every row of the chunks by the padded row vector ``v``."""
    a0 = a0 * _vec(v, 0, C0)
    if NC > 1:
        a1 = a1 * _vec(v, C0, C1)
    if NC > 2:
        a2 = a2 * _vec(v, C0 + C1, C2)
    if NC > 3:
        a3 = a3 * _vec(v, C0 + C1 + C2, C3)
    return a0, a1, a2, a3


@triton.jit
def rank_update(a0, a1, a2, a3, x, rows, valid, D: tl.constexpr, wcols, ld, C0: tl.constexpr, C1: tl.constexpr,
                C2: tl.constexpr, C3: tl.constexpr, NC: tl.constexpr):
    """``a += x[rows] @ wcols`` for a few columns: ``x`` a row-major ``(n, D)`` matrix, ``wcols`` a
    padded ``(D, ld)`` matrix (the first-layer weights of the point coordinates, transposed)."""
    for d in tl.static_range(D):
        xd = tl.load(x + rows * D + d, mask=valid, other=0.0)[:, None]
        a0 += xd * _vec(wcols + d * ld, 0, C0)
        if NC > 1:
            a1 += xd * _vec(wcols + d * ld, C0, C1)
        if NC > 2:
            a2 += xd * _vec(wcols + d * ld, C0 + C1, C2)
        if NC > 3:
            a3 += xd * _vec(wcols + d * ld, C0 + C1 + C2, C3)
    return a0, a1, a2, a3


@triton.jit
def project(a0, a1, a2, a3, v, C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, C3: tl.constexpr,
            NC: tl.constexpr):
    """Row-wise dot product ``a @ v`` ``(BM,)`` with the padded vector ``v``."""
    s = tl.sum(a0 * _vec(v, 0, C0), axis=1)
    if NC > 1:
        s += tl.sum(a1 * _vec(v, C0, C1), axis=1)
    if NC > 2:
        s += tl.sum(a2 * _vec(v, C0 + C1, C2), axis=1)
    if NC > 3:
        s += tl.sum(a3 * _vec(v, C0 + C1 + C2, C3), axis=1)
    return s


@triton.jit
def activate(p0, p1, p2, p3, beta):
    """Softplus of the chunks, and the slopes (derivatives) for a backward pass."""
    h0, s0 = softplus_and_slope(p0, beta)
    h1, s1 = softplus_and_slope(p1, beta)
    h2, s2 = softplus_and_slope(p2, beta)
    h3, s3 = softplus_and_slope(p3, beta)
    return h0, h1, h2, h3, s0, s1, s2, s3


@triton.jit
def _block(ptr, BM: tl.constexpr, P: tl.constexpr, c0: tl.constexpr, C: tl.constexpr):
    r = tl.arange(0, BM)
    return ptr + r[:, None] * P + c0 + tl.arange(0, C)[None, :]


@triton.jit
def save_block(ptr, a0, a1, a2, a3, BM: tl.constexpr, P: tl.constexpr, C0: tl.constexpr, C1: tl.constexpr,
               C2: tl.constexpr, C3: tl.constexpr, NC: tl.constexpr):
    """Store chunks into a program-private ``(BM, P)`` scratch block."""
    tl.store(_block(ptr, BM, P, 0, C0), a0)
    if NC > 1:
        tl.store(_block(ptr, BM, P, C0, C1), a1)
    if NC > 2:
        tl.store(_block(ptr, BM, P, C0 + C1, C2), a2)
    if NC > 3:
        tl.store(_block(ptr, BM, P, C0 + C1 + C2, C3), a3)


@triton.jit
def scale_by_block(ptr, a0, a1, a2, a3, BM: tl.constexpr, P: tl.constexpr, C0: tl.constexpr, C1: tl.constexpr,
                   C2: tl.constexpr, C3: tl.constexpr, NC: tl.constexpr):
    """Multiply the chunks by a ``(BM, P)`` scratch block written by :func:`save_block`."""
    a0 = a0 * tl.load(_block(ptr, BM, P, 0, C0))
    if NC > 1:
        a1 = a1 * tl.load(_block(ptr, BM, P, C0, C1))
    if NC > 2:
        a2 = a2 * tl.load(_block(ptr, BM, P, C0 + C1, C2))
    if NC > 3:
        a3 = a3 * tl.load(_block(ptr, BM, P, C0 + C1 + C2, C3))
    return a0, a1, a2, a3
