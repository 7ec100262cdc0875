"""Kernel tests chunk queries by the model's ``config.chunk_size`` (small, odd values that put chunk
boundaries inside the inputs), not by the triton path's own larger default."""

import pytest


@pytest.fixture(autouse=True)
def _model_chunks():
    from nphmkit import kernels

    with kernels.options(chunk_points=0):
        yield
