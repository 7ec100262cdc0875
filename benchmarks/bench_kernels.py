"""Triton kernels vs the torch path on a CUDA GPU: points/s, useful and executed TFLOP/s, share of the matmul rate.

For 2^15 ... 2^22 points at the official sizes: SDF forward and forward + normals, in exact fp32
("ieee") and TF32 modes; the GPU's matmul rate is measured in the same run (8192^2 products in
the same precision). Useful FLOPs = the official per-point cost (5.44 MFLOP); executed FLOPs add
the padding of widths to powers of two and of pair blocks to the block size.

    python benchmarks/bench_kernels.py [--max-log2 22] [--repeats 5]

Without a CUDA GPU it says so and exits (the interpreter is for correctness, not speed).
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine, median_time
from nphmkit import NPHMConfig
from tests.nphm.cases import make_inputs, make_model


def executed_flops_per_point(cfg: NPHMConfig, bm: int = 32) -> float:
    """FLOPs the kernels execute per query point (padded widths, and ~half a block of padding per type)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-log2", type=int, default=15)
    parser.add_argument("--max-log2", type=int, default=22)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; the Triton kernels' speed can only be measured on one.")
        return
    from nphmkit.kernels import set_precision

    cfg = NPHMConfig(chunk_size=1 << 18)
    model = make_model(cfg).cuda().requires_grad_(False).eval()
    useful = cfg.flops_per_point()["total"]
    executed = executed_flops_per_point(cfg)
    print(f"machine: {machine()}; GPU {torch.cuda.get_device_name()}")
    print(f"useful {useful / 1e6:.2f} MFLOP/point, executed {executed / 1e6:.2f} MFLOP/point (padding)")
    for precision in ("ieee", "tf32"):
        rate = matmul_rate(precision)
        set_precision(precision)
        print(f"\n{precision}: matmul rate {rate / 1e12:.1f} TFLOP/s (8192^2)")
        print(f"{'points':>9s} {'query':12s} {'triton pts/s':>13s} {'useful TF/s':>11s} {'exec TF/s':>9s} "
              f"{'of matmul':>9s} {'torch pts/s':>12s} {'speed-up':>8s}")
        for log2 in range(args.min_log2, args.max_log2 + 1):
            n = 1 << log2
            x, z_id, z_ex = (t.cuda() for t in make_inputs(model, 1, n))
            for query in ("sdf", "sdf+normals"):
                def run(backend, q=query):
                    if q == "sdf":
                        with torch.no_grad():
                            model.sdf(x, z_id, z_ex, backend=backend)
                    else:
                        model.sdf_and_normals(x, z_id, z_ex, backend=backend, create_graph=False)

                t_tri = median_time(lambda: run("triton"), repeats=args.repeats)
                torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
                t_torch = median_time(lambda: run("torch"), repeats=args.repeats)
                torch.backends.cuda.matmul.allow_tf32 = False
                mult = 1.0 if query == "sdf" else 3.0  # forward + backward of the MLPs
                print(f"{n:9d} {query:12s} {n / t_tri:13.3e} {mult * useful * n / t_tri / 1e12:11.2f} "
                      f"{mult * executed * n / t_tri / 1e12:9.2f} {mult * executed * n / t_tri / rate:9.1%} "
                      f"{n / t_torch:12.3e} {t_torch / t_tri:8.2f}")
    set_precision("ieee")


if __name__ == "__main__":
    main()
