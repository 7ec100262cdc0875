"""Assertion helpers that report how far apart two tensors are."""

from __future__ import annotations

import torch

# tolerances per dtype, in one place
ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float | None = None, rtol: float = 0.0, msg: str = ""):
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise; report max abs/rel errors."""
    actual = torch.as_tensor(actual).detach()
    expected = torch.as_tensor(expected).detach().to(actual.dtype)
    assert actual.shape == expected.shape, f"{msg} shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    if atol is None:
        atol = ATOL.get(actual.dtype, 1e-5)
    diff = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    if not bool((diff <= bound).all()) or not bool(torch.isfinite(actual).all() == torch.isfinite(expected).all()):
        rel = diff / expected.abs().clamp_min(1e-12)
        raise AssertionError(
            f"{msg} not close: max abs err {diff.max().item():.3e} (atol {atol:.1e}), max rel err "
            f"{rel.max().item():.3e}, at index {tuple(int(i) for i in torch.nonzero(diff > bound)[0])}"
        )
