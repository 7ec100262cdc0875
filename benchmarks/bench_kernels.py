"""Triton kernels vs the torch path on a CUDA GPU: points/s, useful and executed TFLOP/s, share of the matmul rate.

For 2^15 ... 2^22 points at the official sizes: SDF forward and forward + normals, in exact fp32
("ieee"), fp32 emulated by three TF32 products ("tf32x3"), TF32 and float16-operand ("fp16",
registers design only) modes, for each kernel design asked for ("scratch": activations through a
global scratch buffer; "registers": activations on chip); the GPU's matmul rate is measured in
the same run (8192^2 products; TF32 for tf32 rows, float16 for fp16 rows, float32 for the others;
the torch path runs in TF32 for the tf32 and fp16 rows). Useful FLOPs = the official per-point cost (5.44 MFLOP forward; forward
+ normals counts the input-gradient pass too: 2x); executed FLOPs add each design's padding and,
for normals, the forward passes its backward kernels recompute (see ``executed_flops_per_point``).

Before timing it checks the kernels against ``backend="torch"`` at the official sizes on fresh
random weights, codes and points (relative error of values, normals and code gradients), and
with ``--sweep`` it tries a few launch shapes per design and times the table with the fastest.
A design that fails to compile or run on this GPU is reported and left out, not fatal.

    python benchmarks/bench_kernels.py [--designs scratch,registers] [--max-log2 22] [--repeats 3]
                                       [--sweep [registers]] [--profile 20] [--budget-s 400]
    TRITON_INTERPRET=1 python benchmarks/bench_kernels.py --smoke   # this script's steps, on the CPU

Without a CUDA GPU it says so and exits (the interpreter is for correctness, not speed).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from _args import launch_shape, subset
from _timing import machine, median_time
from nphmkit import NPHMConfig
from tests.nphm.cases import make_inputs, make_model

DESIGNS = ("scratch", "registers")
PRECISIONS = ("tf32", "tf32x3", "ieee", "fp16")
# launch shapes tried by --sweep: scratch (block_m, tile, num_warps); registers (block_m,
# block_m_expression, num_warps), from what the sm_90 compiler makes of them
# (benchmarks/compile_kernels.py --shape ...; RESULTS.md): the preset spills least; 128 identity
# rows halve the weight traffic per row but spill more; 4 warps spill more but fit two programs per
# SM (one hides the other's weight loads); 32 rows lose wgmma
SHAPES = {
    "scratch": [(32, 64, 4), (64, 64, 4), (128, 64, 8)],
    "registers": [(64, 64, 8), (128, 64, 8), (128, 64, 16), (64, 64, 4)],
}


def executed_flops_per_point(cfg: NPHMConfig, design: str, expression_on_torch: bool = False) -> tuple[float, float]:
    """FLOPs the kernels execute per query point: ``(forward, forward + normals)``.

    scratch: widths padded to powers of two (200 -> 256, 400 -> 512); normals run the forward,
    then backward kernels that recompute it (3 passes). registers: widths padded to a sum of
    chunks (200 -> 208, 400 -> 400); normals: the identity launch runs forward and backward at
    once (2 passes), the expression backward recomputes its forward (3 passes), or, with
    ``expression_on_torch`` (``KernelOptions.expression``), the torch path runs the expression
    MLP unpadded (forward and one backward pass: 2).
    """
    if design == "scratch":
        pad = lambda n: max(16, 1 << (n - 1).bit_length())  # noqa: E731
        h, e = pad(cfg.id_hidden), pad(cfg.ex_hidden)
    else:
        from nphmkit.kernels.registers_ops import chunk_widths

        h, e = chunk_widths(cfg.id_hidden)[-1], chunk_widths(cfg.ex_hidden)[-1]
    out = max(16, 1 << (cfg.ex_out - 1).bit_length())
    pair = cfg.query_dim * h + (cfg.id_layers - 1) * h * h + h
    identity = 2.0 * (cfg.n_neighbors + 1) * pair
    expression = 2.0 * (3 * e + (cfg.ex_layers - 1) * e * e + 3 * e + e * out)
    if design == "scratch":
        return identity + expression, 3 * (identity + expression)
    if expression_on_torch:
        e, out = cfg.ex_hidden, cfg.ex_out
        expression = 2.0 * (3 * e + (cfg.ex_layers - 1) * e * e + 3 * e + e * out)
        return identity + expression, 2 * (identity + expression)
    return identity + expression, 2 * identity + 3 * expression


def _executed(cfg: NPHMConfig, design: str, x: torch.Tensor) -> tuple[float, float]:
    """:func:`executed_flops_per_point` for the options in force and the device."""
    from nphmkit import kernels

    return executed_flops_per_point(cfg, design, design == "registers" and not kernels.expression_kernel_runs(x.device))


# where the run happens: a CUDA GPU, or (--smoke) the CPU interpreter at toy sizes
_run = {"device": "cuda", "matmul": 8192, "check_points": 20_011, "sweep_points": 1 << 19, "seed": None}


def _dev(t: torch.Tensor) -> torch.Tensor:
    return t.to(_run["device"])


def matmul_rate(precision: str) -> float:
    """The GPU's matmul rate in the precision's products (fp16: float16 operands, float32 sums)."""
    size = _run["matmul"]
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    dtype = torch.float16 if precision == "fp16" and _run["device"] == "cuda" else torch.float32
    a = torch.randn(size, size, device=_run["device"], dtype=dtype)
    b = torch.randn(size, size, device=_run["device"], dtype=dtype)
    t = median_time(lambda: a @ b, repeats=5)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * size**3 / t


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def check(model, precision: str, design: str) -> str:
    """Relative errors of the kernels against the torch path (fp32 products) on fresh inputs."""
    from nphmkit import kernels

    seed = _run["seed"] if _run.get("seed") is not None else int(time.time()) % 10_000
    x, z_id, z_ex = (_dev(t) for t in make_inputs(model, 2, _run["check_points"], seed=seed))
    torch.backends.cuda.matmul.allow_tf32 = False
    with kernels.options(design=design, precision=precision):
        with torch.no_grad():
            s_tri, s_ref = model.sdf(x, z_id, z_ex, backend="triton"), model.sdf(x, z_id, z_ex, backend="torch")
        _, n_tri = model.sdf_and_normals(x, z_id, z_ex, backend="triton")
        _, n_ref = model.sdf_and_normals(x, z_id, z_ex, backend="torch")
        grads = {}
        for backend in ("triton", "torch"):
            zi, ze = z_id.clone().requires_grad_(True), z_ex.clone().requires_grad_(True)
            model.sdf(x[:, : max(1, x.shape[1] // 7)], zi, ze, backend=backend).square().sum().backward()
            grads[backend] = (zi.grad, ze.grad)
    bad = not all(torch.isfinite(t).all() for t in (s_tri, n_tri, *grads["triton"]))
    return (
        f"{design} {precision}: seed {seed}, rel. error sdf {rel(s_tri, s_ref):.2e}, normals {rel(n_tri, n_ref):.2e}, "
        f"d/dz_id {rel(grads['triton'][0], grads['torch'][0]):.2e}, "
        f"d/dz_ex {rel(grads['triton'][1], grads['torch'][1]):.2e}{'  NON-FINITE!' if bad else ''}"
    )


def run_query(model, x, z_id, z_ex, backend, query):
    if query == "sdf":
        with torch.no_grad():
            model.sdf(x, z_id, z_ex, backend=backend)
    else:
        model.sdf_and_normals(x, z_id, z_ex, backend=backend)


def _shape_options(design: str, shape: tuple[int, int, int] | None):
    """The design's ``KernelOptions`` with a launch shape (None: its preset); chunks of the model's size."""
    from nphmkit.kernels import KernelOptions

    if shape is None:
        return KernelOptions.preset(design, chunk_points=0)
    names = ("block_m", "tile", "num_warps") if design == "scratch" else ("block_m", "block_m_expression", "num_warps")
    return KernelOptions.preset(design, chunk_points=0, **dict(zip(names, shape)))


def _runs(design: str, precision: str) -> bool:
    """fp16 is the registers design's mode only."""
    return not (design == "scratch" and precision == "fp16")


