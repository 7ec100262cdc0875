"""``nphmkit eval PRED GT -o OUT``: surface figures (mm) of predicted meshes against ground-truth meshes.

PRED and GT are two mesh files, or two folders whose ``.ply`` / ``.obj`` files are matched by name
(``NN_posed.ply`` against ``NN_posed.ply``). ``--protocol svfr`` (alias ``surface``; meshes already
in one frame, as the single-view face-reconstruction benchmark compares them): accuracy,
completeness, chamfer, normal consistency, precision / recall / F-score at 1, 2.5, 5, 10 mm.
``--protocol now``: each GT mesh is a scan with its 7 landmarks beside it (``<stem>_landmarks.json``
as nphmkit writes them, or ``<stem>_landmarks.npy (7, 3)``), each PRED mesh too; NoW alignment
(landmarks, then rigid ICP) and the scan-to-mesh median / mean / std. Results: ``OUT/results.json``
and ``OUT/results.csv``; with the ``plot`` extra (matplotlib) also ``OUT/cdf.png`` (cumulative error
of every item), ``OUT/items.png`` (the main figure per item) and ``OUT/<item>_heatmap.png`` (the error
on the scan, NoW, or on the predicted mesh, svfr); ``--no-plots`` skips them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from nphmkit.cli._common import CliError, input_path, output_folder, say, write_provenance

MESHES = (".ply", ".obj")


def add_parser(sub, parents) -> None:
    p = sub.add_parser("eval", parents=parents, help="surface / NoW figures (mm) of meshes against ground truth",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("pred", help="a predicted mesh (.ply/.obj) or a folder of them")
    p.add_argument("gt", help="a ground-truth mesh or scan, or a folder matched by file name")
    p.add_argument("-o", "--output", required=True, help="output folder (results.json, results.csv)")
    p.add_argument("--protocol", choices=["svfr", "surface", "now"], default="svfr",
                   help="svfr (alias surface): meshes in one frame; now: landmark + ICP alignment to a scan")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (written when matplotlib is installed)")
    p.add_argument("--mm-per-unit", type=float, default=None,
                   help="millimetres per mesh unit (default: from the mesh header: 250 for NPHM units, 1 for mm)")
    p.add_argument("--samples", type=int, default=20_000, help="surface samples per mesh (surface protocol)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def _pairs(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    if pred.is_file() != gt.is_file():
        raise CliError("pred, gt: give two mesh files or two folders")
    if pred.is_file():
        for flag, p in (("pred", pred), ("gt", gt)):
            if p.suffix.lower() not in MESHES:
                raise CliError(f"{flag}: expected a .ply or .obj mesh, got {p.name!r}")
        return [(pred.stem, pred, gt)]
    found = {p.name: p for p in sorted(gt.iterdir()) if p.suffix.lower() in MESHES}
    pairs = [(p.stem, p, found[p.name]) for p in sorted(pred.iterdir()) if p.suffix.lower() in MESHES and p.name in found]
    if not pairs:
        raise CliError(f"pred, gt: no mesh file names in common between {pred} and {gt}")
    return pairs


def _landmarks(mesh_path: Path, flag: str):
    import numpy as np

    stem = mesh_path.with_suffix("")
    for cand in (Path(f"{stem}_landmarks.json"), Path(f"{stem}_landmarks.npy"),
                 mesh_path.with_name(mesh_path.stem.split("_")[0] + "_landmarks.json")):
        if cand.is_file():
            if cand.suffix == ".npy":
                arr = np.load(cand, allow_pickle=False)
            else:
                arr = np.array(list(json.loads(cand.read_text())["landmarks"].values()), float)
            if arr.shape != (7, 3):
                raise CliError(f"{flag}: {cand} holds {arr.shape} landmarks; expected (7, 3) in NoW order")
            return arr
    raise CliError(f"{flag}: no landmarks beside {mesh_path} (expected {stem.name}_landmarks.json or .npy)")


def _check_sizes(name: str, pred, gt) -> None:
    """Refuse a pair whose sizes differ by more than 10x: mixed-up units (e.g. mm against NPHM units, 250x)."""
    import numpy as np

    def extent(mesh) -> float:
        v = mesh.vertices.numpy()
        if v.size == 0 or not np.isfinite(v).all():
            raise CliError(f"{name}: a mesh with no vertices or with NaN/infinite vertices")
        return float(np.linalg.norm(v.max(0) - v.min(0)))

    a, b = extent(pred), extent(gt)
    if not (a > 0 and b > 0) or max(a / b, b / a) > 10:
        raise CliError(f"{name}: the prediction is {a / b:.3g}x the size of the ground truth (diagonals {a:.4g} and "
                       f"{b:.4g} in their file units); are the units mixed up? (NPHM units x 250 = mm)")


def run(args: argparse.Namespace) -> int:
    pred, gt = input_path("pred", args.pred), input_path("gt", args.gt)
    pairs = _pairs(pred, gt)
    out = output_folder(args, "-o/--output", args.output)

    from nphmkit._io import write_text
    from nphmkit._optional import available
    from nphmkit.eval import MM_PER_NPHM, now_errors, surface_metrics
    from nphmkit.mesh import load_mesh

    plots = not args.no_plots and available("matplotlib")
    if not args.no_plots and not plots:
        say(args, "plots skipped: install the plot extra (pip install 'nphmkit[plot]') for cdf.png, items.png, heat maps")
    protocol = "svfr" if args.protocol == "surface" else args.protocol
    rows, curves, heat = [], {}, []
    for name, p, g in pairs:
        try:
            pm, gm = load_mesh(p), load_mesh(g)
        except (ValueError, OSError) as err:
            raise CliError(f"{name}: {err}") from None
        scale = args.mm_per_unit
        if scale is None:
            if pm.units != gm.units:
                raise CliError(f"{name}: the meshes are in different units ({pm.units}, {gm.units}); convert one "
                               "or give --mm-per-unit")
            scale = MM_PER_NPHM if pm.units == "nphm" else 1.0
        _check_sizes(name, pm, gm)
        say(args, f"{name}: {protocol} ...")
        if protocol == "svfr":
            fig = surface_metrics(pm.vertices, pm.faces, gm.vertices, gm.faces, mm_per_unit=scale,
                                  n_samples=args.samples, seed=args.seed)
            row = {"item": name, "accuracy_mm": fig["accuracy"], "completeness_mm": fig["completeness"],
                   "chamfer_mm": fig["chamfer"], "normal_consistency": fig["normal_consistency"],
                   **{f"fscore_{k}": v for k, v in fig["fscore"].items()}}
            curves[name] = fig["accuracy_distances"]
            if plots:
                from nphmkit.eval import closest_points

                err = closest_points(pm.vertices, gm.vertices, gm.faces)
                heat.append((name, pm.vertices, pm.faces, err.distance * scale))
        else:
            res = now_errors(gm.vertices, _landmarks(g, "gt"), pm.vertices, pm.faces, _landmarks(p, "pred"),
                             mm_per_unit=scale)
            row = {"item": name, "median_mm": res.median, "mean_mm": res.mean, "std_mm": res.std,
                   "icp_iterations": res.icp.iterations}
            curves[name] = res.distances
            heat.append((name, gm.vertices, gm.faces, res.distances))
        rows.append(row)
    summary = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "item"}
    write_text(out / "results.json", json.dumps({"protocol": protocol, "mean": summary, "items": rows}, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "results.csv", buf.getvalue())
    write_provenance(out / "results.provenance.json", args, {})
    surface = ("chamfer_mm", "normal_consistency", "fscore_2.5mm")
    main_keys = surface if protocol == "svfr" else ("median_mm", "mean_mm", "std_mm")
    if plots:
        from nphmkit.eval.plots import error_cdf, error_heatmap, item_bars

        label = "accuracy (pred -> truth)" if protocol == "svfr" else "scan -> mesh"
        error_cdf(curves, out / "cdf.png", title=f"cumulative error, {label}")
        key = main_keys[0]
        item_bars({r["item"]: r[key] for r in rows}, out / "items.png", label=key, title=f"{protocol}: {key} per item")
        for name, v, f, d in heat:
            error_heatmap(v.numpy(), f.numpy(), d, out / f"{name}_heatmap.png", title=f"{name}: {label} (mm)")
    print(f"{len(rows)} item(s), mean " + ", ".join(f"{k} {summary[k]:.3f}" for k in main_keys) + f"; wrote {out}/results.json")
    return 0
