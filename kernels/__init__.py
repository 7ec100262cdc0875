"""Fused SDF-query kernels (Triton), shipped as ``nphmkit.kernels``.

Importing this package imports nothing heavy; triton is imported on first use and a failure is
cached. ``available()`` says whether the kernels can run here (triton importable, and a CUDA
GPU or ``TRITON_INTERPRET=1`` for the CPU interpreter); ``require_kernels()`` raises a clear
error when not. ``set_precision("tf32")`` switches the products to TF32 (``"ieee"``: exact fp32; ``"tf32x3"``:
fp32 emulated on tensor cores; ``"fp16"``: float16 operands, registers design only).
"""

from __future__ import annotations

import os

_state: dict = {"checked": False, "error": None}


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


def set_precision(mode: str) -> None:
    """``"ieee"`` (exact float32, default), ``"tf32x3"``, ``"tf32"`` or ``"fp16"`` products in the kernels
    (``ops.set_precision``)."""
    require_kernels()
    from nphmkit.kernels import ops

    ops.set_precision(mode)
