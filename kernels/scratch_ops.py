"""Torch glue of the "scratch" design: weight layouts and autograd Functions over weight packs.

Gradients: w.r.t. the per-row code table, the offsets and the points (backward kernels); not
w.r.t. the network weights, and no double backward (the decoder routes those cases elsewhere).
The backward launches with the forward's precision, tiles and warps.
"""

from __future__ import annotations

import math

import torch
import triton

from .layout import block_layout
from .packs import EnsembleWeights, ExpressionWeights
from .scratch_expression import expression_backward_kernel, expression_forward_kernel
from .scratch_identity import ensemble_backward_kernel, ensemble_forward_kernel
from .settings import KernelOptions
from .weight_cache import cached


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _launch(options: KernelOptions, hp: int) -> dict:
    t = min(options.tile, hp)
    return {"BN": t, "BK": t, "PRECISION": options.precision, "num_warps": options.num_warps}


# ---------------------------------------------------------------------------------- identity ensemble
def _ensemble_layout(pack: EnsembleWeights):
    w0d = pack.weights[0][:, :, pack.code_dim :].detach().contiguous()
    wh = torch.stack([w.detach() for w in pack.weights[1:-1]], dim=1).contiguous()  # (T, NH, H, H)
    bh = torch.stack([b.detach() for b in pack.biases[1:-1]], dim=1).contiguous()
    wout = pack.weights[-1][:, 0, :].detach().contiguous()
    bout = pack.biases[-1][:, 0].detach().contiguous()
    return w0d, wh, bh, wout, bout


class Ensemble(torch.autograd.Function):
    """``f (pairs,)``: pair ``i`` through MLP ``types[i]`` (first-layer code part from ``table[rows[i]]``)."""

    @staticmethod
    def forward(ctx, table, delta, rows, types, pack: EnsembleWeights, options: KernelOptions):
        h, d, nh = pack.hidden, pack.query_dim, pack.n_hidden_layers
        hp = _pad(h)
        weights = cached(pack.owner, ("scratch identity",), lambda: _ensemble_layout(pack))
        bm = options.block_m
        sorted_ids, block_type = block_layout(types, pack.n_types, bm)
        n_blocks = block_type.numel()
        out = torch.zeros(rows.numel(), dtype=table.dtype, device=table.device)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=table.dtype, device=table.device)
        table_c, delta_c = table.detach().contiguous(), delta.detach().contiguous()
        launch = _launch(options, hp)
        ensemble_forward_kernel[(n_blocks,)](
            table_c, rows, delta_c, sorted_ids, block_type, *weights, out, scratch, h, nh, d, pack.softplus_beta,
            HP=hp, BM=bm, **launch,
        )
        ctx.save_for_backward(table_c, delta_c, rows, sorted_ids, block_type)
        ctx.pack, ctx.weights, ctx.bm, ctx.launch = pack, weights, bm, launch  # the backward runs as the forward did
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        table, delta, rows, sorted_ids, block_type = ctx.saved_tensors
        pack = ctx.pack
        h, d, nh = pack.hidden, pack.query_dim, pack.n_hidden_layers
        hp = _pad(h)
        w0d, wh, bh, wout, _ = ctx.weights
        bm = ctx.bm
        n_blocks = block_type.numel()
        grad_pre0 = torch.zeros(rows.numel(), h, dtype=table.dtype, device=table.device)
        grad_delta = torch.zeros_like(delta)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=table.dtype, device=table.device)
        pres = torch.empty(n_blocks * (nh + 1) * bm * hp, dtype=table.dtype, device=table.device)
        ensemble_backward_kernel[(n_blocks,)](
            table, rows, delta, sorted_ids, block_type, w0d, wh, bh, wout, grad_out.contiguous(), grad_pre0,
            grad_delta, scratch, pres, h, nh, d, pack.softplus_beta, HP=hp, BM=bm, **ctx.launch,
        )
        grad_table = torch.zeros_like(table).index_add_(0, rows.long(), grad_pre0)
        return grad_table, grad_delta, None, None, None, None


