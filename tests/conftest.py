"""Shared test settings: few threads, quick hypothesis profiles, deterministic seeds."""

import os

# Triton kernels run on the CPU interpreter when there is no GPU (must be set before triton is imported)
try:
    import torch as _torch

    if not _torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover
    pass

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=12, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


_INTERPRETER_FILES = ("test_triton.py", "test_registers.py")


def pytest_collection_modifyitems(config, items):
    """Without a GPU the Triton kernels run on the CPU interpreter: mark those tests (``make test-fast`` skips them)."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.path.name in _INTERPRETER_FILES and item.path.parent.name == "kernels":
            item.add_marker(pytest.mark.interpreter)
