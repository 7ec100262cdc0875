"""Backend names and how "auto" resolves (the rules are in docs/decoder.md).

``"reference"``: the plain oracle; ``"torch"``: the vectorized PyTorch path (CPU and CUDA);
``"triton"``: fused kernels (CUDA; CPU only under ``TRITON_INTERPRET=1``); ``"auto"``: the torch
path. The intended rule sends CUDA tensors to triton when it is importable and no double backward
is needed; that rule is held back (``AUTO_PREFERS_TRITON = False``) because on the H100 measured so
far (benchmarks/RESULTS.md) the kernels are 1.8-4x slower than the torch path on 2^16 points and
more. Opt in with ``set_default_backend("triton")`` or ``NPHMKIT_BACKEND=triton``.

The default for ``backend="auto"`` can be overridden globally with :func:`set_default_backend`
or the environment variable ``NPHMKIT_BACKEND``.
"""

from __future__ import annotations

import os

BACKENDS = ("auto", "reference", "torch", "triton")
# Turn on once the kernels beat the torch path on a GPU (benchmarks/bench_kernels.py).
AUTO_PREFERS_TRITON = False
_default: str | None = None


def set_default_backend(name: str | None) -> None:
    """Make ``backend="auto"`` mean ``name`` everywhere (``None`` restores the automatic rule)."""
    global _default
    if name is not None:
        check_backend(name)
    _default = name


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def resolve_backend(name: str, *, is_cuda: bool, needs_double_backward: bool = False) -> str:
    """Turn a requested backend into the one that runs: ``"reference" | "torch" | "triton"``."""
    check_backend(name)
    if name == "auto":
        override = _default or os.environ.get("NPHMKIT_BACKEND") or "auto"
        check_backend(override)
        name = override
    if name != "auto":
        return name
    if AUTO_PREFERS_TRITON and is_cuda and not needs_double_backward:
        from nphmkit import _optional

        if _optional.available("triton") and _triton_kernels_present():
            return "triton"
    return "torch"


def _triton_kernels_present() -> bool:
    try:
        from nphmkit.kernels import available  # noqa: PLC0415
    except ImportError:
        return False
    return bool(available())
