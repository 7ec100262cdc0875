"""The tiled identity path (one batched matmul per layer) and the per-type loop, both against the reference."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nphmkit import NPHMConfig
from nphmkit._grouping import order_by_type, tile_layout
from nphmkit.nphm import vectorized
from tests.helpers import assert_close
from tests.nphm.cases import make_inputs, make_model


@given(st.integers(0, 300), st.sampled_from([1, 2, 7, 36]), st.integers(1, 70), st.integers(0, 10_000))
def test_tile_layout_holds_every_row_once_in_tiles_of_one_type(n, n_types, tile, seed):
    g = torch.Generator().manual_seed(seed)
    types = torch.randint(0, n_types, (n,), generator=g)
    src, dest, tile_type = tile_layout(types, order_by_type(types, n_types), n_types, tile)
    counts = torch.bincount(types, minlength=n_types)
    assert tile_type.numel() == int(((counts + tile - 1) // tile).sum())  # no spare tiles
    assert src.numel() == tile * tile_type.numel()
    assert torch.equal(src[dest], torch.arange(n))  # each row sits where dest says
    assert int((src == n).sum()) == src.numel() - n  # the rest is padding
    held = src < n
    assert torch.equal(types[src[held]], tile_type.repeat_interleave(tile)[held])  # one type per tile
    sorted_slots = dest[torch.argsort(types, stable=True)]
    assert torch.all(torch.diff(sorted_slots) > 0)  # in type order, stable within a type


def _flat_queries(model, batch, n_points, seed):
    x, z_id, _ = make_inputs(model, batch, n_points, seed)
    g = torch.Generator().manual_seed(seed + 1)
    q = torch.cat([x, 0.05 * torch.randn(batch, n_points, model.config.n_hyper, generator=g)], dim=-1)
    return q, z_id


@given(st.integers(1, 3), st.integers(1, 60), st.sampled_from([None, 1, 5, 16, 64]), st.integers(0, 10_000))
def test_tiled_and_loop_match_reference_values_and_gradients(batch, n_points, tile, seed):
    model = make_model(seed=seed % 5)
    q, z_id = _flat_queries(model, batch, n_points, seed)
    bidx = torch.arange(batch).repeat_interleave(n_points)
    weights = torch.randn(batch * n_points, generator=torch.Generator().manual_seed(seed))
    out = {}
    for path in ("reference", "loop", "tiled"):
        qs, zi = q.clone().requires_grad_(True), z_id.clone().requires_grad_(True)
        model.zero_grad()
        if path == "reference":
            f = model.identity_sdf(qs, zi, backend="reference").reshape(-1)
        else:
            prep = vectorized.prepare_identity(model, zi)
            flat = qs.reshape(-1, qs.shape[-1])
            f = (vectorized.identity_chunk(model, prep, flat, bidx, tiled=False) if path == "loop"
                 else vectorized.identity_chunk_tiled(model, prep, flat, bidx, tile=tile))
        (f * weights).sum().backward()
        out[path] = (f.detach(), qs.grad, zi.grad, model.ensemble.weights[0].grad.clone(),
                     model.ensemble.biases[2].grad.clone())
    for path in ("loop", "tiled"):
        for name, a, b in zip(("sdf", "points", "z_id", "weights[0]", "biases[2]"), out[path], out["reference"]):
            assert_close(a, b, atol=2e-5, rtol=1e-4, msg=f"{path}: {name}")


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["loop", "tiled"])
def test_model_queries_match_reference_on_either_path(threshold):
    """sdf, explicit gradients and the eikonal double backward, with every chunk on one path."""
    model = make_model(NPHMConfig.mononphm(), chunk_size=16)
    x, z_id, z_ex = make_inputs(model, 2, 37, seed=4)
    with mock.patch.object(vectorized, "TILED_MAX_POINTS", threshold), \
            mock.patch.object(vectorized, "TILED_MAX_POINTS_GRAPH", threshold):  # the eikonal graph too
        out = {}
        for backend in ("reference", "torch"):
            zi = z_id.clone().requires_grad_(True)
            model.zero_grad()
            sdf, grad = model.sdf_and_gradient(x, zi, z_ex, backend=backend, create_graph=True)
            ((grad.norm(dim=-1) - 1) ** 2).mean().backward()
            out[backend] = (sdf.detach(), grad.detach(), zi.grad, model.ensemble.weights[1].grad.clone())
    for name, a, b in zip(("sdf", "gradient", "eikonal d z_id", "eikonal d weights[1]"), out["torch"], out["reference"]):
        assert_close(a, b, atol=3e-5, rtol=1e-4, msg=name)


def test_default_path_switches_at_the_threshold():
    model = make_model()
    q, z_id = _flat_queries(model, 1, vectorized.TILED_MAX_POINTS + 1, seed=0)
    prep = vectorized.prepare_identity(model, z_id)
    calls = []
    real = vectorized.identity_chunk_tiled
    with mock.patch.object(vectorized, "identity_chunk_tiled", lambda *a, **k: calls.append(1) or real(*a, **k)):
        with torch.no_grad():
            vectorized.identity_chunk(model, prep, q[0, :-1], torch.zeros(q.shape[1] - 1, dtype=torch.long))
            assert calls == [1]
            vectorized.identity_chunk(model, prep, q[0], torch.zeros(q.shape[1], dtype=torch.long))
        assert calls == [1]  # one point past the threshold: the per-type loop
        flat = q[0].clone().requires_grad_(True)  # with a graph the bound is TILED_MAX_POINTS_GRAPH
        vectorized.identity_chunk(model, prep, flat, torch.zeros(flat.shape[0], dtype=torch.long))
        assert len(calls) == (2 if flat.shape[0] <= vectorized.TILED_MAX_POINTS_GRAPH else 1)


def test_wide_models_keep_the_loop_where_gathered_weights_would_be_large():
    """Official sizes (hidden 200): small chunks tile, a 2,000-point graph chunk stays on the loop."""
    model = make_model(NPHMConfig.mononphm())
    q, z_id = _flat_queries(model, 1, 2000, seed=1)
    prep = vectorized.prepare_identity(model, z_id)
    assert vectorized._tiled_weight_floats(model, 2000) > vectorized.TILED_MAX_WEIGHT_FLOATS
    assert vectorized._tiled_weight_floats(model, 64) <= vectorized.TILED_MAX_WEIGHT_FLOATS
    calls = []
    real = vectorized.identity_chunk_tiled
    with mock.patch.object(vectorized, "identity_chunk_tiled", lambda *a, **k: calls.append(a[2].shape[0]) or real(*a, **k)):
        flat = q[0].clone().requires_grad_(True)
        vectorized.identity_chunk(model, prep, flat, torch.zeros(2000, dtype=torch.long))
        vectorized.identity_chunk(model, prep, flat[:64], torch.zeros(64, dtype=torch.long))
    assert calls == [64]
