"""Grouping rows by type (the sort under every grouped-MLP path: vectorized torch and fused kernels)."""

from __future__ import annotations

import torch


def order_by_type(types: torch.Tensor, n_types: int) -> torch.Tensor:
    """Stable permutation ``(N,)`` (int64) that sorts ``types (N,)`` (integers in ``[0, n_types)``).

    The keys are sorted in the narrowest integer dtype that holds them: a radix sort (CUDA) makes
    one pass per key byte, so 36 types sort in 1 pass instead of the 8 an int64 key takes (and
    about 4x faster on the CPU too).
    """
    key = types.to(torch.uint8 if n_types <= 256 else torch.int16 if n_types <= 1 << 15 else torch.int32)
    return torch.argsort(key, stable=True)