# ---------------------------------------------------------------------------------- expression MLP
def _expression_layout(pack: ExpressionWeights):
    layers, skip, e = pack.layers, pack.skip, pack.hidden
    s2 = math.sqrt(2.0)
    w0x = layers[0][0][:, :3].detach().contiguous()
    hidden, biases = [], []
    for i in range(1, len(layers) - 1):
        w, b = layers[i]
        hidden.append(w[:, :e].detach() / s2 if i == skip else w.detach())
        biases.append(torch.zeros_like(b) if i == skip else b.detach())
    wsx = (layers[skip][0][:, e : e + 3].detach() / s2).contiguous()
    wh, bh = torch.stack(hidden).contiguous(), torch.stack(biases).detach().contiguous()
    wout, bout = layers[-1][0].detach().contiguous(), layers[-1][1].detach().contiguous()
    return w0x, wh, bh, wsx, wout, bout


class Expression(torch.autograd.Function):
    """Expression MLP output ``(P, OUT)`` of points ``x (P, 3)`` of samples ``bidx (P,)``."""

    @staticmethod
    def forward(ctx, first, skip, x, bidx, pack: ExpressionWeights, options: KernelOptions):
        e, nh, out_dim = pack.hidden, pack.n_hidden_layers, pack.out_dim
        hp = _pad(e)
        w0x, wh, bh, wsx, wout, bout = cached(pack.owner, ("scratch expression",), lambda: _expression_layout(pack))
        p = x.shape[0]
        bm = options.block_m
        launch = {"BM": bm, **_launch(options, hp)}
        n_blocks = max(triton.cdiv(p, bm), 1)
        out = torch.zeros(p, out_dim, dtype=x.dtype, device=x.device)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=x.dtype, device=x.device)
        first_c, skip_c, x_c = first.detach().contiguous(), skip.detach().contiguous(), x.detach().contiguous()
        bidx32 = bidx.to(torch.int32)
        expression_forward_kernel[(n_blocks,)](
            x_c, bidx32, first_c, skip_c, w0x, wh, bh, wsx, wout, bout, out, scratch, p, e, nh, pack.skip - 1,
            out_dim, pack.softplus_beta, HP=hp, OP=_pad(out_dim), **launch,
        )
        ctx.save_for_backward(first_c, skip_c, x_c, bidx32)
        ctx.pack, ctx.weights, ctx.launch = pack, (w0x, wh, bh, wsx, wout, bout), launch
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        first, skip, x, bidx = ctx.saved_tensors
        pack = ctx.pack
        e, nh, out_dim = pack.hidden, pack.n_hidden_layers, pack.out_dim
        hp = _pad(e)
        w0x, wh, bh, wsx, wout, _ = ctx.weights
        p = x.shape[0]
        bm = ctx.launch["BM"]
        n_blocks = max(triton.cdiv(p, bm), 1)
        grad_x = torch.zeros_like(x)
        grad_first_rows = torch.zeros(p, e, dtype=x.dtype, device=x.device)
        grad_skip_rows = torch.zeros(p, e, dtype=x.dtype, device=x.device)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=x.dtype, device=x.device)
        pres = torch.empty(n_blocks * (nh + 1) * bm * hp, dtype=x.dtype, device=x.device)
        expression_backward_kernel[(n_blocks,)](
            x, bidx, first, skip, w0x, wh, bh, wsx, wout, grad_out.contiguous(), grad_x, grad_first_rows,
            grad_skip_rows, scratch, pres, p, e, nh, pack.skip - 1, out_dim, pack.softplus_beta,
            HP=hp, OP=_pad(out_dim), **ctx.launch,
        )
        idx = bidx.long()
        grad_first = torch.zeros_like(first).index_add_(0, idx, grad_first_rows)
        grad_skip = torch.zeros_like(skip).index_add_(0, idx, grad_skip_rows)
        return grad_first, grad_skip, grad_x, None, None, None
