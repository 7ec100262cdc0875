"""The Triton kernels against the reference: values and gradients (CPU interpreter in CI, GPU when present)."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit import NPHMConfig
from tests.helpers import assert_close
from tests.kernels.compare import assert_gradients_match, assert_queries_match
from tests.nphm.cases import make_inputs, make_model

pytest.importorskip("triton")
from nphmkit.kernels import available  # noqa: E402

pytestmark = pytest.mark.skipif(not available(), reason="triton kernels need a GPU or TRITON_INTERPRET=1")
# the interpreter runs on CPU tensors; a real GPU needs CUDA tensors
DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available() else "cuda"


def _frozen(config, seed=0, chunk=40):
    return make_model(config, seed=seed, chunk_size=chunk).requires_grad_(False).to(DEVICE)


def _inputs(model, batch, n, seed=0):
    return tuple(t.to(DEVICE) for t in make_inputs(model, batch, n, seed))


@settings(max_examples=4)
@given(st.integers(1, 2), st.integers(1, 37), st.integers(0, 999))
def test_values_match_reference(batch, n_points, seed):
    model = _frozen(NPHMConfig.tiny(), seed % 5, chunk=23)
    x, z_id, z_ex = _inputs(model, batch, n_points, seed)
    q = torch.cat([x, 0.05 * torch.randn(batch, n_points, 2, device=DEVICE)], dim=-1)
    assert_queries_match(model, x, z_id, z_ex, q)


@pytest.mark.parametrize("config", [NPHMConfig.tiny(), NPHMConfig.small()], ids=["tiny", "small"])
def test_gradients_wrt_points_and_codes_match_reference(config):
    model = _frozen(config, chunk=30)
    x, z_id, z_ex = _inputs(model, 2, 21, seed=3)
    assert_gradients_match(model, x, z_id, z_ex, torch.randn(2, 21, 1, device=DEVICE))
    # normals through the backward kernels
    _, n_tri = model.sdf_and_normals(x, z_id, z_ex, backend="triton", create_graph=False)
    _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="reference", create_graph=False)
    assert_close(n_tri, n_ref, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 300), st.integers(1, 9), st.sampled_from([16, 32]), st.integers(0, 999))
def test_block_layout_holds_every_row_once_in_single_type_blocks(n, n_types, bm, seed):
    from nphmkit.kernels.layout import block_layout

    g = torch.Generator().manual_seed(seed)
    types = torch.randint(0, n_types, (n,), generator=g)
    types[types == n_types // 2] = 0  # a type with no rows: it owns no block
    types[: n // 3] = n_types - 1
    sorted_ids, block_type = block_layout(types, n_types, bm=bm)
    n_blocks = (n + bm - 1) // bm + n_types
    assert sorted_ids.shape == (n_blocks * bm,) and block_type.shape == (n_blocks,)
    ids = sorted_ids[sorted_ids >= 0].long()
    assert torch.equal(ids.sort().values, torch.arange(n))
    blocks = sorted_ids.view(-1, bm)
    owners = block_type.tolist()
    used = [t for t in owners if t >= 0]
    assert owners == used + [-1] * (n_blocks - len(used))  # used blocks first, by type
    assert used == sorted(used)
    counts = torch.bincount(types, minlength=n_types)
    assert used == [t for t in range(n_types) for _ in range((int(counts[t]) + bm - 1) // bm)]
    for b, t in enumerate(owners):
        rows = blocks[b][blocks[b] >= 0].long()
        if t < 0:
            assert rows.numel() == 0
        else:
            assert rows.numel() > 0 and bool((types[rows] == t).all())
            assert torch.equal(rows, rows.sort().values)  # stable: original order within a type


def test_routing_rules():
    model = make_model(NPHMConfig.tiny()).to(DEVICE)  # weights require grad
    x, z_id, z_ex = _inputs(model, 1, 5)
    with pytest.raises(ValueError, match="gradients w.r.t. the weights"):
        model.sdf(x, z_id, z_ex, backend="triton")
    with torch.no_grad():
        model.sdf(x, z_id, z_ex, backend="triton")  # no graph: fine
    frozen = _frozen(NPHMConfig.tiny())
    with pytest.raises(ValueError, match="double backward"):
        frozen.sdf_and_gradient(x, z_id.requires_grad_(True), z_ex, backend="triton", create_graph=True)


def test_other_dtypes_are_refused_by_triton_and_routed_to_torch_by_auto():
    from nphmkit import set_default_backend

    model = _frozen(NPHMConfig.tiny()).double()
    x, z_id, z_ex = (t.double() for t in _inputs(model, 1, 7))
    with pytest.raises(ValueError, match=r"float32, got a model and points of torch.float64"):
        model.sdf(x, z_id, z_ex, backend="triton")
    with pytest.raises(ValueError, match="float32"):
        model.sdf_and_normals(x, z_id, z_ex, backend="triton")
    set_default_backend("triton")  # "auto" now means triton, except where it cannot run
    try:
        out = model.sdf(x, z_id, z_ex)
    finally:
        set_default_backend(None)
    assert out.dtype == torch.float64
    assert_close(out, model.sdf(x, z_id, z_ex, backend="reference"), atol=1e-10)


class _Spy:
    """Stands in for a Triton kernel: records each launch's keyword arguments, then launches it."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(kwargs)
            return self.kernel[grid](*args, **kwargs)

        return launch


