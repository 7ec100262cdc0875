"""Comparisons of the Triton kernels with the reference, shared by the kernel tests."""

from __future__ import annotations

import torch

from tests.helpers import assert_close


def assert_queries_match(model, x, z_id, z_ex, q) -> None:
    """``sdf``, ``canonical`` (points ``x (B, N, 3)``) and ``identity_sdf`` (queries ``q (B, N, 5)``)."""
    with torch.no_grad():
        for name, run in (
            ("sdf", lambda backend: model.sdf(x, z_id, z_ex, backend=backend)),
            ("canonical", lambda backend: model.canonical(x, z_id, z_ex, backend=backend)),
            ("identity_sdf", lambda backend: model.identity_sdf(q, z_id, backend=backend)),
        ):
            assert_close(run("triton"), run("reference"), msg=name)


def assert_gradients_match(model, x, z_id, z_ex, weights) -> None:
    """Gradients of ``(sdf * weights).sum()`` w.r.t. the points and both codes."""
    grads = {}
    for backend in ("triton", "reference"):
        xs, zi, ze = (t.clone().requires_grad_(True) for t in (x, z_id, z_ex))
        (model.sdf(xs, zi, ze, backend=backend) * weights).sum().backward()
        grads[backend] = (xs.grad, zi.grad, ze.grad)
    for name, a, b in zip(("points", "z_id", "z_ex"), grads["triton"], grads["reference"]):
        assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
