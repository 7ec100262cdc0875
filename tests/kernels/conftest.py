"""Kernel tests chunk queries by the model's ``config.chunk_size`` (small, odd values that put chunk
boundaries inside the inputs), not by the triton path's own larger default."""

import pytest


@pytest.fixture(autouse=True)
def _model_chunks():
    try:
        from nphmkit.kernels import ops
    except ImportError:  # no triton: the kernel tests skip
        yield
        return
    saved = ops.configure()
    ops.configure(chunk_points=0)
    yield
    ops.configure(**saved)
