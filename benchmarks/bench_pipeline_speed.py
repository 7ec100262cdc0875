"""Pix2NPHM speed on this CPU: image -> maps -> feed-forward codes -> 128^3 posed mesh, and the refinement.

    python benchmarks/bench_pipeline_speed.py [--repeats 3] [--steps 20] [--resolution 128] [--mesh-only]

Times (best of ``--repeats``, after one warm-up) on a shipped demo image with the shipped small models:
the predictor's maps, the regressor's codes and pose, the posed mesh by coarse-to-fine marching cubes
(the default margin 1.0 and band 0.5; without the band, the baseline; margin 0.5, which leans on the
surface-following pass; each checked against dense extraction for identical triangles), and the seconds
per refinement step (``REFINE``, with its warm-started tracing and with cold tracing from the bounding
sphere: the baseline; and warm-started with every identity chunk on the per-type loop, the baseline of
the tiled small-chunk path).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import torch

BASELINE = "margin 1.0, no band (every point of the flagged cells; baseline)"


def best(fn, repeats: int):
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--mesh-only", action="store_true", help="time the maps, codes and meshes, not the refinement")
    args = parser.parse_args()
    from nphmkit.data.dataset import ImageDataset
    from nphmkit.mesh import extract_mesh
    from nphmkit.pipeline import Pix2NPHM
    from nphmkit.pipeline.pix2nphm import REFINE
    from nphmkit.pretrained import ASSETS

    item = ImageDataset(ASSETS / "demo")[0]
    pipe = Pix2NPHM.small(refine=replace(REFINE, steps=args.steps, patience=args.steps))
    image, K = pipe.prepare(item["rgb"][None], item["K"])
    t_maps, _ = best(lambda: pipe.maps(image), args.repeats)
    t_ff, _ = best(lambda: pipe.feed_forward(image, K), args.repeats)
    rec = pipe.reconstruct(item["rgb"][None], item["K"], refine=False)
    field = rec.model.field(rec.z_id, rec.z_ex)
    mesh_variants = {  # (margin, band); BASELINE evaluates every point of the flagged cells
        "margin 1.0, band 0.5 (the default)": (1.0, 0.5),
        BASELINE: (1.0, None),
        "margin 0.5, band 0.5": (0.5, 0.5),
    }
    with torch.no_grad():
        dense = extract_mesh(field, resolution=args.resolution, method="dense", progress=False)
        times = {k: [] for k in mesh_variants}
        meshes = {}
        for _ in range(args.repeats + 1):  # alternating; the first round warms up
            for name, (margin, band) in mesh_variants.items():
                meshes[name] = extract_mesh(field, resolution=args.resolution, margin=margin, band=band, progress=False)
                times[name].append(meshes[name].seconds)
        rows = []
        for name, mesh in meshes.items():
            same = mesh.n_faces == dense.n_faces and torch.equal(mesh.faces, dense.faces)
            rows.append((name, min(times[name][1:]), mesh.n_queries, same))
    if args.mesh_only:
        print_rows(args, t_maps, t_ff, rows, dense)
        return 0
    from nphmkit.nphm import vectorized

    tiled_default = (vectorized.TILED_MAX_POINTS, vectorized.TILED_MAX_POINTS_GRAPH)
    variants = {"cold": (False, tiled_default), "loop": (True, (0, 0)), "warm": (True, tiled_default)}
    per_step = {k: [] for k in variants}
    for _ in range(args.repeats + 1):  # alternating, so drifts of the machine's speed hit all alike
        for name, (warm, tiled_max) in variants.items():
            pipe.refine = replace(pipe.refine, warm_start=warm)
            vectorized.TILED_MAX_POINTS, vectorized.TILED_MAX_POINTS_GRAPH = tiled_max
            res = pipe.reconstruct(item["rgb"][None], item["K"], progress=False)
            per_step[name].append(res.timings["refine"] / max(1, res.steps[0]))
    vectorized.TILED_MAX_POINTS, vectorized.TILED_MAX_POINTS_GRAPH = tiled_default
    per_step = {k: min(v[1:]) for k, v in per_step.items()}  # the first round warms up
    print_rows(args, t_maps, t_ff, rows, dense)
    cold, loop, warm = per_step["cold"], per_step["loop"], per_step["warm"]
    n = REFINE.steps
    print(f"| refinement (REFINE), per step, cold tracing (baseline) | {cold:.3f} ({n} steps: {n * cold:.0f} s) |")
    print(f"| refinement (REFINE), per step, warm-started tracing, per-type loop only | {loop:.3f} "
          f"({n} steps: {n * loop:.0f} s; {cold / loop:.2f}x) |")
    print(f"| refinement (REFINE), per step, warm-started tracing, tiled small chunks (the default) | {warm:.3f} "
          f"({n} steps: {n * warm:.0f} s; {cold / warm:.2f}x; {loop / warm:.2f}x the loop) |")
    return 0


def print_rows(args, t_maps: float, t_ff: float, rows, dense) -> None:
    threads = torch.get_num_threads()
    print(f"shipped small models, demo image 0 (128^2), {threads} threads, best of {args.repeats}")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| predictor maps | {t_maps:.3f} |")
    print(f"| regressor codes and pose | {t_ff:.3f} |")
    base = next(t for name, t, _, _ in rows if name == BASELINE)
    for name, t_mesh, queries, same in rows:
        total = t_maps + t_ff + t_mesh
        print(f"| {args.resolution}^3 posed mesh, {name}: {queries:,} queries, "
              f"{'same triangles as dense' if same else 'DIFFERENT from dense'} | {t_mesh:.2f} "
              f"(image -> mesh {total:.2f}; {base / t_mesh:.2f}x the baseline) |")
    print(f"dense {args.resolution}^3: {dense.n_queries:,} queries")


if __name__ == "__main__":
    sys.exit(main())
