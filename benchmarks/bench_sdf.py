"""SDF and SDF + normals throughput of the NPHM decoder, per backend, against this machine's matmul rate.

Prints points/s and useful GFLOP/s (the official per-point cost, 5.4 MFLOP at the official sizes),
the fp32 matmul rate measured in the same run (median of 2048 x 2048 products) and the ratios.

    python benchmarks/bench_sdf.py                    # official sizes, 32,768 points, torch + reference
    python benchmarks/bench_sdf.py --config small --points 65536
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine, matmul_rate, median_time
from nphmkit import NPHMConfig
from tests.nphm.cases import make_inputs, make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["mononphm", "small"], default="mononphm")
    parser.add_argument("--points", type=int, default=32768)
    parser.add_argument("--backends", default="torch,reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = getattr(NPHMConfig, args.config)()
    model = make_model(config).to(args.device)
    x, z_id, z_ex = (t.to(args.device) for t in make_inputs(model, 1, args.points, seed=1))
    flops = config.flops_per_point()["total"] * args.points
    rate = matmul_rate(device=args.device)
    print(f"machine: {machine()}; device {args.device}")
    print(f"config {args.config}: {config.flops_per_point()['total'] / 1e6:.2f} MFLOP per point (useful); "
          f"{args.points} points")
    print(f"fp32 matmul rate (2048^2, median): {rate / 1e9:.1f} GFLOP/s\n")
    print(f"{'backend':10s} {'query':14s} {'seconds':>8s} {'points/s':>11s} {'GFLOP/s':>8s} {'of matmul':>9s} {'vs sdf':>7s}")
    for backend in args.backends.split(","):
        with torch.no_grad():
            t_sdf = median_time(lambda b=backend: model.sdf(x, z_id, z_ex, backend=b), repeats=args.repeats)
            t_nrm = median_time(lambda b=backend: model.sdf_and_normals(x, z_id, z_ex, backend=b), repeats=args.repeats)
        for name, t in (("sdf", t_sdf), ("sdf+normals", t_nrm)):
            print(f"{backend:10s} {name:14s} {t:8.3f} {args.points / t:11.0f} {flops / t / 1e9:8.1f} "
                  f"{flops / t / rate:9.1%} {t / t_sdf:7.2f}")


if __name__ == "__main__":
    main()
