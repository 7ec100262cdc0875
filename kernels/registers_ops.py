"""Torch glue of the "registers" design: chunk widths, padded weight layouts, autograd Functions over weight packs.

Selected with ``KernelOptions(design="registers")``; :mod:`kernels.dispatch` holds the entry points
and :mod:`kernels.layout` the block layout, shared by both designs.
"""

from __future__ import annotations

import math

import torch
import triton

from .packs import EnsembleWeights, ExpressionWeights
from .registers_expression import expression_chunked_kernel
from .registers_identity import ensemble_chunked_kernel
from .settings import KernelOptions
from .weight_cache import cached


def chunk_widths(n: int, max_chunk: int = 128) -> tuple[int, int, int, int, int, int]:
    """Split width ``n`` into at most four powers of two in ``[16, max_chunk]``: ``(C0, C1, C2, C3, NC, P)``.

    ``P`` (the sum of the ``NC`` real chunks, largest first) is the smallest multiple of 16 >= ``n``
    that splits so: 200 -> 128 + 64 + 16 = 208, 400 -> 3 x 128 + 16 = 400, 64 -> 64. Unused chunks
    are 16-wide placeholders. Widths above ``4 * max_chunk`` use wider chunks.
    """
    if n < 1:
        raise ValueError(f"n: expected a positive width, got {n}")
    if max_chunk < 16 or max_chunk & (max_chunk - 1):
        raise ValueError(f"max_chunk: expected a power of two >= 16, got {max_chunk}")
    while n > 4 * max_chunk:
        max_chunk *= 2
    p = 16 * math.ceil(n / 16)
    while True:
        parts = [max_chunk] * (p // max_chunk)
        rest = p % max_chunk
        parts += [1 << b for b in range(rest.bit_length() - 1, 3, -1) if rest & (1 << b)]
        if len(parts) <= 4:
            break
        p += 16
    nc = len(parts)
    parts += [16] * (4 - nc)
    return parts[0], parts[1], parts[2], parts[3], nc, p


def _pad(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """Zero-pad the last ``len(sizes)`` dimensions of ``t`` to ``sizes``; a contiguous copy, same dtype."""
    out = t.new_zeros(*t.shape[: t.dim() - len(sizes)], *sizes)
    out[tuple(slice(0, s) for s in t.shape)] = t
    return out.contiguous()


def _programs(n_blocks: int, device: torch.device, per_sm: int) -> int:
    """Grid of a persistent launch: a few programs per SM (the interpreter: a handful)."""
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(n_blocks, per_sm * sms))
    return max(1, min(n_blocks, 4))


def identity_stages(options: KernelOptions) -> int:
    """Software-pipelining stages of the identity launch: ``options.num_stages``, where 0 means
    2 in "fp16" (float16 tiles in shared memory: two layers' worth fit in 203 KiB, so the next
    layer's weights load asynchronously while this one computes) and 1 otherwise (float32 tiles:
    394 KiB would not fit an H100's 227; benchmarks/RESULTS.md). The weights stay float32 in
    memory, cast to float16 on chip: stored as float16 they compile to unpipelined loads."""
    stages = options.num_stages
    return stages if stages else (2 if options.precision == "fp16" else 1)


# ---------------------------------------------------------------------------------- identity ensemble
def identity_weights(pack: EnsembleWeights, p: int) -> dict[str, torch.Tensor]:
    """The ensemble's weights, padded to width ``p`` in the layouts the kernel reads."""
    hidden = torch.stack([w.detach() for w in pack.weights[1:-1]], dim=1)  # (T, NH, H, H): (out, in)
    return {
        "w0d": _pad(pack.weights[0][:, :, pack.code_dim :].detach().transpose(1, 2), pack.query_dim, p),  # (T, D, P)
        "wt": _pad(hidden.transpose(2, 3), p, p),  # (T, NH, P, P): (in, out)
        "wb": _pad(hidden, p, p),
        "bh": _pad(torch.stack([b.detach() for b in pack.biases[1:-1]], dim=1), p),
        "wout": _pad(pack.weights[-1][:, 0, :].detach(), p),
        "bout": pack.biases[-1][:, 0].detach().contiguous(),
    }


class EnsembleChunked(torch.autograd.Function):
    """``f (pairs,)`` of every pair's MLP; gradients w.r.t. the code table and the offsets.

    When a gradient is needed the forward launch also writes the per-pair Jacobians, and the
    backward only scales them by the incoming gradient.
    """

    @staticmethod
    def forward(ctx, table, delta, rows, sorted_ids, block_type, pack: EnsembleWeights, options: KernelOptions):
        h, d, nh = pack.hidden, pack.query_dim, pack.n_hidden_layers
        c0, c1, c2, c3, nc, p = chunk_widths(h, options.max_chunk)
        w = cached(pack.owner, ("registers identity", p), lambda: identity_weights(pack, p))
        bm = options.block_m
        n_blocks = block_type.numel()
        need_table, need_delta = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad = need_table or need_delta
        dev, dt = table.device, table.dtype
        n_pairs = rows.numel()
        out = torch.zeros(n_pairs, dtype=dt, device=dev)
        jac_delta = torch.zeros(n_pairs if grad else 1, d, dtype=dt, device=dev)
        jac_pre0 = torch.zeros(n_pairs if need_table else 1, h, dtype=dt, device=dev)
        grid = _programs(n_blocks, dev, options.programs_per_sm) if grad else n_blocks
        scratch = torch.empty(grid * nh * bm * p if grad else 1, dtype=dt, device=dev)
        ensemble_chunked_kernel[(grid,)](
            _pad(table.detach(), p), rows, delta.detach().contiguous(), sorted_ids, block_type,
            w["w0d"], w["wt"], w["wb"], w["bh"], w["wout"], w["bout"], out, jac_delta, jac_pre0, scratch,
            n_blocks, h, pack.softplus_beta,
            NH=nh, D=d, P=p, C0=c0, C1=c1, C2=c2, C3=c3, NC=nc, BM=bm, PRECISION=options.precision, GRAD=grad,
            PRE0=need_table, num_warps=options.num_warps, num_stages=identity_stages(options),
        )
        ctx.save_for_backward(rows, jac_delta, jac_pre0)
        ctx.n_table_rows = table.shape[0]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        rows, jac_delta, jac_pre0 = ctx.saved_tensors
        grad_table = grad_delta = None
        if ctx.needs_input_grad[0]:
            grad_table = jac_pre0.new_zeros(ctx.n_table_rows, jac_pre0.shape[1])
            grad_table.index_add_(0, rows.long(), grad_out[:, None] * jac_pre0)
        if ctx.needs_input_grad[1]:
            grad_delta = grad_out[:, None] * jac_delta
        return grad_table, grad_delta, None, None, None, None, None


# ---------------------------------------------------------------------------------- expression MLP
def expression_weights(pack: ExpressionWeights, p: int, op: int) -> dict[str, torch.Tensor]:
    """The expression MLP's weights, padded (hidden width ``p``, output width ``op``)."""
    layers, e, skip = pack.layers, pack.hidden, pack.skip
    s2 = math.sqrt(2.0)
    hidden, biases = [], []
    for i in range(1, len(layers) - 1):
        w, b = layers[i][0].detach(), layers[i][1]
        hidden.append(w[:, :e] / s2 if i == skip else w)
        biases.append(torch.zeros_like(b) if i == skip else b.detach())
    wh = torch.stack(hidden)  # (NH, E, E): (out, in)
    wout = layers[-1][0].detach()  # (OUT, E)
    return {
        "w0x": _pad(layers[0][0][:, :3].detach().t(), 3, p),
        "wt": _pad(wh.transpose(1, 2), p, p),
        "wb": _pad(wh, p, p),
        "bh": _pad(torch.stack(biases).detach(), p),
        "wsx": _pad((layers[skip][0][:, e : e + 3].detach() / s2).t(), 3, p),
        "wout_t": _pad(wout.t(), p, op),
        "wout": _pad(wout, op, p),
        "bout": _pad(layers[-1][1].detach(), op),
    }


def _launch_expression(pack: ExpressionWeights, options: KernelOptions, first, skip, x, bidx, grad_out=None):
    e, nh, out_dim = pack.hidden, pack.n_hidden_layers, pack.out_dim
    c0, c1, c2, c3, nc, p = chunk_widths(e, options.max_chunk)
    op = max(16, triton.next_power_of_2(out_dim))
    w = cached(pack.owner, ("registers expression", p, op), lambda: expression_weights(pack, p, op))
    n = x.shape[0]
    bm = options.block_m_expression
    n_blocks = max(triton.cdiv(n, bm), 1)
    dev, dt = x.device, x.dtype
    backward = grad_out is not None
    grid = _programs(n_blocks, dev, options.programs_per_sm) if backward else n_blocks
    out = torch.zeros(1 if backward else n, out_dim, dtype=dt, device=dev)
    grads = [torch.zeros(n if backward else 1, k, dtype=dt, device=dev) for k in (3, e, e)]
    scratch = torch.empty(grid * nh * bm * p if backward else 1, dtype=dt, device=dev)
    go = grad_out.contiguous() if backward else out
    expression_chunked_kernel[(grid,)](
        x, bidx, _pad(first.detach(), p), _pad(skip.detach(), p), w["w0x"], w["wt"], w["wb"], w["bh"], w["wsx"],
        w["wout_t"], w["wout"], w["bout"], out, go, *grads, scratch, n, n_blocks, e, pack.softplus_beta,
        NH=nh, SKIP=pack.skip - 1, OUT=out_dim, OP=op, P=p, C0=c0, C1=c1, C2=c2, C3=c3, NC=nc, BM=bm,
        PRECISION=options.precision, BACKWARD=backward, num_warps=options.num_warps,
        num_stages=1,  # two stages of its weights never fit
    )
    return grads if backward else out


class ExpressionChunked(torch.autograd.Function):
    """Expression MLP output ``(P, OUT)``; gradients w.r.t. the two per-sample tables and the points."""

    @staticmethod
    def forward(ctx, first, skip, x, bidx, pack: ExpressionWeights, options: KernelOptions):
        x_c, bidx32 = x.detach().contiguous(), bidx.to(torch.int32)
        out = _launch_expression(pack, options, first, skip, x_c, bidx32)
        ctx.save_for_backward(first.detach(), skip.detach(), x_c, bidx32)
        ctx.pack, ctx.options = pack, options
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        first, skip, x, bidx = ctx.saved_tensors
        grad_x, rows_first, rows_skip = _launch_expression(ctx.pack, ctx.options, first, skip, x, bidx, grad_out)
        idx = bidx.long()
        grad_first = torch.zeros_like(first).index_add_(0, idx, rows_first)
        grad_skip = torch.zeros_like(skip).index_add_(0, idx, rows_skip)
        return grad_first, grad_skip, grad_x, None, None, None
