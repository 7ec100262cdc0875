"""Synthetic data throughput: pre-rendering (``nphmkit synth --workers``) and rendering on the fly.

    python benchmarks/bench_synth.py [--images 32] [--size 128] [--workers 1 2] [--batch 16] [--repeats 3]

Times ``write_dataset`` of ``--images`` images with each worker count and render batch
(``SynthConfig.batch``, alternated), and one training batch of 16
images from :class:`~nphmkit.data.synthetic.stream.SyntheticStream` (on the fly) against the same
16 read from the written folder, so the ratio says what rendering on the fly costs per step here.
First, in this process: one ``render_batch`` of 16 images with the value-only SDF that tracing calls
(the default) against the full composition, which also blends canonical points, groups and carving
(the baseline: what ``SyntheticHead.sdf`` computed before), alternated, best of ``--repeats``; both give
the same images bit for bit.
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
    variants = {"value-only SDF (default)": value_only, "full composition (baseline)": lambda h, p: h._compose(p).value}
    times = {k: [] for k in variants}
    images = {}
    try:
        for _ in range(args.repeats + 1):  # alternated; the first round warms up
            for name, sdf in variants.items():
                SyntheticHead.sdf = sdf
                t0 = time.perf_counter()
                images[name] = render_batch(plans, cfg)[0]
                times[name].append(time.perf_counter() - t0)
    finally:
        SyntheticHead.sdf = value_only  # the workers below must render with the default
    best = {k: min(v[1:]) for k, v in times.items()}
    same = torch.equal(*images.values())
    print("| render_batch of 16 images, in this process | seconds | images/s |")
    print("|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t:.2f} | {16 / t:.1f} ({best['full composition (baseline)'] / t:.2f}x) |")
    print(f"same images bit for bit: {same}\n")
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
