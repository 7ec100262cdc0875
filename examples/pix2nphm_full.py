"""The whole Pix2NPHM system, as far as nphmkit has built it: `make demo` runs this.

What runs today: the NPHM decoder (MonoNPHM's geometry, exact to the official code) on the
CPU, checked against its plain reference, and timed. No trained model ships yet, so this
script reconstructs no head: random weights are never shown as a reconstruction.
"""

from __future__ import annotations

import sys
import time

import torch

import nphmkit
from nphmkit import NPHM, NPHMConfig


def main() -> int:
    print(f"nphmkit {nphmkit.__version__} - Pix2NPHM demo")
    print("Stages built so far: NPHM decoder (identity SDF + expression deformation).")
    print("Not built yet: synthetic data, renderer, meshes, fitting, image networks, trained weights.")
    print("So no head is reconstructed: a decoder with random weights is only a self-check, not a result.\n")

    torch.manual_seed(0)
    config = NPHMConfig.mononphm()
    model = NPHM(config).eval()
    n = 4096
    points = (torch.rand(1, n, 3) - 0.5) * 0.8
    z_id = 0.1 * torch.randn(1, config.id_dim)
    z_ex = 0.1 * torch.randn(1, config.lat_dim_ex)
    with torch.no_grad():
        start = time.perf_counter()
        sdf_fast = model.sdf(points, z_id, z_ex, backend="torch")
        t_fast = time.perf_counter() - start
        start = time.perf_counter()
        sdf_ref = model.sdf(points, z_id, z_ex, backend="reference")
        t_ref = time.perf_counter() - start
        _, normals = model.sdf_and_normals(points, z_id, z_ex, backend="torch")
    err = (sdf_fast - sdf_ref).abs().max().item()
    print(f"Decoder self-check (official sizes, random weights, {n} points, {torch.get_num_threads()} threads):")
    print(f"  torch path {t_fast:.2f} s, reference {t_ref:.2f} s, max |difference| {err:.1e} (tolerance 1e-5)")
    print(f"  unit normals: max |1 - |n|| = {(normals.norm(dim=-1) - 1).abs().max().item():.1e}")
    if err > 1e-5:
        print("FAILED: the fast path disagrees with the reference", file=sys.stderr)
        return 1
    print("\nReal MonoNPHM weights load with nphmkit.nphm.checkpoint.load_mononphm(checkpoint, anchors_65.npy).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
