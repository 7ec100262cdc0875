"""How ``backend=`` names resolve (API.md, with the triton preference held back until the kernels win)."""

from __future__ import annotations

import pytest

from nphmkit import _backend
from nphmkit._backend import resolve_backend, set_default_backend


def test_auto_is_the_torch_path_on_cpu_and_cuda_while_the_kernels_are_slower(monkeypatch):
    monkeypatch.delenv("NPHMKIT_BACKEND", raising=False)
    assert not _backend.AUTO_PREFERS_TRITON
    for is_cuda in (False, True):
        assert resolve_backend("auto", is_cuda=is_cuda) == "torch"
    assert resolve_backend("auto", is_cuda=True, needs_double_backward=True) == "torch"


def test_explicit_names_and_overrides(monkeypatch):
    monkeypatch.delenv("NPHMKIT_BACKEND", raising=False)
    for name in ("reference", "torch", "triton"):
        assert resolve_backend(name, is_cuda=False) == name
    monkeypatch.setenv("NPHMKIT_BACKEND", "reference")
    assert resolve_backend("auto", is_cuda=True) == "reference"
    set_default_backend("triton")
    try:
        assert resolve_backend("auto", is_cuda=True) == "triton"  # the global setting beats the variable
    finally:
        set_default_backend(None)
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cuda", is_cuda=True)
    monkeypatch.setenv("NPHMKIT_BACKEND", "fast")
    with pytest.raises(ValueError, match="'fast'"):
        resolve_backend("auto", is_cuda=False)


def test_the_cuda_rule_of_api_md_when_turned_on(monkeypatch):
    monkeypatch.delenv("NPHMKIT_BACKEND", raising=False)
    monkeypatch.setattr(_backend, "AUTO_PREFERS_TRITON", True)
    monkeypatch.setattr(_backend, "_triton_kernels_present", lambda: True)
    monkeypatch.setattr("nphmkit._optional.available", lambda name: True)
    assert resolve_backend("auto", is_cuda=True) == "triton"
    assert resolve_backend("auto", is_cuda=True, needs_double_backward=True) == "torch"
    assert resolve_backend("auto", is_cuda=False) == "torch"