def test_scratch_backward_runs_with_the_forward_setting(monkeypatch):
    """Changing the precision or tiles between a forward and its backward does not mix settings."""
    from nphmkit import kernels
    from nphmkit.kernels import scratch_ops

    spies = {name: _Spy(getattr(scratch_ops, name)) for name in ("ensemble_backward_kernel", "expression_backward_kernel")}
    for name, spy in spies.items():
        monkeypatch.setattr(scratch_ops, name, spy)
    model = _frozen(NPHMConfig.tiny())
    x, z_id, z_ex = _inputs(model, 1, 9)
    xs = x.clone().requires_grad_(True)
    with kernels.options(design="scratch", block_m=32, tile=16, num_warps=2):
        out = model.sdf(xs, z_id, z_ex, backend="triton")
    with kernels.options(block_m=64, tile=32, num_warps=4, precision="tf32"):
        out.sum().backward()
    for spy in spies.values():
        (kw,) = spy.launches
        assert (kw["PRECISION"], kw["BN"], kw["BK"], kw["num_warps"]) == ("ieee", 16, 16, 2)
    assert spies["expression_backward_kernel"].launches[0]["BM"] == 32
    xr = x.clone().requires_grad_(True)
    model.sdf(xr, z_id, z_ex, backend="reference").sum().backward()
    assert_close(xs.grad, xr.grad, atol=2e-5)


def test_tf32_mode_stays_within_its_documented_tolerance():
    from nphmkit import kernels

    model = _frozen(NPHMConfig.small())
    x, z_id, z_ex = _inputs(model, 1, 19)
    with kernels.options(precision="tf32"), torch.no_grad():
        out = model.sdf(x, z_id, z_ex, backend="triton")
    assert kernels.get_options().precision == "ieee"  # restored after the block
    with torch.no_grad():
        ref = model.sdf(x, z_id, z_ex, backend="reference")
    assert_close(out, ref, atol=2e-3, rtol=1e-2)  # TF32: 10-bit mantissa products (exact on the interpreter)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("design", "precision"), [("scratch", "ieee"), ("registers", "tf32x3"), ("registers", "fp16")])
def test_official_sizes_on_gpu(design, precision):
    from nphmkit import kernels

    # the registers design in tf32x3 (its ieee kernels compile to spilling FMA code for minutes): three
    # TF32 products hold float32 accuracy; fp16 within its documented tolerance (docs/kernels.md)
    model = _frozen(NPHMConfig.mononphm(), chunk=4096).cuda()
    x, z_id, z_ex = (t.cuda() for t in make_inputs(model, 2, 5000))
    with kernels.options(design=design, precision=precision):
        with torch.no_grad():
            got = model.sdf(x, z_id, z_ex, backend="triton")
        _, n_tri = model.sdf_and_normals(x, z_id, z_ex, backend="triton")
    fp16 = precision == "fp16"
    with torch.no_grad():
        assert_close(got, model.sdf(x, z_id, z_ex, backend="torch"), atol=2e-4 if fp16 else 1e-5)
    _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="torch")
    assert_close(n_tri, n_ref, atol=2e-2 if fp16 else 1e-4)  # scratch design on an H100: 4e-7 relative


