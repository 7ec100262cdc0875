"""Fused SDF-query kernels (Triton), shipped as ``nphmkit.kernels``.

Importing this package imports nothing heavy; triton is imported on first use. ``available()``
says whether the kernels can run here; ``require_kernels()`` raises a clear error when not.
"""

from __future__ import annotations


def available() -> bool:
    """Whether the Triton kernels can be used in this process (never imports triton itself)."""
    return False


def require_kernels() -> None:
    """Raise an error explaining why ``backend="triton"`` cannot run."""
    raise NotImplementedError(
        "backend='triton': the fused Triton SDF kernels are not part of this nphmkit version yet; "
        "use backend='torch' (the vectorized PyTorch path) or backend='auto'"
    )
