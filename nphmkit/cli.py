"""The ``nphmkit`` command: ``nphmkit mesh | synth | ...``; run ``nphmkit -h`` for the list."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


class CliError(Exception):
    """An error the command reports in one line (exit status 2)."""


def _load_model(args):
    from nphmkit.nphm import NPHM
    from nphmkit.nphm.checkpoint import load_mononphm

    if args.weights:
        return NPHM.load(args.weights, map_location=args.device)
    if not args.checkpoint or not args.anchors:
        raise CliError("give --weights DIR (an nphmkit weight folder) or both --checkpoint and --anchors")
    return load_mononphm(args.checkpoint, args.anchors).to(args.device)


def _cmd_mesh(args) -> int:
    import time

    from nphmkit.mesh import save_mesh
    from nphmkit.nphm.codes import load_codes
    from nphmkit.nphm.meshing import head_mesh

    start = time.perf_counter()
    out = Path(args.output)
    if out.suffix.lower() not in (".ply", ".obj", ".glb"):
        raise CliError(f"-o/--output: expected a .ply, .obj or .glb file name, got {out.name!r}")
    model = _load_model(args).eval()
    codes = load_codes(args.codes)
    cfg = model.config
    if codes.z_id.shape[1] != cfg.id_dim or codes.z_ex.shape[1] != cfg.lat_dim_ex:
        raise CliError(
            f"--codes: the codes have z_id {tuple(codes.z_id.shape)} and z_ex {tuple(codes.z_ex.shape)}, "
            f"the model expects (*, {cfg.id_dim}) and (*, {cfg.lat_dim_ex})"
        )
    if not 0 <= args.frame < len(codes):
        raise CliError(f"--frame: expected 0 <= frame < {len(codes)} (frames in the codes), got {args.frame}")
    z_id = codes.z_id[args.frame : args.frame + 1]
    z_ex = None if args.neutral else codes.z_ex[args.frame : args.frame + 1]
    mesh = head_mesh(model, z_id, z_ex, resolution=args.resolution, method=args.method, progress=not args.quiet)
    save_mesh(out, mesh, units="mm" if args.mm else "nphm")
    dense = args.resolution**3
    print(
        f"wrote {out}: {mesh.n_vertices} vertices, {mesh.n_faces} faces, {mesh.n_queries} SDF queries "
        f"({mesh.n_queries / dense:.1%} of a dense {args.resolution}^3 grid), "
        f"{'neutral' if args.neutral else 'posed'}, {'mm' if args.mm else 'NPHM units'}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


def _cmd_synth(args) -> int:
    import time

    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    if args.n < 1:
        raise CliError(f"-n: expected at least 1 image, got {args.n}")
    if args.size < 16:
        raise CliError(f"--size: expected at least 16 pixels, got {args.size}")
    start = time.perf_counter()
    config = SynthConfig(image_size=args.size, seed=args.seed, expressions_per_head=args.expressions,
                         views_per_expression=args.views)
    folder = write_dataset(args.output, args.n, config, progress=not args.quiet)
    heads = -(-args.n // (args.expressions * args.views))
    print(f"wrote {args.n} images of {heads} synthetic heads ({args.size}x{args.size}) to {folder} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nphmkit", description="nphmkit command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)

    mesh = sub.add_parser("mesh", help="mesh a head from codes (posed or neutral)")
    mesh.add_argument("--checkpoint", help="official MonoNPHM checkpoint_epoch_*.tar")
    mesh.add_argument("--anchors", help="official anchors_65.npy (with --checkpoint)")
    mesh.add_argument("--weights", help="an nphmkit weight folder (instead of --checkpoint/--anchors)")
    mesh.add_argument("--codes", required=True, help="codes .npz or an official tracking folder (z_geo.npy, z_exp.npy)")
    mesh.add_argument("-o", "--output", required=True, help="output .ply, .obj or .glb")
    mesh.add_argument("--resolution", type=int, default=256, help="grid points per axis (default 256)")
    mesh.add_argument("--neutral", action="store_true", help="the neutral head (identity SDF at hyper 0)")
    mesh.add_argument("--mm", action="store_true", help="write millimetres instead of NPHM units")
    mesh.add_argument("--frame", type=int, default=0, help="which code of a batch / sequence (default 0)")
    mesh.add_argument("--method", choices=["coarse_to_fine", "dense"], default="coarse_to_fine")
    mesh.add_argument("--device", default="cpu")
    mesh.add_argument("--quiet", action="store_true", help="no progress bar")
    mesh.set_defaults(run=_cmd_mesh)

    synth = sub.add_parser("synth", help="render a dataset of synthetic heads (images + exact maps)")
    synth.add_argument("-n", type=int, required=True, help="number of images")
    synth.add_argument("-o", "--output", required=True, help="output folder")
    synth.add_argument("--size", type=int, default=256, help="image width and height (default 256)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--expressions", type=int, default=2, help="expressions per head, the first neutral")
    synth.add_argument("--views", type=int, default=2, help="views per expression")
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(run=_cmd_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (CliError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"nphmkit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
