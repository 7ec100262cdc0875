"""Exact scan-to-mesh distances (nphmkit.eval.closest_points) against brute force over all triangles.

    python benchmarks/bench_eval.py [--points 100000] [--level 6]

An icosphere with 20 * 4^level faces (level 6: 81,920; 7: 327,680) and noisy points around it;
brute force is timed on 200 points and scaled to all (it is linear in the points).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import machine  # noqa: E402
from nphmkit.eval import closest_points, point_mesh_distance_reference  # noqa: E402
from tests.eval.shapes import icosphere  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--level", type=int, default=7)
    args = p.parse_args()
    v, f = icosphere(1.0, args.level)
    g = np.random.default_rng(0)
    pts = g.normal(size=(args.points, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * (1 + 0.02 * g.normal(size=(args.points, 1)))
    print(f"machine: {machine()}; {args.points} points, {len(f)} faces")
    t = time.perf_counter()
    out = closest_points(pts, v, f)
    fast = time.perf_counter() - t
    t = time.perf_counter()
    ref = point_mesh_distance_reference(pts[:200], v, f)
    brute = (time.perf_counter() - t) * args.points / 200
    err = float(np.abs(out.distance[:200] - ref).max())
    print(f"closest_points {fast:8.2f} s   brute force (extrapolated) {brute:10.1f} s   ratio {brute / fast:8.0f}x   "
          f"max |difference| on 200 points {err:.1e}")


if __name__ == "__main__":
    main()
