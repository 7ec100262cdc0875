"""Synthetic data throughput: pre-rendering (``nphmkit synth --workers``) and rendering on the fly.

    python benchmarks/bench_synth.py [--images 32] [--size 128] [--workers 1 2] [--batch 16] [--repeats 3]

Times ``write_dataset`` of ``--images`` images with each worker count and render batch
(``SynthConfig.batch``, alternated), and one training batch of 16
images from :class:`~nphmkit.data.synthetic.stream.SyntheticStream` (on the fly) against the same
16 read from the written folder, so the ratio says what rendering on the fly costs per step here.
First, in this process: one ``render_batch`` of 16 images three ways, alternated, best of ``--repeats``: on
coordinate planes (``SyntheticHead.coordinate_planes``, the default), on ``(B, N, 3)`` points (the reference),
and on points with the full composition in the SDF too (what ``SyntheticHead.sdf`` computed before the
value-only SDF); the last two give the same images bit for bit, the planes the same to float rounding
(printed: mask pixels and 8-bit RGB values that differ).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[16], help="render batches (SynthConfig.batch)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from nphmkit.data.dataset import ImageDataset
    from nphmkit.data.synthetic.dataset import SynthConfig, image_plan, render_batch, write_dataset
    from nphmkit.data.synthetic.head import SyntheticHead
    from nphmkit.data.synthetic.stream import SyntheticStream

    cfg = SynthConfig(image_size=args.size, seed=11)
    print(f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {args.images} images of {args.size}^2")
    plans = [image_plan(i, cfg) for i in range(16)]
    value_only = SyntheticHead.sdf
    full = lambda h, p: h._compose(p).value  # noqa: E731
    variants = {"coordinate planes (default)": (True, value_only), "(B, N, 3) points (reference)": (False, value_only),
                "points, full composition in the SDF": (False, full)}
    times = {k: [] for k in variants}
    out = {}
    try:
        for _ in range(args.repeats + 1):  # alternated; the first round warms up
            for name, (planes, sdf) in variants.items():
                SyntheticHead.coordinate_planes, SyntheticHead.sdf = planes, sdf
                t0 = time.perf_counter()
                rgb, maps = render_batch(plans, cfg)[:2]
                times[name].append(time.perf_counter() - t0)
                out[name] = (torch.round(rgb * 255), maps.mask)
    finally:  # the workers below render with the defaults
        SyntheticHead.coordinate_planes, SyntheticHead.sdf = True, value_only
    best = {k: min(v[1:]) for k, v in times.items()}
    base = best["points, full composition in the SDF"]
    print("| render_batch of 16 images, in this process | seconds | images/s |")
    print("|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t:.2f} | {16 / t:.1f} ({base / t:.2f}x) |")
    (rgb_p, mask_p), (rgb_r, mask_r), (rgb_f, mask_f) = out.values()
    print(f"reference and full composition the same bit for bit: {torch.equal(rgb_r, rgb_f) and torch.equal(mask_r, mask_f)}; "
          f"planes against the reference: {int((mask_p != mask_r).sum())} mask pixels and "
          f"{int((rgb_p != rgb_r).sum())} 8-bit RGB values of {rgb_p.numel()} differ\n")
    print("| data | seconds | images/s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for w in args.workers:
            for b in args.batch:
                t0 = time.perf_counter()
                folder = write_dataset(os.path.join(tmp, f"w{w}b{b}"), args.images, replace(cfg, batch=b),
                                       progress=False, workers=w)
                dt = time.perf_counter() - t0
                base = base or dt
                print(f"| nphmkit synth --workers {w} --batch {b} | {dt:.1f} | {args.images / dt:.1f} "
                      f"({base / dt:.2f}x) |")
        batch = list(range(min(16, args.images)))
        data = ImageDataset(folder)
        t0 = time.perf_counter()
        [data[i] for i in batch]
        disk = time.perf_counter() - t0
        print(f"| batch of {len(batch)} from the folder | {disk:.3f} | {len(batch) / disk:.0f} |")
        for w in (0, *[x for x in args.workers if x > 1]):
            with SyntheticStream(args.images, cfg, workers=w) as stream:
                stream.items(batch[:1] if w == 0 else batch)  # warm-up (worker start-up)
                t0 = time.perf_counter()
                stream.items(batch)
                dt = time.perf_counter() - t0
            print(f"| batch of {len(batch)} on the fly, {w} workers | {dt:.2f} | {len(batch) / dt:.1f} "
                  f"({dt / disk:.0f}x the folder) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
