"""Fused SDF-query kernels (Triton), shipped as ``nphmkit.kernels``.

The kernels take tensors and weight packs (:class:`EnsembleWeights`, :class:`ExpressionWeights`),
never a model: the NPHM decoder (``backend="triton"``) builds the packs and decides when they run.

Importing this package imports nothing heavy; triton is imported on first use and a failure is
cached. ``available()`` says whether the kernels can run here (triton importable, and a CUDA
GPU or ``TRITON_INTERPRET=1`` for the CPU interpreter); ``require_kernels()`` raises a clear
error when not.

Settings are one frozen :class:`KernelOptions` (design, precision, launch shape, chunk), set
globally with :func:`set_options` or for a block with :func:`options`::

    with nphmkit.kernels.options(precision="tf32"):
        model.sdf(x, z_id, z_ex, backend="triton")

Entry points (import triton when first called): ``identity_mlps``, ``expression_mlp``,
``expression_kernel_runs`` (:mod:`nphmkit.kernels.dispatch`).
"""

from __future__ import annotations

import os

from .packs import EnsembleWeights, ExpressionWeights
from .settings import DESIGNS, PRECISIONS, KernelOptions, get_options, options, set_options

__all__ = [
    "DESIGNS", "PRECISIONS", "EnsembleWeights", "ExpressionWeights", "KernelOptions", "available",
    "expression_kernel_runs", "expression_mlp", "get_options", "identity_mlps", "options", "require_kernels",
    "set_options",
]
_state: dict = {"checked": False, "error": None}
_ENTRY_POINTS = ("identity_mlps", "expression_mlp", "expression_kernel_runs")


def _check() -> str | None:
    if not _state["checked"]:
        _state["checked"] = True
        try:
            import triton  # noqa: F401
        except ImportError:
            _state["error"] = (
                "backend='triton' needs the optional package 'triton'; install it with: pip install 'nphmkit[triton]'"
            )
            return _state["error"]
    if _state["error"]:
        return _state["error"]
    import torch

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return "backend='triton' needs a CUDA GPU (or TRITON_INTERPRET=1 to run the kernels on the CPU interpreter)"
    return None


def available() -> bool:
    """Whether the Triton kernels can be used in this process."""
    return _check() is None


def require_kernels() -> None:
    """Raise an error explaining why ``backend="triton"`` cannot run (no-op when it can)."""
    err = _check()
    if err is not None:
        raise ImportError(err) if "install" in err else RuntimeError(err)


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        require_kernels()
        from . import dispatch

        return getattr(dispatch, name)
    raise AttributeError(f"module 'nphmkit.kernels' has no attribute {name!r}")
