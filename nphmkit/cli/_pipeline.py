"""What ``reconstruct`` and ``track`` share: the pipeline flags, building :class:`~nphmkit.pipeline.Pix2NPHM`
from them, the face and crop flags, and the provenance (weights, sha256, which path ran)."""

from __future__ import annotations

import argparse
import math

from nphmkit.cli._common import CliError, output_folder, progress, say
from nphmkit.cli.models import add_model_flags, check_model_flags, load_model

SYNTHETIC_NOTICE = ("The shipped weights were trained on nphmkit's synthetic head family only: on a real photo the "
                    "result is the closest synthetic-family head, not a faithful reconstruction.")


def add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    p.add_argument("--predictor", default="small_predictor",
                   help="dense predictor weight folder (default: the shipped small predictor, synthetic heads only)")
    p.add_argument("--pixel3dmm-normals", default=None, metavar="CKPT",
                   help="official Pixel3DMM normals.ckpt instead of --predictor: refinement on its (head-frame) normals "
                        "and a silhouette, the mask from --mask or the shipped predictor")
    p.add_argument("--mask", default=None, metavar="PNG",
                   help="the head mask of the (single) input photo, white = head, in the photo's pixels")
    p.add_argument("--regressor", default="auto",
                   help="regressor weight folder, 'none', or 'auto' (default: the shipped small regressor when the "
                        "shipped predictor and NPHM are used)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="inference-time refinement against the predicted maps (default on)")
    p.add_argument("--steps", type=int, default=None,
                   help="refinement steps (default: the pipeline's: 50 from the regressor's start, 100 without one)")
    p.add_argument("--resolution", type=int, default=128, help="marching-cubes resolution per axis (default 128)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--mm", action="store_true", help="also write meshes in millimetres (posed_mm.ply, neutral_mm.ply)")
    p.add_argument("--seed", type=int, default=0, help="seeds the refinement's pixel sampling (default 0)")
    p.add_argument("--face-index", type=int, default=0, help="which detected face, 0 = the largest (default)")
    p.add_argument("--bbox", default=None, metavar="X0,Y0,X1,Y1",
                   help="the face box by hand, in pixels of the original image (skips detection)")
    p.add_argument("--cropped", action="store_true",
                   help="the inputs are already square face crops framed as the networks were trained (the face box "
                        "x1.42, as 'nphmkit synth' and the demo images): no detection, the whole image is used")
    p.add_argument("--focal", type=_focal_value, default=None, metavar="PX|auto",
                   help="the photos' focal length in their own pixels, principal point at the centre; 'auto' "
                        "estimates it from the predicted canonical map (default: unknown, the crop gets the default "
                        "intrinsics, focal length 2 crop widths)")
    p.add_argument("--intrinsics", default=None, metavar="JSON",
                   help="the inputs' intrinsics in their own pixels: a JSON file with one 3x3 K for every input, "
                        "{file name: K}, or an nphmkit dataset's index.json (as 'nphmkit synth' writes)")
    p.add_argument("--detector", default="lbp", choices=("lbp", "opencv"),
                   help="face detector: lbp (scikit-image, default) or opencv (the opencv extra)")
    p.add_argument("--min-neighbors", type=int, default=8,
                   help="detections a face needs (higher: fewer false faces; default 8)")


def _focal_value(text: str):
    """``--focal``: a number of pixels, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a focal length in pixels or 'auto', got {text!r}") from None


def _read_intrinsics(path_text: str):
    """``--intrinsics``: one ``(3, 3)`` K for every input, or ``{file name: K}`` (from a mapping or from a dataset
    index's ``images`` records)."""
    import json

    from nphmkit.cli._common import input_file
    from nphmkit.pipeline.photos import check_photo_K

    path = input_file("--intrinsics", path_text)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CliError(f"--intrinsics: {path} is not readable JSON ({' '.join(str(err).split())})") from None
    try:
        if isinstance(data, list):
            return check_photo_K(data, f"--intrinsics: {path}")
        if isinstance(data, dict) and isinstance(data.get("images"), list):  # an nphmkit dataset's index.json
            return {str(r["rgb"]): check_photo_K(r["K"], f"--intrinsics: {path}: {r['rgb']}") for r in data["images"]}
        if isinstance(data, dict) and data:
            return {str(name): check_photo_K(K, f"--intrinsics: {path}: {name}") for name, K in data.items()}
    except (KeyError, TypeError) as err:
        raise CliError(f"--intrinsics: {path}: a dataset index record lacks 'rgb' or 'K' ({err})") from None
    except ValueError as err:
        raise CliError(str(err)) from None
    raise CliError(f"--intrinsics: {path}: expected a 3x3 list, {{file name: 3x3}} or a dataset index.json, "
                   f"got {type(data).__name__}{' (empty)' if not data else ''}")


def input_K(args: argparse.Namespace, source):
    """The ``--intrinsics`` K of one input (a photo, a video or a frame folder; looked up by file or folder name),
    or None without the flag. ValueError (a recorded failure of that input) when the file has no entry for it."""
    table = getattr(args, "intrinsics_table", None)
    if table is None or not isinstance(table, dict):
        return table
    from pathlib import Path

    name = Path(source).name
    if name not in table:
        raise ValueError(f"--intrinsics: {args.intrinsics} has no entry for {name} (it has {len(table)}: "
                         f"{', '.join(sorted(table)[:3])}{', ...' if len(table) > 3 else ''})")
    return table[name]


def focal_note(args: argparse.Namespace, K, size: int) -> str | None:
    """A note when ``--focal`` or ``--intrinsics`` puts the crop's focal length outside the range the shipped
    regressor was trained on (the synthetic renders' 1.8 to 4.0 crop widths): its pose and codes then extrapolate.
    None otherwise."""
    if (args.focal is None and args.intrinsics is None and not args.focal_auto) or args.regressor != "small_regressor":
        return None
    from nphmkit.data.synthetic.dataset import SynthConfig

    lo, hi = SynthConfig.focal
    widths = float(K[0, 0]) / size
    if lo <= widths <= hi:
        return None
    return (f"the crop's focal length is {widths:.2f} crop widths, outside the {lo:g}-{hi:g} the shipped regressor "
            "was trained on: its pose and codes extrapolate")


def focal_summary(args: argparse.Namespace, K, size: int) -> str:
    """``", focal 2.9 crop widths (estimated)"`` for an item's summary line under ``--focal auto``, else ``""``."""
    return f", focal {float(K[0, 0]) / size:.1f} crop widths (estimated)" if args.focal_auto else ""


def check_pipeline_flags(args: argparse.Namespace) -> dict:
    """Check the flags before any work; returns the provenance of every weight folder used."""
    from nphmkit.preprocess.detect import DetectorConfig
    from nphmkit.pretrained import weights_folder, weights_sha256

    if args.weights is None and args.checkpoint is None and args.anchors is None:
        args.weights = "small"
    weights = {"nphm": check_model_flags(args)}
    if args.steps is not None and args.steps < 1:
        raise CliError(f"--steps: expected a positive number of steps, got {args.steps}")
    if args.steps is not None and not args.refine:
        raise CliError("--steps: refinement steps were given with --no-refine; drop one of them")
    if not 16 <= args.resolution <= 512:
        raise CliError(f"--resolution: expected 16 to 512 voxels per axis, got {args.resolution}")
    if args.device not in ("cpu", "cuda") and not str(args.device).startswith("cuda:"):
        raise CliError(f"--device: expected cpu or cuda, got {args.device!r}")
    if str(args.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CliError("--device: cuda was asked for, but torch sees no CUDA GPU")
    if args.face_index < 0:
        raise CliError(f"--face-index: expected 0 or more, got {args.face_index}")
    args.focal_auto = args.focal == "auto"
    if args.focal_auto:
        if args.intrinsics is not None:
            raise CliError("--focal and --intrinsics: give the focal length or the intrinsics file, not both")
        if args.pixel3dmm_normals is not None:
            raise CliError("--focal auto and --pixel3dmm-normals: the focal length is estimated from a canonical "
                           "point map, which the Pixel3DMM normal network does not predict")
        args.focal = None
    if args.focal is not None and not (math.isfinite(args.focal) and args.focal > 0):
        raise CliError(f"--focal: expected a positive focal length in pixels, got {args.focal}")
    args.intrinsics_table = None
    if args.intrinsics is not None:
        if args.focal is not None:
            raise CliError("--focal and --intrinsics: give the focal length or the intrinsics file, not both")
        args.intrinsics_table = _read_intrinsics(args.intrinsics)
    if args.cropped and args.face_index:
        raise CliError("--face-index and --cropped: a crop holds one face and nothing is detected; drop --face-index")
    if args.bbox is not None:
        try:
            box = [float(v) for v in args.bbox.split(",")]
        except ValueError:
            box = []
        if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
            raise CliError(f"--bbox: expected X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0 (pixels), got {args.bbox!r}")
        if args.face_index:
            raise CliError("--bbox and --face-index: a box given by hand is one face; drop --face-index")
        args.bbox_values = box
        if args.cropped:
            raise CliError("--bbox and --cropped: --cropped uses the whole image as the crop; drop one of them")
    else:
        args.bbox_values = None
    try:
        args.detector_config = DetectorConfig(backend=args.detector, min_neighbors=args.min_neighbors)
    except ValueError as err:
        raise CliError(f"--min-neighbors: {err}") from None
    if args.pixel3dmm_normals is not None:
        from nphmkit.cli._common import file_sha256, input_file

        if args.predictor != "small_predictor":
            raise CliError("--pixel3dmm-normals and --predictor: give one normal predictor, not both")
        ckpt = input_file("--pixel3dmm-normals", args.pixel3dmm_normals)
        weights["pixel3dmm_normals"] = {"path": str(ckpt), "sha256": file_sha256(ckpt)}
        if args.regressor == "auto":
            args.regressor = "none"
    if args.mask is not None:
        from nphmkit.cli._common import input_file

        args.mask = str(input_file("--mask", args.mask))
    for flag, name in (("--predictor", args.predictor), ("--regressor", args.regressor)):
        if flag == "--regressor" and name in ("none", "auto"):
            continue
        try:
            folder = weights_folder(name)
        except FileNotFoundError as err:
            raise CliError(f"{flag}: {' '.join(str(err).split())}".replace("weights: ", "", 1)) from None
        _check_kind(flag, folder, "DensePredictor" if flag == "--predictor" else "Pix2NPHMRegressor")
        weights[flag[2:]] = {"path": str(folder), "sha256": weights_sha256(folder)}
    shipped = args.weights == "small" and args.predictor == "small_predictor" and args.pixel3dmm_normals is None
    if args.regressor == "auto":
        from nphmkit.pretrained import has_weights

        args.regressor = "small_regressor" if shipped and has_weights("small_regressor") else "none"
        if args.regressor != "none":
            folder = weights_folder("small_regressor")
            weights["regressor"] = {"path": str(folder), "sha256": weights_sha256(folder)}
    nphm = weights["nphm"]
    weights["nphm"] = {"path": nphm.get("folder", nphm.get("checkpoint")), **nphm}
    args.shipped = shipped
    return weights


def _check_kind(flag: str, folder, kind: str) -> None:
    """Refuse a weight folder of another kind before any work (naming both kinds)."""
    import json

    config = folder / "config.json"
    if not config.is_file():
        raise CliError(f"{flag}: {folder} is not an nphmkit weight folder (no config.json)")
    found = json.loads(config.read_text()).get("kind")
    if found != kind:
        raise CliError(f"{flag}: expected weights of kind {kind!r}, got {found!r} in {folder}")


def build_pipeline(args: argparse.Namespace):
    """The :class:`~nphmkit.pipeline.Pix2NPHM` of checked flags, and a line saying which path runs."""
    from nphmkit.heads.dense import DensePredictor
    from nphmkit.heads.regressor import Pix2NPHMRegressor
    from nphmkit.pipeline import Pix2NPHM
    from nphmkit.pretrained import weights_folder

    model = load_model(args)
    try:
        shipped_kind = DensePredictor.load(weights_folder(args.predictor), map_location=args.device)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(f"--predictor: {' '.join(str(err).split())}") from None
    predictor, mask_predictor = shipped_kind.eval().requires_grad_(False), None
    if args.pixel3dmm_normals is not None:
        from nphmkit.heads import load_pixel3dmm

        try:
            official = load_pixel3dmm(args.pixel3dmm_normals)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CliError(f"--pixel3dmm-normals: {' '.join(str(err).split())}") from None
        predictor, mask_predictor = official.to(args.device).requires_grad_(False), predictor
    regressor = None
    if args.regressor != "none":
        try:
            regressor = Pix2NPHMRegressor.load(weights_folder(args.regressor), map_location=args.device)
        except (ValueError, FileNotFoundError) as err:
            raise CliError(f"--regressor: {' '.join(str(err).split())}") from None
        regressor = regressor.eval().requires_grad_(False)
    try:
        pipe = Pix2NPHM(model, predictor, regressor, mask_predictor=mask_predictor)
    except ValueError as err:
        raise CliError(f"--regressor: {' '.join(str(err).split())}") from None
    if args.pixel3dmm_normals is not None:
        mask = "--mask" if args.mask else "the shipped predictor's mask"
        path = (f"official Pixel3DMM normals (head frame) and {mask} -> "
                + ("regressor codes and pose" if regressor is not None else "initial codes, crop-convention pose")
                + (" -> refinement on normals and silhouette" if args.refine else " (no refinement)"))
    else:
        path = ("predictor maps -> " + ("regressor codes and pose" if regressor is not None else "initial codes, PnP pose")
                + (" -> refinement on normals, canonical points and mask" if args.refine else " (no refinement)"))
    say(args, f"path: {path}")
    if args.shipped:
        say(args, f"note: {SYNTHETIC_NOTICE}")
    return pipe, path


def _wait_folder(path):
    """The output folder rank 0 creates (other ranks wait up to a minute for it)."""
    import time
    from pathlib import Path

    p = Path(path).expanduser()
    for _ in range(600):
        if p.is_dir():
            return p
        time.sleep(0.1)
    raise CliError(f"-o/--output: {p} was not created by rank 0")


def run_batch(args: argparse.Namespace, weights: dict, sources: list, one, what: str, done_verb: str) -> int:
    """The batch loop of ``reconstruct`` and ``track``: shard the inputs, skip finished items, run
    ``one(args, pipe, job, name, source) -> line`` on the rest, then (rank 0) ``failures.json``,
    ``summary.json`` and ``index.html``. Returns the exit status (1 if any item failed)."""
    import json
    import sys

    from nphmkit import __version__
    from nphmkit._progress import progress_bar
    from nphmkit.pipeline.batch import BatchJob, rank_and_world
    from nphmkit.pipeline.report import write_index
    from nphmkit.preprocess.images import item_names

    rank, world = rank_and_world()
    out = output_folder(args, "-o/--output", args.output) if rank == 0 else _wait_folder(args.output)
    names = item_names(sources)
    job = BatchJob(out, rank, world)
    pipe, path = build_pipeline(args)
    if rank == 0:
        say(args, "weights: " + "; ".join(f"{k} {v.get('path')} (sha256 {str(v.get('sha256', v.get('checkpoint_sha256')))[:12]})"
                                          for k, v in weights.items()))
    mine = job.shard(list(zip(names, sources)))
    todo = [(n, p) for n, p in mine if not job.is_done(n)]
    if len(todo) < len(mine):
        say(args, f"{len(mine) - len(todo)} of {len(mine)} {what} already done in {out} (skipped)")
    bar = progress_bar(todo, progress=progress(args), desc=what, unit=what[:-1])
    for name, source in bar:
        line = one(args, pipe, job, name, source)
        if not args.quiet:
            (bar.write if hasattr(bar, "write") else print)(line, file=sys.stderr)
    plain = (int, float, bool, list, type(None))
    provenance = {"nphmkit": __version__, "command": args.command, "path": path, "weights": weights,
                  "arguments": {k: (v if isinstance(v, plain) else str(v)) for k, v in vars(args).items()
                                if k not in ("run", "detector_config")}}
    if args.shipped:
        provenance["notice"] = SYNTHETIC_NOTICE
    summary = job.close(names, [str(p) for p in sources], provenance)
    if summary is None:
        return 1 if job.failures else 0
    failures = json.loads((out / "failures.json").read_text())
    write_index(out, summary, failures, title=f"nphmkit {args.command}")
    say(args, f"{summary['finished']} of {len(sources)} {what} {done_verb}, {len(failures)} failed -> {out}/index.html")
    return 1 if failures else 0
