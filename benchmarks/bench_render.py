"""Sphere-tracing cost of a 256^2 normal map: SDF evaluations per pixel and wall time.

Renders synthetic heads (and, with --nphm DIR, an nphmkit NPHM weight folder with zero codes)
from a frontal and a three-quarter view, plain sphere tracing (the default) vs an over-relaxed
tracer. NeuS-style volume rendering, as in the official MonoNPHM fitting, spends 64 SDF
evaluations per ray plus their gradients.

    python benchmarks/bench_render.py [--size 256] [--nphm path/to/weights]
"""

from __future__ import annotations

import argparse
import time

import torch

from _timing import machine
from nphmkit.data.synthetic import SyntheticHead
from nphmkit.data.synthetic import params as P
from nphmkit.render import Camera, RenderConfig, TraceConfig, render


def run(name, field, cam, config):
    start = time.perf_counter()
    with torch.no_grad():
        out = render(field, cam, config=config, differentiable=False)
    seconds = time.perf_counter() - start
    fg, overall = out.evals_per_pixel()
    print(f"{name:34s} {fg:8.2f} {overall:8.2f} {out.mask.float().mean().item():7.1%} {seconds:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--nphm", help="an nphmkit NPHM weight folder to render too")
    args = parser.parse_args()
    head = SyntheticHead(P.neutral_identity(2), torch.tensor([[0.0] * 5, [0.6, 0.5, 0.3, 0.0, 0.0]]))
    yaw = torch.tensor([0.0, 0.6])
    eye = torch.stack([2.6 * torch.sin(yaw), torch.full((2,), 0.15), 2.6 * torch.cos(yaw)], dim=-1)
    cam = Camera.look_at(eye, torch.zeros(2, 3), image_size=(args.size, args.size))
    print(f"machine: {machine()}; {args.size}x{args.size}, 2 views (frontal neutral, 3/4 expressive)")
    print(f"{'field / tracer':34s} {'evals/fg':>8s} {'evals/px':>8s} {'fg':>7s} {'seconds':>8s}")
    relaxed = RenderConfig(trace=TraceConfig(relax=1.6))
    run("synthetic head, plain (default)", head.sdf, cam, RenderConfig())
    run("synthetic head, relaxed 1.6", head.sdf, cam, relaxed)
    if args.nphm:
        from nphmkit.nphm import NPHM

        model = NPHM.load(args.nphm).eval()
        field = model.field(torch.zeros(2, model.config.id_dim), torch.zeros(2, model.config.lat_dim_ex))
        run("NPHM, plain (default)", field, cam, RenderConfig())
        run("NPHM, relaxed 1.6", field, cam, relaxed)


if __name__ == "__main__":
    main()
