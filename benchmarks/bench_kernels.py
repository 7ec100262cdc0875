"""Triton kernels vs the torch path on a CUDA GPU: points/s, useful and executed TFLOP/s, share of the matmul rate.

For 2^15 ... 2^22 points at the official sizes: SDF forward and forward + normals, in exact fp32
("ieee") and TF32 modes; the GPU's matmul rate is measured in the same run (8192^2 products in
the same precision). Useful FLOPs = the official per-point cost (5.44 MFLOP forward; forward +
normals counts the input-gradient pass too: 2x); executed FLOPs add the padding of widths to
powers of two and, for normals, the forward the backward kernels recompute (3x).

Before timing it checks the kernels against ``backend="torch"`` at the official sizes on fresh
random weights, codes and points (relative error of values, normals and code gradients), and
with ``--sweep`` it tries a few launch shapes (rows per program, tile, warps) and times the
table with the fastest.

    python benchmarks/bench_kernels.py [--max-log2 22] [--repeats 3] [--sweep] [--budget-s 400]

Without a CUDA GPU it says so and exits (the interpreter is for correctness, not speed).
"""

from __future__ import annotations

import argparse
import time

import torch

from _timing import machine, median_time
from nphmkit import NPHMConfig
from tests.nphm.cases import make_inputs, make_model

SHAPES = [(32, 64, 4), (64, 64, 4), (128, 64, 8)]


def executed_flops_per_point(cfg: NPHMConfig) -> float:
    """Forward FLOPs the kernels execute per query point (every width padded to a power of two)."""
    pad = lambda n: max(16, 1 << (n - 1).bit_length())  # noqa: E731
    h, e = pad(cfg.id_hidden), pad(cfg.ex_hidden)
    pair = cfg.query_dim * h + (cfg.id_layers - 1) * h * h + h
    identity = (cfg.n_neighbors + 1) * pair
    expression = 3 * e + (cfg.ex_layers - 1) * e * e + 3 * e + e * pad(cfg.ex_out)
    return 2.0 * (identity + expression)


def matmul_rate(precision: str) -> float:
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    a = torch.randn(8192, 8192, device="cuda")
    b = torch.randn(8192, 8192, device="cuda")
    t = median_time(lambda: a @ b, repeats=5)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * 8192**3 / t


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def check(model, precision: str) -> str:
    """Relative errors of the kernels against the torch path (fp32 products) on fresh inputs."""
    from nphmkit.kernels import set_precision

    seed = int(time.time()) % 10_000
    x, z_id, z_ex = (t.cuda() for t in make_inputs(model, 2, 20_011, seed=seed))
    set_precision(precision)
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        s_tri, s_ref = model.sdf(x, z_id, z_ex, backend="triton"), model.sdf(x, z_id, z_ex, backend="torch")
    _, n_tri = model.sdf_and_normals(x, z_id, z_ex, backend="triton", create_graph=False)
    _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="torch", create_graph=False)
    grads = {}
    for backend in ("triton", "torch"):
        zi, ze = z_id.clone().requires_grad_(True), z_ex.clone().requires_grad_(True)
        model.sdf(x[:, :3001], zi, ze, backend=backend).square().sum().backward()
        grads[backend] = (zi.grad, ze.grad)
    set_precision("ieee")
    bad = not all(torch.isfinite(t).all() for t in (s_tri, n_tri, *grads["triton"]))
    return (
        f"{precision}: seed {seed}, rel. error sdf {rel(s_tri, s_ref):.2e}, normals {rel(n_tri, n_ref):.2e}, "
        f"d/dz_id {rel(grads['triton'][0], grads['torch'][0]):.2e}, "
        f"d/dz_ex {rel(grads['triton'][1], grads['torch'][1]):.2e}{'  NON-FINITE!' if bad else ''}"
    )


def run_query(model, x, z_id, z_ex, backend, query):
    if query == "sdf":
        with torch.no_grad():
            model.sdf(x, z_id, z_ex, backend=backend)
    else:
        model.sdf_and_normals(x, z_id, z_ex, backend=backend, create_graph=False)


