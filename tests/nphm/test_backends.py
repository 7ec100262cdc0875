"""The vectorized "torch" path against the plain reference: values and gradients, odd sizes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nphmkit import NPHMConfig
from tests.helpers import assert_close
from tests.nphm.cases import make_inputs, make_model

sizes = st.tuples(st.integers(1, 3), st.integers(1, 45), st.integers(1, 17), st.integers(0, 10_000))


@given(sizes)
def test_sdf_canonical_identity_match_reference(case):
    batch, n_points, chunk, seed = case
    model = make_model(chunk_size=chunk, seed=seed % 7)
    x, z_id, z_ex = make_inputs(model, batch, n_points, seed)
    with torch.no_grad():
        assert_close(model.sdf(x, z_id, z_ex, backend="torch"), model.sdf(x, z_id, z_ex, backend="reference"), msg="sdf")
        assert_close(
            model.canonical(x, z_id, z_ex, backend="torch"),
            model.canonical(x, z_id, z_ex, backend="reference"),
            msg="canonical",
        )
        q = torch.cat([x, 0.05 * torch.randn(batch, n_points, 2)], dim=-1)
        assert_close(model.identity_sdf(q, z_id, backend="torch"), model.identity_sdf(q, z_id, backend="reference"))
        assert_close(model.sdf(x, z_id, None, backend="torch"), model.identity_sdf(x, z_id, backend="reference"))


@given(sizes, st.booleans())
def test_explicit_gradient_matches_autograd_reference(case, neutral):
    """The no-graph normal path (explicit backward) equals autograd through the reference."""
    batch, n_points, chunk, seed = case
    model = make_model(chunk_size=chunk, seed=seed % 5)
    x, z_id, z_ex = make_inputs(model, batch, n_points, seed)
    z_ex = None if neutral else z_ex
    sdf_ref, grad_ref = model.sdf_and_gradient(x, z_id, z_ex, backend="reference", create_graph=False)
    with torch.no_grad():
        sdf, grad = model.sdf_and_gradient(x, z_id, z_ex, backend="torch")
        _, normals = model.sdf_and_normals(x, z_id, z_ex, backend="torch")
    assert_close(sdf, sdf_ref)
    assert_close(grad, grad_ref, atol=3e-5)
    assert_close(normals, grad_ref / grad_ref.norm(dim=-1, keepdim=True), atol=1e-4)
    assert_close(normals.norm(dim=-1), torch.ones(batch, n_points), atol=1e-5)


@given(st.tuples(st.integers(1, 2), st.integers(1, 23), st.integers(0, 1000)))
def test_gradients_wrt_points_codes_and_weights_match_reference(case):
    batch, n_points, seed = case
    model = make_model(chunk_size=9, seed=seed % 3)
    x, z_id, z_ex = make_inputs(model, batch, n_points, seed)
    weights = torch.randn(batch, n_points, 1)
    grads = {}
    for backend in ("reference", "torch"):
        xs, zi, ze = (t.clone().requires_grad_(True) for t in (x, z_id, z_ex))
        model.zero_grad()
        loss = (model.sdf(xs, zi, ze, backend=backend) * weights).sum()
        loss.backward()
        grads[backend] = [xs.grad, zi.grad, ze.grad, model.ensemble.weights[1].grad, model.expression.layers[0].weight.grad]
    for name, a, b in zip(("points", "z_id", "z_ex", "ensemble w1", "expression w0"), grads["torch"], grads["reference"]):
        assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)


def test_double_backward_eikonal_matches_reference():
    """Eikonal loss: gradient of |grad sdf| w.r.t. codes and weights (double backward)."""
    model = make_model(chunk_size=8)
    x, z_id, z_ex = make_inputs(model, 2, 19, seed=3)
    out = {}
    for backend in ("reference", "torch"):
        zi = z_id.clone().requires_grad_(True)
        model.zero_grad()
        _, grad = model.sdf_and_gradient(x, zi, z_ex, backend=backend, create_graph=True)
        ((grad.norm(dim=-1) - 1) ** 2).mean().backward()
        out[backend] = (zi.grad, model.ensemble.weights[0].grad.clone())
    assert_close(out["torch"][0], out["reference"][0], atol=1e-5, rtol=1e-4)
    assert_close(out["torch"][1], out["reference"][1], atol=1e-5, rtol=1e-4)
    assert out["torch"][0].abs().sum() > 0


def test_gradcheck_float64_both_backends():
    model = make_model(chunk_size=5, dtype=torch.float64)
    x, z_id, z_ex = make_inputs(model, 1, 6, seed=1, dtype=torch.float64)
    for backend in ("reference", "torch"):
        inputs = tuple(t.clone().requires_grad_(True) for t in (x, z_id[:, :80].contiguous(), z_ex))

        def full(pts, zi_head, ze, backend=backend):
            return model.sdf(pts, torch.cat([zi_head, z_id[:, 80:]], 1), ze, backend=backend)

        assert torch.autograd.gradcheck(full, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_points", [1, 37])
def test_official_sizes_match_reference(n_points):
    model = make_model(NPHMConfig.mononphm(), chunk_size=16)
    x, z_id, z_ex = make_inputs(model, 2, n_points, seed=n_points)
    with torch.no_grad():
        assert_close(model.sdf(x, z_id, z_ex, backend="torch"), model.sdf(x, z_id, z_ex, backend="reference"))
        _, grad = model.sdf_and_gradient(x, z_id, z_ex, backend="torch")
    _, grad_ref = model.sdf_and_gradient(x, z_id, z_ex, backend="reference", create_graph=False)
    assert_close(grad, grad_ref, atol=3e-5)


def test_empty_point_set():
    model = make_model()
    x, z_id, z_ex = make_inputs(model, 2, 0)
    for backend in ("reference", "torch"):
        with torch.no_grad():
            assert model.sdf(x, z_id, z_ex, backend=backend).shape == (2, 0, 1)
    with torch.no_grad():
        sdf, normals = model.sdf_and_normals(x, z_id, z_ex)
    assert sdf.shape == (2, 0, 1) and normals.shape == (2, 0, 3)


def test_field_matches_sdf_and_carries_code_gradients():
    model = make_model()
    x, z_id, z_ex = make_inputs(model, 2, 11)
    zi = z_id.clone().requires_grad_(True)
    field = model.field(zi, z_ex)
    values = field(x)
    assert values.shape == (2, 11)
    assert_close(values.detach(), model.sdf(x, z_id, z_ex)[..., 0].detach())
    values.sum().backward()
    assert zi.grad is not None and zi.grad.abs().sum() > 0


def test_chunking_bounds_do_not_change_results():
    model = make_model(chunk_size=3)
    x, z_id, z_ex = make_inputs(model, 2, 20)
    with torch.no_grad():
        a = model.sdf(x, z_id, z_ex, backend="torch")
        model.config = NPHMConfig.tiny()  # default chunk size: one chunk
        b = model.sdf(x, z_id, z_ex, backend="torch")
    assert_close(a, b)


@given(st.integers(0, 300), st.sampled_from([1, 36, 256, 257, 40_000, 70_000]), st.integers(0, 10_000))
def test_order_by_type_is_a_stable_sort_in_any_key_width(n, n_types, seed):
    from nphmkit._grouping import order_by_type

    g = torch.Generator().manual_seed(seed)
    types = torch.randint(0, n_types, (n,), generator=g)
    types[: n // 3] = n_types - 1  # the widest key, repeated: stability matters
    order = order_by_type(types, n_types)
    assert order.dtype == torch.int64
    assert torch.equal(order, torch.argsort(types, stable=True))


def test_field_reuses_its_constants_only_while_codes_and_weights_are_unchanged():
    """No-graph field calls cache the per-code constants; in-place edits of codes or weights refresh them."""
    model = make_model()
    x, z_id, z_ex = make_inputs(model, 2, 13)
    field = model.field(z_id, z_ex)
    with torch.no_grad():
        assert_close(field(x), model.sdf(x, z_id, z_ex, backend="reference")[..., 0])
        assert field._prep is not None
        z_id.add_(0.05)  # the optimizer's in-place step
        assert_close(field(x), model.sdf(x, z_id, z_ex, backend="reference")[..., 0], msg="codes changed")
        z_ex.mul_(-1.0)
        assert_close(field(x), model.sdf(x, z_id, z_ex, backend="reference")[..., 0], msg="expression changed")
        model.ensemble.biases[0].add_(0.1)
        model.anchor_mlp.layers[-1].bias.add_(0.02)
        assert_close(field(x), model.sdf(x, z_id, z_ex, backend="reference")[..., 0], msg="weights changed")
    model.double()  # new storage for every weight
    xd, zid, zex = x.double(), z_id.double(), z_ex.double()
    field = model.field(zid, zex)
    with torch.no_grad():
        assert_close(field(xd), model.sdf(xd, zid, zex, backend="reference")[..., 0], msg="float64")
