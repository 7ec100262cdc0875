"""The kernels' entry points: which design runs, on tensors and weight packs.

This module imports triton (it is imported on first use through :mod:`nphmkit.kernels`). The
decoder (``nphmkit.nphm.fused``) decides when these run; it prepares the per-sample tables and
the blending, the kernels run the MLPs.
"""

from __future__ import annotations

import torch

from . import registers_ops, scratch_ops
from .layout import block_layout
from .packs import EnsembleWeights, ExpressionWeights
from .settings import KernelOptions, get_options


def identity_mlps(
    table: torch.Tensor,
    delta: torch.Tensor,
    rows: torch.Tensor,
    types: torch.Tensor,
    pack: EnsembleWeights,
    options: KernelOptions | None = None,
) -> torch.Tensor:
    """Every pair through its type's MLP: ``f (P,)``.

    Args:
        table: ``(R, hidden)`` first-layer code part (with bias) per table row.
        delta: ``(P, query_dim)`` the pairs' query inputs (offsets from their anchors).
        rows: ``(P,)`` int32, the table row of each pair.
        types: ``(P,)`` int64, the MLP type of each pair (in ``[0, pack.n_types)``).
        pack: the MLP stack's weights.
        options: default: the options in force (:func:`nphmkit.kernels.get_options`).

    Differentiable w.r.t. ``table`` and ``delta`` (not the weights; no double backward).
    """
    options = options or get_options()
    if options.design == "registers":
        sorted_ids, block_type = block_layout(types, pack.n_types, options.block_m)
        return registers_ops.EnsembleChunked.apply(table, delta, rows, sorted_ids, block_type, pack, options)
    return scratch_ops.Ensemble.apply(table, delta, rows, types, pack, options)


def expression_kernel_runs(device: torch.device, options: KernelOptions | None = None) -> bool:
    """Whether :func:`expression_mlp` has a kernel for inputs on ``device`` under ``options``.

    The registers design's expression kernel fits an H100 only in TF32 and fp16 (sm_90 compiler:
    164 / 82 KiB of shared memory; tf32x3 needs 328 KiB of the 227, ieee compiles to FMA code
    spilling 149 KiB per thread, benchmarks/RESULTS.md): with ``expression="auto"`` it does not run
    on CUDA in the float32-accurate modes, and the caller runs its own dense path (cuBLAS). The
    interpreter always runs the kernel. ``expression="torch"``: never; ``"kernel"``: always.
    """
    options = options or get_options()
    if options.design == "scratch" or options.expression == "kernel":
        return True
    if options.expression == "torch":
        return False
    return not (torch.device(device).type == "cuda" and options.precision not in ("tf32", "fp16"))


def expression_mlp(
    first: torch.Tensor,
    skip: torch.Tensor,
    x: torch.Tensor,
    bidx: torch.Tensor,
    pack: ExpressionWeights,
    options: KernelOptions | None = None,
) -> torch.Tensor:
    """The expression MLP's output ``(P, out_dim)`` for points ``x (P, 3)`` of samples ``bidx (P,)``.

    ``first``, ``skip``: ``(B, hidden)`` per-sample parts of the first and the skip layer (the skip's
    already divided by sqrt(2), biases included). Differentiable w.r.t. ``first``, ``skip`` and ``x``.
    Raises ``ValueError`` where :func:`expression_kernel_runs` says no kernel runs.
    """
    options = options or get_options()
    if not expression_kernel_runs(x.device, options):
        raise ValueError(
            f"no expression kernel runs on {x.device} with design={options.design!r}, precision={options.precision!r}, "
            f"expression={options.expression!r}; check expression_kernel_runs() first"
        )
    if options.design == "registers":
        return registers_ops.ExpressionChunked.apply(first, skip, x, bidx, pack, options)
    return scratch_ops.Expression.apply(first, skip, x, bidx, pack, options)
