"""Triton building blocks: one dense layer of a block of rows, through a global scratch buffer.

A program owns ``BM`` rows. Activations of its rows live in a per-program scratch area
(``(BM, HP)`` floats, L2-resident on a GPU); a layer is a tiled product over ``BN x BK`` tiles
with ``tl.dot`` and masked widths (``HP`` = the width padded to a power of two). Softplus with
``beta`` and its derivative (a sigmoid) are fused into the tile loop.

This module imports triton; it is only imported when a Triton kernel is first used.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def softplus(x, beta):
    """Softplus(beta) as torch computes it (linear above beta * x = 20), in a stable form."""
    bx = x * beta
    soft = tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(bx))) / beta
    return tl.where(bx > 20.0, x, soft)


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def dense_forward(
    src, dst, pre, w_ptr, b_ptr, k_in, n_out, beta,
    HP: tl.constexpr, NP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    ACT: tl.constexpr, SAVE_PRE: tl.constexpr, PRECISION: tl.constexpr,
):
    """``dst = act(src @ W^T + b)`` for ``src (BM, HP)``, ``W (n_out, k_in)`` row-major, outputs up to ``NP``
    (padded ``n_out``); optional pre-activation copy. Rows of ``src``/``dst`` are ``HP`` apart."""
    rm = tl.arange(0, BM)
    for n0 in range(0, NP, BN):
        rn = n0 + tl.arange(0, BN)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, HP, BK):
            rk = k0 + tl.arange(0, BK)
            a = tl.load(src + rm[:, None] * HP + rk[None, :])
            w = tl.load(w_ptr + rn[None, :] * k_in + rk[:, None], mask=(rn[None, :] < n_out) & (rk[:, None] < k_in), other=0.0)
            acc += tl.dot(a, w, input_precision=PRECISION)
        bias = tl.load(b_ptr + rn, mask=rn < n_out, other=0.0)
        acc += bias[None, :]
        if SAVE_PRE:
            tl.store(pre + rm[:, None] * HP + rn[None, :], acc)
        if ACT:
            acc = softplus(acc, beta)
        acc = tl.where(rn[None, :] < n_out, acc, 0.0)
        tl.store(dst + rm[:, None] * HP + rn[None, :], acc)


@triton.jit
def dense_backward(
    src, dst, pre, w_ptr, k_in, n_out, beta,
    HP: tl.constexpr, NP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    """``dst = (src @ W) * sigmoid(beta * pre)``: backprop ``src (BM, NP..)`` (grads of the ``n_out`` outputs,
    padded to ``NP``) through ``W (n_out, k_in)`` into the ``k_in`` inputs (padded to ``HP``), then through the
    softplus whose pre-activation is ``pre``. Rows of every buffer are ``HP`` apart."""
    rm = tl.arange(0, BM)
    for n0 in range(0, HP, BN):
        rn = n0 + tl.arange(0, BN)  # input features of W
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, NP, BK):
            rk = k0 + tl.arange(0, BK)  # output features of W
            g = tl.load(src + rm[:, None] * HP + rk[None, :])
            w = tl.load(w_ptr + rk[:, None] * k_in + rn[None, :], mask=(rk[:, None] < n_out) & (rn[None, :] < k_in), other=0.0)
            acc += tl.dot(g, w, input_precision=PRECISION)
        p = tl.load(pre + rm[:, None] * HP + rn[None, :])
        acc = acc * sigmoid(beta * p)
        acc = tl.where(rn[None, :] < k_in, acc, 0.0)
        tl.store(dst + rm[:, None] * HP + rn[None, :], acc)