def test_other_launch_shapes_match_reference():
    from nphmkit import kernels

    model = _frozen(NPHMConfig.small(), seed=1, chunk=50)
    x, z_id, z_ex = _inputs(model, 2, 29, seed=5)
    for block_m, tile in ((16, 64), (64, 32)):
        with kernels.options(block_m=block_m, tile=tile):
            with torch.no_grad():
                got = model.sdf(x, z_id, z_ex, backend="triton")
            _, n_got = model.sdf_and_normals(x, z_id, z_ex, backend="triton")
        with torch.no_grad():
            assert_close(got, model.sdf(x, z_id, z_ex, backend="reference"), msg=f"block_m={block_m}")
        _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="reference")
        assert_close(n_got, n_ref, atol=1e-4, msg=f"normals, block_m={block_m}")


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    model = _frozen(NPHMConfig.tiny()).cpu()
    x, z_id, z_ex = make_inputs(model, 1, 5)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"), torch.no_grad():
        model.sdf(x, z_id, z_ex, backend="triton")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("design", ["scratch", "registers"])
def test_chunk_queries_do_not_synchronize_with_the_host(design):
    """The per-chunk work (neighbours, block layout, kernels) queues on the GPU without waiting for it."""
    from nphmkit import kernels
    from nphmkit.nphm import fused, reference, vectorized

    model = _frozen(NPHMConfig.small()).cuda()
    x, z_id, z_ex = (t.cuda() for t in make_inputs(model, 2, 300))
    anc = reference.anchors(model, z_id)
    id_prep, ex_prep = vectorized.prepare_identity(model, z_id, anc), vectorized.prepare_expression(model, z_id, z_ex, anc)
    flat = x.reshape(-1, 3)
    bidx = torch.arange(2, device="cuda").repeat_interleave(300)
    with kernels.options(design=design, precision="tf32"), torch.no_grad():
        d = fused.expression_chunk(model, ex_prep, flat, bidx)  # warm: compiled, weight layouts built
        fused.identity_chunk(model, id_prep, torch.cat([flat + d[:, :3], d[:, 3:]], -1), bidx)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            d = fused.expression_chunk(model, ex_prep, flat, bidx)
            fused.identity_chunk(model, id_prep, torch.cat([flat + d[:, :3], d[:, 3:]], -1), bidx)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_triton_queries_chunk_by_their_own_setting(monkeypatch):
    """``chunk_points`` sets the triton path's chunk (0: the model's chunk_size); results agree."""
    from nphmkit import kernels
    from nphmkit.nphm import fused

    sizes = []
    real = fused.identity_chunk

    def spy(model, prep, q, b):
        sizes.append(q.shape[0])
        return real(model, prep, q, b)

    monkeypatch.setattr(fused, "identity_chunk", spy)
    model = _frozen(NPHMConfig.tiny(), chunk=40)
    x, z_id, z_ex = _inputs(model, 2, 50)
    got = {}
    for points in (0, 32, 1 << 16):
        with kernels.options(chunk_points=points):
            sizes.clear()
            with torch.no_grad():
                got[points] = model.sdf(x, z_id, z_ex, backend="triton")
            assert sizes == {0: [40, 40, 20], 32: [32, 32, 32, 4], 1 << 16: [100]}[points]
            sizes.clear()
            _, normals = model.sdf_and_normals(x, z_id, z_ex, backend="triton")
            assert sizes == {0: [40, 40, 20], 32: [32] * 3 + [4], 1 << 16: [100]}[points]  # (chunk // 2) per sample
    assert_close(got[32], got[0])
    assert_close(got[1 << 16], got[0])
