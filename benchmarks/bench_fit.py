"""Image fitting speed: time per step and to convergence for 128^2 and 256^2 targets.

The target is rendered from the shipped small NPHM with the codes of one of its training shapes
and a known pose; the fit starts from zero codes and the PnP pose. "Converged" = the first step
whose smoothed loss is within 5 % of the final one.

    python benchmarks/bench_fit.py [--sizes 128 256] [--steps 120]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _timing import machine
from nphmkit.fitting import ImageFitConfig, fit_image, pose_from_point_map
from nphmkit.pretrained import SMALL_NPHM, load_small_nphm
from nphmkit.render import Camera, default_intrinsics, render
from nphmkit.transforms import axis_angle_to_matrix


def target(model, size: int, shape: int = 4):
    reg = np.load(SMALL_NPHM / "registrations.npz")
    z_id, z_ex = torch.from_numpy(reg["z_id"][shape : shape + 1]), torch.from_numpy(reg["z_ex"][shape : shape + 1])
    R = axis_angle_to_matrix(torch.tensor([[0.08, 0.35, -0.03]]))
    t = torch.tensor([[0.02, -0.03, 2.7]])
    cam = Camera(default_intrinsics((size, size)), R, t, (size, size))
    field = model.field(z_id, z_ex)
    with torch.no_grad():
        out = render(field, cam, field.canonical, differentiable=False)
    return out, cam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    model = load_small_nphm()
    print(f"machine: {machine()}; shipped small NPHM; {args.steps} steps, "
          f"{ImageFitConfig().pixels_per_step} pixels per step")
    print(f"{'size':>5s} {'s/step':>7s} {'steps to 5%':>11s} {'s to 5%':>8s} {'total s':>8s} {'PnP s':>6s}")
    for size in args.sizes:
        out, cam = target(model, size)
        start = time.perf_counter()
        pose_from_point_map(out.canonical[0], out.mask[0], cam.K[0])
        pnp = time.perf_counter() - start
        start = time.perf_counter()
        res = fit_image(model, out.normals, out.canonical, out.mask, cam,
                        config=ImageFitConfig(steps=args.steps, patience=args.steps))
        total = time.perf_counter() - start
        per_step = total / res.steps
        smooth = np.convolve(res.history, np.ones(5) / 5, mode="valid")
        conv = int(np.argmax(smooth <= smooth[-1] * 1.05)) + 5
        print(f"{size:5d} {per_step:7.3f} {conv:11d} {conv * per_step:8.1f} {total:8.1f} {pnp:6.2f}")


if __name__ == "__main__":
    main()
