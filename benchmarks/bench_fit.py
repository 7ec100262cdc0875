"""Image fitting speed: time per step and to convergence for 128^2 and 256^2 targets.

The target is rendered from the shipped small NPHM with the codes of one of its training shapes
and a known pose; the fit starts from zero codes and the PnP pose. "Converged" = the first step
whose smoothed loss is within 5 % of the final one.

    python benchmarks/bench_fit.py [--sizes 128 256] [--steps 120]
    python benchmarks/bench_fit.py --synthetic [--sizes 32 64 128] [--steps 10] [--repeats 3]

``--synthetic`` times a fit step of the synthetic family as a head model (``SyntheticHeadModel``) with its
fields on ``(B, N, 3)`` points (its default) against the same fit on coordinate planes, alternated in one
process, the median of ``--repeats`` rounds after a warm-up round; the target is a family head rendered at
each size, the fit starts from the mean codes at the true pose. Printed: seconds per step and the ratio.
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


def synthetic_layouts(sizes: list[int], steps: int, repeats: int) -> None:
    from nphmkit.data.synthetic import SyntheticHeadModel
    from nphmkit.data.synthetic import params as P
    from nphmkit.fitting import FitResult
    from nphmkit.render import default_crop_pose

    models = {"points (default)": SyntheticHeadModel(), "planes": SyntheticHeadModel(coordinate_planes=True)}
    print(f"machine: {machine()}; SyntheticHeadModel fits, {steps} steps a round, "
          f"{ImageFitConfig().pixels_per_step} pixels per step at most")
    print("| target | head pixels | points (default) s / step | planes s / step | planes / points |")
    print("|---|---|---|---|---|")
    for size in sizes:
        model = models["points (default)"]
        z_id, z_ex = model.to_codes(P.sample_identity(1, 5001), P.sample_expression(1, 5001))
        R0, t0 = default_crop_pose(1)
        cam = Camera(default_intrinsics((size, size)), axis_angle_to_matrix(torch.tensor([[0.1, 0.35, -0.05]])) @ R0,
                     t0, (size, size))
        field = model.field(z_id, z_ex)
        with torch.no_grad():
            out = render(field, cam, field.canonical, differentiable=False)
        start = FitResult(*model.initial_codes(1), cam.R, cam.t, torch.ones(1))
        config = ImageFitConfig(steps=steps, patience=steps)
        times = {name: [] for name in models}
        for _ in range(repeats + 1):  # alternated; the first round warms up
            for name, m in models.items():
                t = time.perf_counter()
                fit_image(m, out.normals, out.canonical, out.mask, cam, init=start, config=config, progress=False)
                times[name].append((time.perf_counter() - t) / steps)
        points, planes = (float(np.median(v[1:])) for v in times.values())
        print(f"| {size}^2 | {int(out.mask.sum())} | {points:.3f} | {planes:.3f} | {planes / points:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 128 256 (32 64 128 with --synthetic)")
    parser.add_argument("--steps", type=int, default=None, help="default: 120 (10 with --synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="the synthetic head model on points against planes")
    parser.add_argument("--repeats", type=int, default=3, help="with --synthetic: rounds per layout")
    args = parser.parse_args()
    if args.synthetic:
        synthetic_layouts(args.sizes or [32, 64, 128], args.steps or 10, args.repeats)
        return
    args.sizes, args.steps = args.sizes or [128, 256], args.steps or 120
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
