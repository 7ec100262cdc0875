"""How well the focal length of a crop is estimated from the predicted canonical map (``K="auto"``).

    python benchmarks/bench_focal.py [--data out/heldout20] [--images 20] [--predictor DIR]

For each rendered crop of ``--data`` (a dataset in the API.md layout: the renders' own intrinsics are the truth),
the shipped predictor's maps (or those of ``--predictor``) go through ``Pix2NPHM.estimate_intrinsics`` (PnP on the
canonical map under focal lengths of 1.4 to 5 crop widths, the best reprojection kept), and the estimate is
compared with the render's focal length, in crop widths. The baseline is what a crop of unknown camera gets
without it: the default crop intrinsics (2 widths). The same is done on the exact canonical maps, which bounds
what the method can do with a perfect predictor. Prints a row per image, then the mean and median errors and
the seconds per estimate: the pipeline's coarse-to-fine search (``step=3``) against the full search over every
candidate (the reference, ``estimate_focal(..., step=1)``), alternated per image, with how often they agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import machine  # noqa: E402


def main() -> int:
    from nphmkit.data.dataset import ImageDataset
    from nphmkit.fitting.focal import centred_intrinsics, estimate_focal
    from nphmkit.heads.dense import DenseMaps, DensePredictor
    from nphmkit.pipeline import Pix2NPHM
    from nphmkit.pretrained import load_small_nphm, load_small_predictor
    from nphmkit.render import DEFAULT_FOCAL

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "heldout20")
    parser.add_argument("--images", type=int, default=20, help="the first N images of --data")
    parser.add_argument("--predictor", type=Path, default=None, help="a dense predictor's weight folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"--data: {args.data} is not a folder (render one with `nphmkit synth`, see "
                         "benchmarks/RESULTS.md 'What an unknown focal length costs')")
    data = ImageDataset(args.data)
    if not 1 <= args.images <= len(data):
        raise SystemExit(f"--images: expected 1 to {len(data)} (the images of {args.data}), got {args.images}")
    predictor = load_small_predictor() if args.predictor is None else DensePredictor.load(args.predictor).eval()
    pipe = Pix2NPHM(load_small_nphm(), predictor)
    print(f"# {machine()}; {args.data}, {args.images} images")
    print("| image | true | predicted maps | exact maps | default |")
    print("|---|---|---|---|---|")
    rows, seconds, seconds_full, agree = [], [], [], 0
    for i in range(args.images):
        item = data[i]
        width = item["rgb"].shape[1]
        true = float(item["K"][0, 0]) / width
        maps = pipe.maps(item["rgb"][None])
        t0 = time.perf_counter()
        K = pipe.estimate_intrinsics(maps, progress=False)[0]
        seconds.append(time.perf_counter() - t0)
        est = float(K[0, 0]) / width
        t0 = time.perf_counter()
        full = estimate_focal(maps.canonical[0], maps.mask[0], centred_intrinsics(width), step=1)
        seconds_full.append(time.perf_counter() - t0)
        agree += bool(torch.equal(full.K, K))
        exact = DenseMaps(item["normals"][None], item["canonical"][None], item["mask"][None] & item["canonical_valid"][None])
        est_exact = float(pipe.estimate_intrinsics(exact, progress=False)[0, 0, 0]) / width
        rows.append((true, est, est_exact))
        print(f"| {i} | {true:.2f} | {est:.1f} | {est_exact:.1f} | {DEFAULT_FOCAL:.1f} |", flush=True)
    t = torch.tensor(rows, dtype=torch.float64)
    print("\n| focal length (crop widths) | mean / median abs error | mean relative error |")
    print("|---|---|---|")
    for name, col in (("estimated, predicted maps (`K=\"auto\"`)", t[:, 1]), ("estimated, exact maps", t[:, 2]),
                      ("default crop intrinsics", torch.full_like(t[:, 0], DEFAULT_FOCAL))):
        err = (col - t[:, 0]).abs()
        print(f"| {name} | {err.mean():.3f} / {err.median():.3f} | {(err / t[:, 0]).mean() * 100:.1f} % |")
    fast, ref = sum(seconds) / len(seconds), sum(seconds_full) / len(seconds_full)
    print(f"\nper estimate on the predicted maps: coarse-to-fine (step 3) {fast:.2f} s, every candidate {ref:.2f} s "
          f"({ref / fast:.2f}x); the same focal length on {agree} of {len(seconds)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
