"""The "registers" kernel design (activations on chip in power-of-two chunks) against the reference."""

from __future__ import annotations

import os
import re

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
DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available() else "cuda"
# widths that need two (40 -> 32 + 16) and three (100 -> 64 + 32 + 16) chunks
ODD = NPHMConfig(id_hidden=40, id_layers=3, pos_mlp_hidden=16, ex_hidden=100, ex_layers=4)


def _design(**launch):
    """The registers design (small blocks) inside a ``with`` block, the previous options restored after."""
    from nphmkit import kernels

    return kernels.options(design="registers", **{"block_m": 16, "block_m_expression": 16, "chunk_points": 0, **launch})


@pytest.fixture
def registers():
    with _design() as options:
        yield options


@given(st.integers(1, 1000), st.sampled_from([16, 64, 128, 256]))
def test_chunk_widths_are_at_most_four_powers_of_two_covering_the_width(n, max_chunk):
    from nphmkit.kernels.registers_ops import chunk_widths

    *chunks, nc, p = chunk_widths(n, max_chunk)
    real = chunks[:nc]
    assert 1 <= nc <= 4 and sum(real) == p and p >= n and p % 16 == 0
    assert all(c >= 16 and c & (c - 1) == 0 for c in chunks)
    assert real == sorted(real, reverse=True)  # largest first
    assert all(c <= max_chunk for c in real) or n > 4 * max_chunk
    assert p - n < max(16, n // 4)  # padding stays small
    assert chunk_widths(200) == (128, 64, 16, 16, 3, 208)
    assert chunk_widths(400) == (128, 128, 128, 16, 4, 400)
    with pytest.raises(ValueError, match="max_chunk: expected a power of two >= 16, got 48"):
        chunk_widths(100, 48)


def _model(config, seed=0, chunk=37):
    return make_model(config, seed=seed, chunk_size=chunk).requires_grad_(False).to(DEVICE)


@pytest.mark.parametrize("max_chunk", [32, 128])
@settings(max_examples=2, deadline=None)
@given(st.integers(1, 2), st.integers(1, 29), st.integers(0, 999), st.sampled_from([16, 32]))
def test_values_and_gradients_match_reference(max_chunk, batch, n_points, seed, block_m):
    # max_chunk 32: the expression width 100 takes four chunks (3 x 32 + 16)
    with _design(block_m=block_m, block_m_expression=48 - block_m, max_chunk=max_chunk):
        _compare_with_reference(batch, n_points, seed)


def _compare_with_reference(batch, n_points, seed):
    model = _model(ODD, seed % 3)
    x, z_id, z_ex = (t.to(DEVICE) for t in make_inputs(model, batch, n_points, seed))
    q = torch.cat([x, 0.05 * torch.randn(batch, n_points, 2, device=DEVICE)], dim=-1)
    assert_queries_match(model, x, z_id, z_ex, q)
    assert_gradients_match(model, x, z_id, z_ex, torch.randn(batch, n_points, 1, device=DEVICE))


def test_normals_and_point_only_gradients(registers):
    model = _model(NPHMConfig.tiny(), chunk=23)
    x, z_id, z_ex = (t.to(DEVICE) for t in make_inputs(model, 2, 31, seed=4))
    _, n_tri = model.sdf_and_normals(x, z_id, z_ex, backend="triton")
    _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="reference")
    assert_close(n_tri, n_ref, atol=1e-4)
    # only z_ex wants a gradient: the identity kernel skips the code-table Jacobian
    ze = z_ex.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.sdf(x, z_id, ze, backend="triton").sum(), ze)
    ze_ref = z_ex.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(model.sdf(x, z_id, ze_ref, backend="reference").sum(), ze_ref)
    assert_close(g, g_ref, atol=2e-5, rtol=1e-4)


def test_expression_on_the_torch_path(registers):
    """expression="torch": the identity kernel with the torch path's expression MLP (what "auto" picks
    on CUDA in the float32-accurate modes), values and gradients."""
    from nphmkit import kernels

    model = _model(ODD, seed=2)
    x, z_id, z_ex = (t.to(DEVICE) for t in make_inputs(model, 2, 11, seed=7))
    with kernels.options(expression="torch"):
        assert not kernels.expression_kernel_runs(x.device)
        assert_gradients_match(model, x, z_id, z_ex, torch.randn(2, 11, 1, device=DEVICE))
        with torch.no_grad():
            assert_close(model.sdf(x, z_id, z_ex, backend="triton"), model.sdf(x, z_id, z_ex, backend="reference"))
    assert kernels.expression_kernel_runs(torch.device("cpu"))  # "auto": the interpreter always runs the kernel
    with kernels.options(precision="ieee"):
        assert not kernels.expression_kernel_runs(torch.device("cuda"))  # does not fit a GPU in float32 modes
    with kernels.options(precision="tf32"):
        assert kernels.expression_kernel_runs(torch.device("cuda"))


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_tensor_core_modes(registers, precision):
    model = _model(ODD)
    x, z_id, z_ex = (t.to(DEVICE) for t in make_inputs(model, 1, 19))
    from nphmkit import kernels

    with kernels.options(precision=precision), torch.no_grad():
        out = model.sdf(x, z_id, z_ex, backend="triton")
        ref = model.sdf(x, z_id, z_ex, backend="reference")
    # TF32: 10-bit mantissa products; tf32x3 ~ float32 (both exact on the interpreter)
    assert_close(out, ref, atol=2e-3 if precision == "tf32" else 1e-5, rtol=1e-2 if precision == "tf32" else 0.0)