def _failure(err: Exception) -> str:
    return f"failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:120] if str(err).strip() else ''})"


def sweep(model, n: int, design: str) -> tuple[int, int, int] | None:
    """Time the forward at ``n`` points in TF32 for each launch shape of ``design``; returns the fastest."""
    from dataclasses import replace

    from nphmkit import kernels

    x, z_id, z_ex = (_dev(t) for t in make_inputs(model, 1, n))
    best, best_t = None, float("inf")
    names = ("block_m", "tile", "warps") if design == "scratch" else ("block_m", "block_m_ex", "warps")
    print(f"\n{design} launch shapes, tf32 forward, {n} points:")
    for shape in SHAPES[design]:
        label = " ".join(f"{k}={v:3d}" for k, v in zip(names, shape))
        try:
            with kernels.options(replace(_shape_options(design, shape), precision="tf32")):
                t = median_time(lambda: run_query(model, x, z_id, z_ex, "triton", "sdf"), repeats=3)
        except Exception as err:  # noqa: BLE001 - a shape a GPU cannot compile is reported, not fatal
            print(f"  {label}: {_failure(err)}")
            continue
        print(f"  {label}: {n / t:.3e} points/s", flush=True)
        if t < best_t:
            best, best_t = shape, t
    return best


def profile(model, n: int, designs: list[str], shapes: dict, precision: str, top: int = 10) -> None:
    """Where the time goes at ``n`` points: the ``top`` GPU kernels (CPU ops under ``--smoke``) of one
    call per backend and query, by their own time, with the call's wall time and its sum of kernel
    times (a large gap: launch overhead and host synchronisations). The registers design is also
    profiled with its expression MLP on the torch path, the alternative to its expression kernel."""
    from dataclasses import replace

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from nphmkit import kernels

    cuda = _run["device"] == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    x, z_id, z_ex = (_dev(t) for t in make_inputs(model, 1, n))
    print(f"\nprofile, {precision}, {n} points: a call's wall time, its {'GPU kernel' if cuda else 'CPU op'} time, "
          f"and the top {top} {'kernels' if cuda else 'ops'} by their own time")
    labels = ["torch", *designs]
    if "registers" in designs:
        labels.append("registers, expression on torch")  # what KernelOptions(expression="torch") gives
    for label in labels:
        backend = "torch" if label == "torch" else "triton"
        if label.startswith("registers,"):
            kernels.set_options(replace(shapes["registers"], expression="torch", precision=precision))
        elif backend == "triton":
            kernels.set_options(replace(shapes[label], precision=precision))
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        for query in ("sdf", "sdf+normals"):
            try:
                run_query(model, x, z_id, z_ex, backend, query)  # compiled and warm
                with torch_profile(activities=activities) as prof:
                    t0 = time.perf_counter()
                    run_query(model, x, z_id, z_ex, backend, query)
                    if cuda:
                        torch.cuda.synchronize()
                    wall = time.perf_counter() - t0
            except Exception as err:  # noqa: BLE001 - reported, not fatal
                print(f"  {label} {query}: {_failure(err)}")
                continue
            own = [(e.key, e.self_device_time_total if cuda else e.self_cpu_time_total, e.count)
                   for e in prof.key_averages()]
            own = sorted([r for r in own if r[1] > 0], key=lambda r: -r[1])
            total = sum(r[1] for r in own) / 1e6
            print(f"  {label} {query}: wall {wall * 1e3:.2f} ms, {'kernels' if cuda else 'ops'} {total * 1e3:.2f} ms")
            for name, us, count in own[:top]:
                print(f"    {us / 1e3:9.3f} ms {us / 1e6 / total:6.1%} x{count:<4d} {name[:90]}")
        torch.backends.cuda.matmul.allow_tf32 = False


