"""Coarse-to-fine vs dense marching cubes: SDF queries and wall time at 256^3.

The field is a head-like analytic SDF made as expensive per point as an NPHM decoder (it also
evaluates a decoder of the chosen preset and adds 0 x its value). For the official sizes, the
dense time is extrapolated from the decoder's measured per-point rate.

    python benchmarks/bench_mesh.py                    # small-preset cost, 256^3
    python benchmarks/bench_mesh.py --cost tiny --resolution 128
    python benchmarks/bench_mesh.py --field small_nphm # the shipped trained NPHM (a training head)
    python benchmarks/bench_mesh.py --field synthetic  # a synthetic head
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine
from nphmkit import NPHMConfig
from nphmkit.mesh import NPHM_BOUNDS, extract_mesh
from tests.mesh.shapes import head_like
from tests.nphm.cases import make_inputs, make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--cost", choices=["small", "tiny", "none"], default="small")
    parser.add_argument("--field", choices=["analytic", "small_nphm", "synthetic"], default="analytic")
    args = parser.parse_args()

    base = head_like()
    if args.field == "small_nphm":
        import numpy as np

        from nphmkit.pretrained import SMALL_NPHM, load_small_nphm

        nphm = load_small_nphm()
        reg = np.load(SMALL_NPHM / "registrations.npz")
        zi, ze = (torch.from_numpy(reg[k][97:98]).float() for k in ("z_id", "z_ex"))
        args.cost = "trained small NPHM, training head 97"

        def field(p: torch.Tensor) -> torch.Tensor:
            return nphm.sdf(p[None], zi, ze)[0, :, 0]

    elif args.field == "synthetic":
        from nphmkit.data.synthetic import SyntheticHead

        head = SyntheticHead.sample(1, seed=11)
        args.cost = "synthetic head seed 11"

        def field(p: torch.Tensor) -> torch.Tensor:
            return head.sdf(p[None])[0]

    elif args.cost == "none":
        field = base
    else:
        model = make_model(getattr(NPHMConfig, args.cost)()).eval()
        _, z_id, z_ex = make_inputs(model, 1, 1)

        def field(p: torch.Tensor) -> torch.Tensor:
            return base(p) + 0.0 * model.sdf(p[None], z_id, z_ex)[0, :, 0]

    print(f"machine: {machine()}")
    what = f"head-like analytic SDF + {args.cost} decoder cost" if args.field == "analytic" else args.cost
    print(f"field: {what}; resolution {args.resolution}^3; box {NPHM_BOUNDS}")
    with torch.no_grad():
        fine = extract_mesh(field, NPHM_BOUNDS, args.resolution, "coarse_to_fine", progress=False)
        full = extract_mesh(field, NPHM_BOUNDS, args.resolution, "coarse_to_fine", band=None, progress=False)
        dense = extract_mesh(field, NPHM_BOUNDS, args.resolution, "dense", progress=True)
    print(f"{'method':26s} {'queries':>12s} {'of dense':>9s} {'seconds':>9s} {'vertices':>9s}  same triangles as dense")
    for name, m in (("dense", dense), ("coarse_to_fine (default)", fine), ("coarse_to_fine, band=None", full)):
        same = m.n_vertices == dense.n_vertices and torch.equal(m.faces, dense.faces)
        vdiff = (m.vertices - dense.vertices).abs().max().item() if same else float("nan")
        print(f"{name:26s} {m.n_queries:12d} {m.n_queries / dense.n_queries:9.2%} {m.seconds:9.2f} {m.n_vertices:9d}  "
              f"{same} (max vertex difference {vdiff:.1e})")
    print(f"speed-up {dense.seconds / fine.seconds:.1f}x over dense, {full.seconds / fine.seconds:.2f}x over band=None")

    official = make_model(NPHMConfig.mononphm()).eval()
    x, z_id, z_ex = make_inputs(official, 1, 16384)
    import time

    with torch.no_grad():
        official.sdf(x[:, :1024], z_id, z_ex)
        t = time.perf_counter()
        official.sdf(x, z_id, z_ex)
        rate = x.shape[1] / (time.perf_counter() - t)
    print(f"official sizes: {rate:.0f} points/s (torch path) -> dense {args.resolution}^3 "
          f"~{dense.n_queries / rate / 60:.1f} min, coarse-to-fine ~{fine.n_queries / rate / 60:.1f} min (extrapolated)")


if __name__ == "__main__":
    main()