def sweep(model, n: int) -> tuple[int, int, int]:
    """Time the forward at ``n`` points in TF32 for each launch shape; returns the fastest."""
    from nphmkit.kernels import ops

    x, z_id, z_ex = (t.cuda() for t in make_inputs(model, 1, n))
    ops.set_precision("tf32")
    best, best_t = SHAPES[0], float("inf")
    print(f"\nlaunch shapes, tf32 forward, {n} points:")
    for shape in SHAPES:
        ops.configure(*shape)
        try:
            t = median_time(lambda: run_query(model, x, z_id, z_ex, "triton", "sdf"), repeats=3)
        except Exception as err:  # noqa: BLE001 - a shape a GPU cannot compile is reported, not fatal
            print(
                f"  block_m={shape[0]:3d} tile={shape[1]:3d} warps={shape[2]}: failed ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:120]})"
            )
            continue
        print(f"  block_m={shape[0]:3d} tile={shape[1]:3d} warps={shape[2]}: {n / t:.3e} points/s", flush=True)
        if t < best_t:
            best, best_t = shape, t
    ops.set_precision("ieee")
    ops.configure(*best)
    return best


def _shape(text: str) -> tuple[int, int, int]:
    try:
        block_m, tile, warps = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three integers block_m,tile,warps, got {text!r}") from None
    return block_m, tile, warps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-log2", type=int, default=15)
    parser.add_argument("--max-log2", type=int, default=22)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="try several launch shapes first")
    parser.add_argument("--shape", type=_shape, help="launch shape block_m,tile,warps for the table (e.g. 128,64,8)")
    parser.add_argument("--no-check", action="store_true", help="skip the accuracy check against the torch path")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting new sizes after this")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; the Triton kernels' speed can only be measured on one.")
        return
    from nphmkit.kernels import ops, set_precision

    start = time.perf_counter()
    cfg = NPHMConfig(chunk_size=1 << 18)
    model = make_model(cfg).cuda().requires_grad_(False).eval()
    useful = cfg.flops_per_point()["total"]
    executed = executed_flops_per_point(cfg)
    print(f"machine: {machine()}; GPU {torch.cuda.get_device_name()}")
    print(f"useful {useful / 1e6:.2f} MFLOP/point, executed {executed / 1e6:.2f} MFLOP/point (padding)", flush=True)
    for precision in ("ieee", "tf32") if not args.no_check else ():
        print(check(model, precision), flush=True)
    if args.shape:
        ops.configure(*args.shape)
    if args.sweep:
        sweep(model, 1 << 19)
    print(f"launch shape: {ops.configure()}")
    for precision in ("tf32", "ieee"):
        rate = matmul_rate(precision)
        set_precision(precision)
        print(f"\n{precision}: matmul rate {rate / 1e12:.1f} TFLOP/s (8192^2)")
        print(
            f"{'points':>9s} {'query':12s} {'triton pts/s':>13s} {'useful TF/s':>11s} {'exec TF/s':>9s} "
            f"{'of matmul':>9s} {'torch pts/s':>12s} {'speed-up':>8s}",
            flush=True,
        )
        for log2 in range(args.min_log2, args.max_log2 + 1):
            if time.perf_counter() - start > args.budget_s:
                print(f"(budget of {args.budget_s:.0f} s spent: sizes from 2^{log2} not timed)")
                break
            n = 1 << log2
            big = log2 > 20
            x, z_id, z_ex = (t.cuda() for t in make_inputs(model, 1, n))
            for query in ("sdf", "sdf+normals"):
                reps, warm = (1, 0) if big else (args.repeats, 1)  # big sizes: kernels compiled, one timed run
                t_tri = median_time(lambda: run_query(model, x, z_id, z_ex, "triton", query), reps, warm)
                torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
                t_torch = median_time(lambda: run_query(model, x, z_id, z_ex, "torch", query), reps, warm)
                torch.backends.cuda.matmul.allow_tf32 = False
                u, e = (1.0, 1.0) if query == "sdf" else (2.0, 3.0)
                print(
                    f"{n:9d} {query:12s} {n / t_tri:13.3e} {u * useful * n / t_tri / 1e12:11.2f} "
                    f"{e * executed * n / t_tri / 1e12:9.2f} {e * executed * n / t_tri / rate:9.1%} "
                    f"{n / t_torch:12.3e} {t_torch / t_tri:8.2f}",
                    flush=True,
                )
            torch.cuda.empty_cache()
    set_precision("ieee")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
