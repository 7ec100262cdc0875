"""Rows grouped by MLP type in fixed-size blocks (the fused mixture-of-experts layout), without a host sync.

Torch only (no triton), shared by both kernel designs.
"""

from __future__ import annotations

import torch

from nphmkit._grouping import order_by_type


def block_layout(types: torch.Tensor, n_types: int, bm: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``types (N,)`` grouped by type in blocks of ``bm`` rows.

    Returns ``sorted_ids (n_blocks * bm,)`` int32 (row ids, -1 for padding) and ``block_type
    (n_blocks,)`` int32 (-1 for unused blocks), with ``n_blocks = ceil(N / bm) + n_types`` (an upper
    bound, so that the host never has to learn the real count).
    """
    n = types.numel()
    dev = types.device
    counts = torch.zeros(n_types, dtype=torch.long, device=dev).index_add_(0, types, torch.ones_like(types))  # no sync
    blocks = (counts + bm - 1) // bm
    first_block = torch.cumsum(blocks, 0) - blocks
    type_start = torch.cumsum(counts, 0) - counts
    order = order_by_type(types, n_types)
    sorted_types = types[order]
    pos = torch.arange(n, device=dev) - type_start[sorted_types]
    slot = first_block[sorted_types] * bm + pos
    n_blocks = (n + bm - 1) // bm + n_types
    sorted_ids = torch.full((n_blocks * bm,), -1, dtype=torch.int32, device=dev)
    sorted_ids[slot] = order.to(torch.int32)
    # block b belongs to the first type whose blocks end after b (searchsorted: no host sync, unlike
    # repeat_interleave, whose output size the host must learn); past the last type's blocks: -1
    owner = torch.searchsorted(torch.cumsum(blocks, 0), torch.arange(n_blocks, device=dev), right=True)
    block_type = torch.where(owner < n_types, owner, -1).to(torch.int32)
    return sorted_ids, block_type
