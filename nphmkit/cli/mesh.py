"""``nphmkit mesh``: a head mesh (posed or neutral) from codes."""

from __future__ import annotations

import argparse
import time

from nphmkit.cli._common import CliError, input_path, int_in_range, output_file, progress, say, write_provenance
from nphmkit.cli.models import add_model_flags, check_model_flags, load_model

FORMATS = (".ply", ".obj", ".glb")


def add_parser(sub, parents) -> None:
    p = sub.add_parser("mesh", parents=parents, help="mesh a head from codes (posed or neutral)",
                       description="Mesh a head from codes. Codes come from a fit (the demo's NN_codes.npz, "
                                   "nphmkit.nphm.codes.save_codes), the shipped registrations "
                                   "(nphmkit/assets/small_nphm/registrations.npz) or an official tracking folder.")
    add_model_flags(p)
    p.add_argument("--codes", required=True, help="codes .npz, or an official tracking folder (z_geo.npy, z_exp.npy)")
    p.add_argument("-o", "--output", required=True, help="output .ply, .obj or .glb (.glb needs trimesh)")
    p.add_argument("--resolution", type=int, default=256, help="grid points per axis, 16 to 1024 (default 256)")
    p.add_argument("--neutral", action="store_true", help="the neutral head (identity SDF at hyper 0)")
    p.add_argument("--mm", action="store_true", help="write millimetres instead of NPHM units")
    p.add_argument("--frame", type=int, default=0, help="which code of a batch / sequence (default 0)")
    p.add_argument("--method", choices=["coarse_to_fine", "dense"], default="coarse_to_fine")
    p.add_argument("--band", default="0.5",
                   help="coarse-to-fine: at the two finest levels evaluate only points whose estimate lies within "
                        "BAND cell diagonals of the surface (default 0.5); 'none' evaluates every point of the "
                        "flagged cells (more queries, for fields far from a distance)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def _band(text: str) -> float | None:
    """``--band`` as :func:`~nphmkit.mesh.extract_mesh` takes it: a positive number, or None for ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise CliError(f"--band: expected a positive number of cell diagonals or 'none', got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from nphmkit._optional import available

    start = time.perf_counter()
    # everything is checked before the expensive work
    int_in_range("--resolution", args.resolution, 16, 1024, " grid points per axis")
    band = _band(args.band)
    out = output_file(args, "-o/--output", args.output, FORMATS)
    if out.suffix.lower() == ".glb" and not available("trimesh"):
        raise CliError("-o/--output: .glb needs the optional extra trimesh (pip install 'nphmkit[mesh]'); "
                       "or write .ply / .obj")
    codes_path = input_path("--codes", args.codes)
    weights = check_model_flags(args)

    from nphmkit.mesh import save_mesh
    from nphmkit.nphm.codes import load_codes
    from nphmkit.nphm.meshing import head_mesh

    try:
        codes = load_codes(codes_path)
    except (ValueError, KeyError, OSError) as err:
        raise CliError(f"--codes: {err}") from None
    model = load_model(args)
    if codes.z_id.shape[1] != model.id_dim or codes.z_ex.shape[1] != model.ex_dim:
        raise CliError(
            f"--codes: the codes have z_id {tuple(codes.z_id.shape)} and z_ex {tuple(codes.z_ex.shape)}, "
            f"the model expects (*, {model.id_dim}) and (*, {model.ex_dim})"
        )
    if not 0 <= args.frame < len(codes):
        raise CliError(f"--frame: expected 0 <= frame < {len(codes)} (frames in the codes), got {args.frame}")
    z_id = codes.z_id[args.frame : args.frame + 1].to(args.device)
    z_ex = None if args.neutral else codes.z_ex[args.frame : args.frame + 1].to(args.device)
    say(args, f"meshing {'the neutral' if args.neutral else 'the posed'} head of frame {args.frame} "
              f"at {args.resolution}^3 ...")
    mesh = head_mesh(model, z_id, z_ex, resolution=args.resolution, method=args.method, band=band,
                     progress=progress(args))
    if mesh.n_faces == 0:
        raise CliError("no surface in the box: are the codes/units right? (nothing written)")
    save_mesh(out, mesh, units="mm" if args.mm else "nphm")
    record = out.with_name(out.name + ".json")
    write_provenance(record, args, weights, {"output": str(out), "vertices": mesh.n_vertices, "faces": mesh.n_faces})
    dense = args.resolution**3
    print(
        f"wrote {out}: {mesh.n_vertices} vertices, {mesh.n_faces} faces, {mesh.n_queries} SDF queries "
        f"({mesh.n_queries / dense:.1%} of a dense {args.resolution}^3 grid), "
        f"{'neutral' if args.neutral else 'posed'}, {'mm' if args.mm else 'NPHM units'}, "
        f"{time.perf_counter() - start:.1f} s (provenance: {record.name})"
    )
    return 0
