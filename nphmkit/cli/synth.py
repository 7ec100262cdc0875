"""``nphmkit synth``: a dataset of synthetic heads (images and their exact maps)."""

from __future__ import annotations

import argparse
import time

from nphmkit.cli._common import int_in_range, output_folder, progress


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "synth", parents=parents, help="render a dataset of synthetic heads (images + exact maps)",
        description="Render N images of nphmkit's synthetic head family with their exact maps (camera-frame normals, "
                    "canonical points, mask, depth), landmarks, head parameters and cameras, in the dataset layout that "
                    "'nphmkit train' reads (docs: Synthetic heads). Images are framed as photo crops (square, the face "
                    "box x1.42), so 'nphmkit reconstruct --cropped' takes them as they are. The same seed writes the "
                    "same files.")
    p.add_argument("-n", type=int, required=True, help="number of images")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--size", type=int, default=256, help="image width and height, 16 to 2048 (default 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="picks the heads, expressions, views and appearance (default 0; the shipped predictor trained "
                        "on seed 0 and is scored on seed 11)")
    p.add_argument("--expressions", type=int, default=2, help="expressions per head, the first neutral (default 2)")
    p.add_argument("--views", type=int, default=2, help="views per expression (default 2)")
    p.add_argument("--batch", type=int, default=16,
                   help="images rendered together, a worker's unit of work (default 16); the files do not depend on it")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes rendering in parallel, one thread each (default 1: this process); "
                        "the files are the same for any number")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    int_in_range("-n", args.n, 1, 10_000_000, " images")
    int_in_range("--size", args.size, 16, 2048, " pixels")
    int_in_range("--expressions", args.expressions, 1, 1000)
    int_in_range("--views", args.views, 1, 1000)
    int_in_range("--workers", args.workers, 1, 256)
    int_in_range("--batch", args.batch, 1, 4096)
    folder = output_folder(args, "-o/--output", args.output)

    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    start = time.perf_counter()
    config = SynthConfig(image_size=args.size, seed=args.seed, expressions_per_head=args.expressions,
                         views_per_expression=args.views, batch=args.batch)
    folder = write_dataset(folder, args.n, config, progress=progress(args), workers=args.workers)
    heads = -(-args.n // (args.expressions * args.views))
    procs = f", {args.workers} worker processes" if args.workers > 1 else ""
    print(f"wrote {args.n} images of {heads} synthetic heads ({args.size}x{args.size}) to {folder} "
          f"in {time.perf_counter() - start:.1f} s{procs}")
    return 0