def test_fp16_mode_stays_within_its_documented_tolerance(registers):
    """fp16: operands rounded to float16 (as on a GPU: round to nearest, which the interpreter does
    too), float32 sums. Measured on this config: SDF and canonical points within 3e-5, normals within
    3e-3, code gradients within 5e-4 relative; the bounds below leave a margin of about 7x."""
    model = _model(ODD, seed=1)
    x, z_id, z_ex = (t.to(DEVICE) for t in make_inputs(model, 2, 19, seed=4))
    with torch.no_grad():
        refs = model.sdf(x, z_id, z_ex, backend="reference"), model.canonical(x, z_id, z_ex, backend="reference")
    _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="reference")
    ref_grads = _code_grads(model, x, z_id, z_ex, "reference")
    from nphmkit import kernels

    with kernels.options(precision="fp16"):
        with torch.no_grad():
            outs = model.sdf(x, z_id, z_ex, backend="triton"), model.canonical(x, z_id, z_ex, backend="triton")
        _, n = model.sdf_and_normals(x, z_id, z_ex, backend="triton")
        grads = _code_grads(model, x, z_id, z_ex, "triton")
    for name, out, ref in zip(("sdf", "canonical"), outs, refs):
        assert_close(out, ref, atol=2e-4, msg=name)
        assert (out - ref).abs().max() > 1e-7, name  # float16 rounding did happen
    assert_close(n, n_ref, atol=2e-2, msg="normals")
    for name, g, r in zip(("z_id", "z_ex"), grads, ref_grads):
        assert float((g - r).norm() / r.norm()) < 5e-3, name


def _code_grads(model, x, z_id, z_ex, backend):
    zi, ze = z_id.clone().requires_grad_(True), z_ex.clone().requires_grad_(True)
    model.sdf(x, zi, ze, backend=backend).square().sum().backward()
    return zi.grad, ze.grad


def test_kernel_benchmark_runs_every_step_on_the_interpreter():
    """bench_kernels.py only measures on a GPU; --smoke walks its steps on the CPU interpreter at toy sizes.

    The accuracy check draws its 23 points from a seed; the script takes it from the clock, which made this
    test flaky. With seed 5490, fp16 came out at sdf 5.2e-3 and normals 1.6e-2, where seeds 0-12 all stay
    under 8e-4. That is an input-dependent fp16 outlier, noted for the kernels' own tests. Here the seed is
    fixed at 0, chosen before looking."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, str(root / "benchmarks" / "bench_kernels.py"), "--smoke", "--designs", "registers",
           "--max-log2", "4", "--repeats", "1", "--sweep", "--profile", "5", "--seed", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "registers tf32: seed" in out and "NON-FINITE" not in out
    ieee = next(line for line in out.splitlines() if line.startswith("registers ieee: seed"))
    errors = [float(v) for v in re.findall(r"(?:sdf|normals|d/dz_id|d/dz_ex) ([0-9.e+-]+)", ieee)]
    assert len(errors) == 4 and max(errors) < 1e-5, ieee
    rows = [line for line in out.splitlines() if line.strip().startswith("16 sdf")]
    assert len(rows) == 8 and all("registers" in r and "failed" not in r for r in rows), out  # 4 precisions
    fp16 = next(line for line in out.splitlines() if line.startswith("registers fp16: seed"))
    errors = [float(v) for v in re.findall(r"(?:sdf|normals|d/dz_id|d/dz_ex) ([0-9.e+-]+)", fp16)]
    assert len(errors) == 4 and 0 < max(errors) < 1e-2, fp16  # float16 operands: rounded, not wrong
    # the profile: one wall time per backend and query, the kernels' own launches among the top entries
    walls = re.findall(r"^  (torch|registers|registers, expression on torch) (sdf|sdf\+normals): wall", out, flags=re.M)
    labels = ("torch", "registers", "registers, expression on torch")
    assert sorted(walls) == sorted([(b, q) for b in labels for q in ("sdf", "sdf+normals")]), out
    assert "EnsembleChunked" in out and "ExpressionChunked" in out
    # the verdict: every precision and query of the design against the targets (interpreter: far off)
    verdict = out[out.index("verdict at the largest size timed"):]
    assert len(re.findall(r"registers 2\^4: ", verdict)) == 8 and verdict.count("misses: share, speed-up") == 2


def test_registers_kernels_compile_for_an_h100():
    """The interpreter accepts code the GPU compiler rejects: compile every registers-design kernel
    for sm_90 with triton's own ptxas (no GPU needed) and read its resource figures."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(root / "benchmarks" / "compile_kernels.py"), "--config", "small", "--designs",
           "registers", "--precision", "tf32,tf32x3,fp16"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("registers tf32", "registers fp16"))]
    assert len(rows) == 12, done.stdout
    for row in rows:
        smem, regs = float(row[-4]), int(row[-3])
        assert 0 < smem <= 227 and 0 < regs <= 255 and row[-1] == "wgmma", row  # fits an H100, tensor cores
