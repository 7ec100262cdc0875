"""Refinement from feed-forward codes: schedules and priors compared on held-out synthetic images.

    python benchmarks/bench_refine_variants.py [--images 0 1 3] [--steps 100] [--variants '{"name": {...}}']

Each variant is a set of :class:`~nphmkit.fitting.ImageFitConfig` overrides (plus ``"steps": 0`` for the
feed-forward result itself) applied to a refinement started from the shipped regressor's codes and pose
against the shipped predictor's maps. Printed per image and summed: NoW mean (mm, aligned), posed
surface error (mm), mean landmark error (mm, camera frame). How ``nphmkit.pipeline.pix2nphm.REFINE`` was
chosen (benchmarks/RESULTS.md). Needs the held-out renders of bench_reconstruction.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_VARIANTS = {
    "feed-forward": {"steps": 0},
    "default fit_image": {},
    "lr 1e-3": {"lr_codes": 1e-3},
    "anchor 0.01": {"anchor": 0.01},
    "anchor 0.1": {"anchor": 0.1},
    "anchor 0.1, lr 1e-3": {"anchor": 0.1, "lr_codes": 1e-3},
    "anchor 0.1, lr 1e-3, pose 2e-4": {"anchor": 0.1, "lr_codes": 1e-3, "lr_pose": 2e-4},
    "anchor 0.1, lr 1e-3, pose fixed": {"anchor": 0.1, "lr_codes": 1e-3, "fit_pose": False},
    "anchor 0.3, lr 2e-3, pose fixed": {"anchor": 0.3, "lr_codes": 2e-3, "fit_pose": False},
    "anchor 0.1, lr 1e-3, pose fixed, points 10": {"anchor": 0.1, "lr_codes": 1e-3, "fit_pose": False, "w_points": 10.0},
}


def main() -> int:

    from bench_reconstruction import evaluate_stage, ground_truth

    from nphmkit.data.dataset import ImageDataset
    from nphmkit.fitting import FitResult, ImageFitConfig, fit_image
    from nphmkit.pipeline import Pix2NPHM
    from nphmkit.pretrained import load_small_nphm, load_small_predictor, load_small_regressor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "small_predictor" / "heldout")
    parser.add_argument("--images", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--variants", default=None, help="JSON {name: overrides} (default: the variants measured)")
    args = parser.parse_args()
    if not (args.data / "index.json").is_file():
        raise SystemExit(f"--data: {args.data} has no index.json; run benchmarks/bench_reconstruction.py first")
    variants = json.loads(args.variants) if args.variants else DEFAULT_VARIANTS
    data = ImageDataset(args.data)
    model, predictor, regressor = load_small_nphm(), load_small_predictor(), load_small_regressor()
    pipe = Pix2NPHM(model, predictor, regressor)
    totals: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in variants}
    for i in args.images:
        item = data[i]
        gt = ground_truth(i, item)
        ff = pipe.reconstruct(item["rgb"][None], item["K"], refine=False)
        start = FitResult(ff.z_id, ff.z_ex, ff.rotation, ff.translation, ff.scale)
        for name, over in variants.items():
            over = dict(over)
            steps = over.pop("steps", args.steps)
            t0 = time.perf_counter()
            if steps == 0:
                res = start
            else:
                cfg = replace(ImageFitConfig(steps=steps, patience=steps, seed=i), **over)
                m = ff.maps
                res = fit_image(model, m.normals, m.canonical, m.mask, item["K"][None], init=start, config=cfg,
                                progress=False, confidence=m.confidence)
            row = evaluate_stage(model, (res.z_id, res.z_ex), (res.rotation, res.translation, res.scale), gt, item, 96)
            figures = (row["now_mean_mm"], row["posed_mm"], row["landmarks_mm"])
            totals[name] = [a + b for a, b in zip(totals[name], figures)]
            print(f"image {i} | {name} | NoW {figures[0]:.3f} | posed {figures[1]:.2f} | landmarks {figures[2]:.2f} | "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    n = len(args.images)
    base = totals.get("feed-forward", [float("nan")])[0]
    print(f"\nmeans over images {args.images}, {args.steps} steps")
    print("| variant | NoW mean | vs feed-forward | posed | landmarks |")
    print("|---|---|---|---|---|")
    for name, (now, posed, marks) in totals.items():
        print(f"| {name} | {now / n:.3f} | {100 * (now / base - 1):+.0f} % | {posed / n:.2f} | {marks / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