# the targets for the TF32 mode on an H100: share of the TF32 matmul rate in executed FLOPs,
# and speed-up over backend="torch" (in TF32) on the same GPU
TARGET_SHARE, TARGET_SPEEDUP = 0.40, 5.0


def verdict(results: dict[tuple[str, str, str], tuple[int, float, float]]) -> str:
    """Each (precision, query, design) at the largest size timed against the targets (tf32 only)."""
    lines = [f"\nverdict at the largest size timed (targets, tf32: >= {TARGET_SHARE:.0%} of matmul in executed "
             f"FLOPs and >= {TARGET_SPEEDUP:g}x backend='torch'):"]
    for (precision, query, design), (n, share, speedup) in results.items():
        mark = ""
        if precision == "tf32":
            ok = share >= TARGET_SHARE and speedup >= TARGET_SPEEDUP
            mark = "  meets both targets" if ok else "  misses: " + ", ".join(
                w for w, miss in (("share", share < TARGET_SHARE), ("speed-up", speedup < TARGET_SPEEDUP)) if miss)
        lines.append(f"  {precision:6s} {query:12s} {design:9s} 2^{n.bit_length() - 1}: {share:6.1%} of matmul, "
                     f"{speedup:5.2f}x torch{mark}")
    if not results:
        lines.append("  nothing timed")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=subset(DESIGNS), default=list(DESIGNS), help="kernel designs, e.g. registers")
    parser.add_argument(
        "--precision", type=subset(PRECISIONS), default=list(PRECISIONS),
        help="kernel precisions; tf32 rows compare with TF32 matmuls and the torch path in TF32, fp16 rows "
        "with float16 matmuls and the torch path in TF32, the float32-accurate ieee and tf32x3 rows with float32 ones",
    )
    parser.add_argument("--min-log2", type=int, default=15)
    parser.add_argument("--max-log2", type=int, default=22)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sweep", type=subset(DESIGNS), nargs="?", const=list(DESIGNS), default=[],
        help="try several launch shapes first, for these designs (default: all)",
    )
    parser.add_argument("--shape", type=launch_shape, help="launch shape of the first design (e.g. 128,64,8; see SHAPES)")
    parser.add_argument("--no-check", action="store_true", help="skip the accuracy check against the torch path")
    parser.add_argument("--seed", type=int, default=None,
                        help="inputs of the accuracy check (default: a fresh seed from the clock, printed)")
    parser.add_argument(
        "--profile", type=int, metavar="LOG2", help="before the table: where the time goes at 2^LOG2 points (tf32)"
    )
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting new sizes after this")
    parser.add_argument(
        "--smoke", action="store_true",
        help="run every step on the CPU interpreter (TRITON_INTERPRET=1) at toy sizes: checks this script, times nothing",
    )
    args = parser.parse_args()
    _run["seed"] = args.seed
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("--smoke runs the kernels on the CPU interpreter: set TRITON_INTERPRET=1")
        _run.update(device="cpu", matmul=256, check_points=23, sweep_points=32)
        args.min_log2, args.max_log2 = 4, min(args.max_log2, 5)
        SHAPES["scratch"], SHAPES["registers"] = SHAPES["scratch"][:1], [(16, 16, 4)]
    elif not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; the Triton kernels' speed can only be measured on one.")
        return
    from dataclasses import replace

    from nphmkit import kernels

    start = time.perf_counter()
    # both paths chunk by the model's chunk_size (2^18 points here): chunk_points=0 in every design's options
    cfg = NPHMConfig.tiny() if args.smoke else NPHMConfig(chunk_size=1 << 18)
    model = _dev(make_model(cfg)).requires_grad_(False).eval()
    useful = cfg.flops_per_point()["total"]
    gpu = "none (--smoke: interpreter, toy sizes; not a measurement)" if args.smoke else torch.cuda.get_device_name()
    print(f"machine: {machine()}; GPU {gpu}")
    print(f"useful {useful / 1e6:.2f} MFLOP/point forward, {2 * useful / 1e6:.2f} with normals")
    designs, shapes = [], {}
    for design in args.designs:
        fwd, nrm = executed_flops_per_point(cfg, design)
        print(f"{design}: executed {fwd / 1e6:.2f} MFLOP/point forward, {nrm / 1e6:.2f} with normals"
              + (" (expression kernel; on the torch path: " + "{:.2f} / {:.2f})".format(
                  *(v / 1e6 for v in executed_flops_per_point(cfg, design, True))) if design == "registers" else ""),
              flush=True)
        ok = True
        for precision in args.precision if not args.no_check else ():
            if not _runs(design, precision):
                continue
            try:
                print(check(model, precision, design), flush=True)
            except Exception as err:  # noqa: BLE001 - a design this GPU cannot compile is reported, not fatal
                print(f"{design} {precision}: {_failure(err)}", flush=True)
                ok = False
                break
        if not ok:
            continue
        shape = args.shape if args.shape and design == args.designs[0] else None
        if design in args.sweep:
            shape = sweep(model, _run["sweep_points"], design) or shape
        shapes[design] = _shape_options(design, shape)
        print(f"{design} launch shape: {shapes[design].to_dict()}", flush=True)
        designs.append(design)
    if args.profile is not None and designs:
        profile(model, 1 << (args.profile if not args.smoke else 5), designs, shapes, "tf32")
    results: dict[tuple[str, str, str], tuple[int, float, float]] = {}  # the largest size timed of each
    for precision in args.precision:
        rate = matmul_rate(precision)
        print(f"\n{precision}: matmul rate {rate / 1e12:.1f} TFLOP/s ({_run['matmul']}^2)")
        print(
            f"{'points':>9s} {'query':12s} {'torch pts/s':>12s} {'design':>9s} {'triton pts/s':>13s} "
            f"{'useful TF/s':>11s} {'exec TF/s':>9s} {'of matmul':>9s} {'speed-up':>8s}",
            flush=True,
        )
        for log2 in range(args.min_log2, args.max_log2 + 1):
            if time.perf_counter() - start > args.budget_s:
                print(f"(budget of {args.budget_s:.0f} s spent: sizes from 2^{log2} not timed)")
                break
            n = 1 << log2
            big = log2 > 20
            x, z_id, z_ex = (_dev(t) for t in make_inputs(model, 1, n))
            reps, warm = (1, 0) if big else (args.repeats, 1)  # big sizes: kernels compiled, one timed run
            for query in ("sdf", "sdf+normals"):
                torch.backends.cuda.matmul.allow_tf32 = precision in ("tf32", "fp16")  # the torch path's fastest
                t_torch = median_time(lambda: run_query(model, x, z_id, z_ex, "torch", query), reps, warm)
                torch.backends.cuda.matmul.allow_tf32 = False
                for design in designs:
                    if not _runs(design, precision):
                        continue
                    kernels.set_options(replace(shapes[design], precision=precision))
                    try:
                        t_tri = median_time(lambda: run_query(model, x, z_id, z_ex, "triton", query), reps, warm)
                    except Exception as err:  # noqa: BLE001
                        print(f"{n:9d} {query:12s} {n / t_torch:12.3e} {design:>9s} {_failure(err)}", flush=True)
                        continue
                    u = 1.0 if query == "sdf" else 2.0
                    e = _executed(cfg, design, x)[0 if query == "sdf" else 1]
                    results[(precision, query, design)] = (n, e * n / t_tri / rate, t_torch / t_tri)
                    print(
                        f"{n:9d} {query:12s} {n / t_torch:12.3e} {design:>9s} {n / t_tri:13.3e} "
                        f"{u * useful * n / t_tri / 1e12:11.2f} {e * n / t_tri / 1e12:9.2f} "
                        f"{e * n / t_tri / rate:9.1%} {t_torch / t_tri:8.2f}",
                        flush=True,
                    )
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    kernels.set_options(kernels.KernelOptions())
    print(verdict(results))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
