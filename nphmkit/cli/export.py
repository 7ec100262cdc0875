"""``nphmkit export BATCH -o DEST --layout now|svfr``: reconstruct outputs in a benchmark's submission layout."""

from __future__ import annotations

import argparse

from nphmkit.cli._common import CliError, input_path, output_folder, say


def add_parser(sub, parents) -> None:
    p = sub.add_parser("export", parents=parents, help="write reconstruct outputs in the NoW or SVFR layout",
                       description="Write the finished items of an `nphmkit reconstruct` output folder in a benchmark "
                                   "layout: NoW (a millimetre mesh + 7 landmarks per image-list entry; items matched by "
                                   "their input path) or nphmkit's SVFR layout (posed mesh in the camera frame, neutral "
                                   "mesh, landmarks; millimetres).")
    p.add_argument("batch", help="an nphmkit reconstruct output folder")
    p.add_argument("-o", "--output", required=True, help="the layout's root folder")
    p.add_argument("--layout", choices=("now", "svfr"), default="now")
    p.add_argument("--image-list", default=None, help="NoW image list (imagepathsvalidation.txt / imagepathstest.txt)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nphmkit.eval.export import export_batch

    batch = input_path("batch", args.batch)
    if args.layout == "now" and args.image_list is None:
        raise CliError("--image-list: the NoW layout needs the image list the predictions are for")
    image_list = input_path("--image-list", args.image_list) if args.image_list else None
    if not (batch / "summary.json").is_file():
        raise CliError(f"batch: {batch} has no summary.json (not an nphmkit reconstruct output folder)")
    out = output_folder(args, "-o/--output", args.output)
    written = export_batch(batch, out, args.layout, image_list)
    say(args, f"wrote {len(written)} items in the {args.layout} layout to {out}")
    return 0
