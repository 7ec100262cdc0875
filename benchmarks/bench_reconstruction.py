"""The synthetic reconstruction benchmark: Pix2NPHM stage by stage on held-out synthetic images with exact ground truth.

    python benchmarks/bench_reconstruction.py [--data out/small_predictor/heldout] [--images 20] [--steps 100]
                                              [--out out/bench_reconstruction] [--resolution 96] [--redo-b]
                                              [--stages abcde]

Images: the first ``--images`` of a held-out dataset folder (default: the predictor script's seed-11
renders: heads, expressions and views no model saw; rendered if missing). Stages, same images; (c) runs
``--steps`` steps, (b) the pipeline's own refinement (``REFINE.steps``; ``--steps`` without a regressor):

  (a) feed-forward: the regressor's codes and pose (skipped without a trained regressor);
  (b) refined from predicted maps: Pix2NPHM (predictor maps -> its refinement from (a): the codes only, held
      near their start, nphmkit.pipeline.pix2nphm.REFINE; without a regressor fit_image from the PnP start);
  (c) refined from exact maps: fit_image from the same start against the renderer's exact maps;
  (d) fit_points on the ground-truth surface (head space, true pose): the 3D floor of the head model;
  (e) the pipeline's refinement (REFINE, (b)'s steps and settings) against the exact maps: (b) with perfect
      maps, so (b) against (e) measures what the predicted maps cost and nothing else (with a regressor).

Figures (mm = NPHM units x 250): ``posed`` = mean distance of ground-truth surface points to the
reconstruction in its own pose (single-view depth and size trade off here); ``now`` = NoW protocol
(the reconstruction aligned to the ground-truth face region within 100 mm of the nose tip by the 7
landmarks and rigid ICP; median and mean of the scan-to-mesh distances); ``landmarks`` = mean
posed landmark error; ``normals`` = mean angle to the exact normal map where both see the head
(deg); ``neutral`` = chamfer of the neutral mesh to the ground-truth neutral (head space); seconds per
image. Per-image results are kept in ``OUT/items/`` (a rerun resumes, and runs on cached images the
``--stages`` they lack; ``--redo-b`` recomputes (b), and (e), of cached images made with another
refinement); ``OUT/summary.json`` (the means, each stage's per-image NoW means, and the ratios of the
stages' NoW means with 95 % bootstrap intervals over the images: how far a fresh draw of as many images
could move them), ``OUT/cdf.png`` (NoW distances per stage, plot extra) and ``OUT/gallery.png`` (best, median, worst
of stage b: input | overlay | reconstruction, from ``OUT/items/NNN_b.png``) at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("a_feed_forward", "b_refined_predicted", "e_refine_exact", "c_refined_exact", "d_fit_points")
RATIOS = (("b_refined_predicted", "a_feed_forward"), ("a_feed_forward", "c_refined_exact"),
          ("b_refined_predicted", "c_refined_exact"), ("a_feed_forward", "e_refine_exact"),
          ("b_refined_predicted", "e_refine_exact"))
"""The ratios of NoW means the summary gives intervals for, ``(numerator, denominator)``; key ``"b/a"`` etc."""


def ratio_intervals(per_image: dict[str, list[float]], level: float = 0.95) -> dict[str, dict]:
    """``{"b/a": Interval.as_dict(), ...}``: each ratio of :data:`RATIOS` whose two stages ``per_image`` holds (per-image
    NoW means of the same images), with its bootstrap interval over the images (:func:`nphmkit.eval.ratio_interval`)."""
    from nphmkit.eval import ratio_interval

    return {f"{num[0]}/{den[0]}": ratio_interval(per_image[num], per_image[den], level=level).as_dict()
            for num, den in RATIOS if num in per_image and den in per_image and len(per_image[num]) >= 2}


def refine_tag(no_confidence: bool = False, no_regressor_steps: int | None = None) -> str:
    """What stage (b) ran: the pipeline's refinement settings and the shipped predictor whose maps it fits (cached
    items made with others are redone by --redo-b). ``no_regressor_steps``: (b) was ``fit_image``'s default schedule
    for that many steps from the mean head (``--no-regressor``), not ``REFINE``."""
    from nphmkit.fitting import ImageFitConfig
    from nphmkit.pipeline.pix2nphm import REFINE as R
    from nphmkit.pretrained import weights_folder, weights_sha256

    d = ImageFitConfig()  # settings at fit_image's defaults are left out of the tag
    if no_regressor_steps is not None:
        return (f"fit_image from the mean head and a PnP start (no regressor): {no_regressor_steps} steps; "
                f"small_predictor {weights_sha256(weights_folder('small_predictor'))[:12]}"
                + (", confidence ignored" if no_confidence else ""))
    return (f"pix2nphm.REFINE: {R.steps} steps, lr codes {R.lr_codes:g}, anchor {R.anchor:g}, points weight "
            f"{R.w_points:g}, pose {'fitted' if R.fit_pose else 'fixed'}, warm start {R.warm_start}"
            + ("" if (R.robust, R.normal_delta) == (d.robust, d.normal_delta)
               else f", {R.robust} penalty, normal scale {R.normal_delta:g}")
            + ("" if R.w_silhouette == d.w_silhouette else f", silhouette weight {R.w_silhouette:g}")
            + "; small_predictor "
            f"{weights_sha256(weights_folder('small_predictor'))[:12]}" + (", confidence ignored" if no_confidence else ""))


class _WithoutConfidence:
    """A predictor whose maps come without their confidence (``--no-confidence``)."""

    def __init__(self, predictor) -> None:
        self.predictor, self.config = predictor, predictor.config

    def predict_maps(self, images, **kw):
        from dataclasses import replace

        return replace(self.predictor.predict_maps(images, **kw), confidence=None)

    def __getattr__(self, name):
        return getattr(self.predictor, name)


def b_steps(regressor, steps: int) -> int | None:
    """Stage (b)'s steps: the pipeline's own (REFINE) from the regressor's start; ``--steps`` without a regressor."""
    return None if regressor is not None else steps


def _camera_points(R, t, points):
    return torch.einsum("ij,nj->ni", R, points) + t


def _to_head(rotation, translation, scale, points):
    return torch.einsum("ji,nj->ni", rotation, points - translation) / scale


def evaluate_stage(model, codes, pose, gt: dict, item: dict, resolution: int) -> dict:
    """Figures of one reconstruction (codes ``(z_id, z_ex)`` with pose ``(R, t, s)``, camera frame)."""
    from nphmkit.eval import face_region, now_errors, surface_metrics
    from nphmkit.mesh import extract_mesh
    from nphmkit.render import Camera, render

    z_id, z_ex = codes
    R, t, s = pose
    field = model.field(z_id, z_ex)
    with torch.no_grad():
        in_head = _to_head(R[0], t[0], s[0], gt["surface_cam"])
        posed_mm = float(field(in_head[None]).abs().mean() * 250)
        mesh = extract_mesh(field, resolution=resolution, progress=False)
        neutral = extract_mesh(model.field(z_id, None), resolution=resolution, progress=False)
        marks = model.landmarks(z_id, z_ex)[0]
    verts_cam = s[0] * torch.einsum("ij,nj->ni", R[0], mesh.vertices) + t[0]
    marks_cam = s[0] * torch.einsum("ij,nj->ni", R[0], marks) + t[0]
    region = face_region(gt["mesh_cam"], gt["landmarks_cam"][4], 0.4)  # 100 mm around the nose tip
    now = now_errors(gt["mesh_cam"], gt["landmarks_cam"], verts_cam, mesh.faces, marks_cam, mm_per_unit=250,
                     mask=region)
    cam = Camera(item["K"][None], R, t, tuple(item["mask"].shape))
    with torch.no_grad():
        out = render(model.field(z_id, z_ex), cam, differentiable=False) if float(s[0]) == 1 else None
    normals = float("nan")
    if out is not None:
        both = out.mask[0] & item["mask"]
        if bool(both.any()):
            cos = (out.normals[0][both] * item["normals"][both]).sum(-1).clamp(-1, 1)
            normals = float(torch.rad2deg(torch.acos(cos)).mean())
    neutral_fig = surface_metrics(neutral.vertices, neutral.faces, gt["neutral"].vertices, gt["neutral"].faces,
                                  n_samples=5000)
    posed_fig = surface_metrics(verts_cam, mesh.faces, gt["mesh_cam"], gt["mesh_faces"], n_samples=5000)
    return {"posed_mm": posed_mm, "now_median_mm": now.median, "now_mean_mm": now.mean,
            "landmarks_mm": float((marks_cam - gt["landmarks_cam"]).norm(dim=-1).mean() * 250),
            "normals_deg": normals, "neutral_chamfer_mm": neutral_fig["chamfer"],
            "neutral_nc": neutral_fig["normal_consistency"], "neutral_f2.5": neutral_fig["fscore"]["2.5mm"],
            "posed_chamfer_mm": posed_fig["chamfer"], "posed_nc": posed_fig["normal_consistency"],
            "posed_f2.5": posed_fig["fscore"]["2.5mm"],
            "_now_distances": now.distances.tolist(), "_render": None if out is None else (out.normals[0], out.mask[0])}


def ground_truth(i: int, item: dict) -> dict:
    """The held-out head's exact surface samples, mesh, landmarks (camera frame) and neutral mesh."""
    from nphmkit.data.synthetic import SyntheticHead
    from nphmkit.data.synthetic.landmarks import landmarks as gt_landmarks
    from nphmkit.training.samples import sample_surface

    rec = item["record"]
    head = SyntheticHead(torch.tensor([list(rec["identity"].values())]),
                         torch.tensor([list(rec["expression_params"].values())]))
    R_gt, t_gt = item["R"], item["t"]
    surface = sample_surface(head, 4000, torch.Generator().manual_seed(i))[0]
    mesh = head.mesh(0, resolution=128)
    return {"surface": surface, "surface_cam": _camera_points(R_gt, t_gt, surface),
            "mesh_cam": _camera_points(R_gt, t_gt, mesh.vertices), "mesh_faces": mesh.faces,
            "landmarks_cam": _camera_points(R_gt, t_gt, gt_landmarks(head)[0]), "neutral": head.mesh(0, 128, neutral=True)}


def refine_exact(model, item: dict, init, i: int):
    """Stage (e): the pipeline's refinement (``REFINE``, seed ``i``) from ``init`` against the item's exact maps."""
    from dataclasses import replace

    from nphmkit.fitting import fit_image
    from nphmkit.pipeline.pix2nphm import REFINE

    return fit_image(model, item["normals"][None], item["canonical"][None], item["mask"][None], item["K"][None],
                     init=init, config=replace(REFINE, seed=i), point_valid=item["canonical_valid"][None],
                     progress=False)


def redo_b(i: int, item: dict, row: dict, model, predictor, regressor, steps: int, resolution: int) -> tuple[dict, object]:
    """Stage (b) again (the pipeline's current refinement) for a cached row, and (e) too where the row has it (the
    same refinement against the exact maps); returns the row and (b)'s render."""
    from nphmkit.fitting import FitResult, ImageFitConfig
    from nphmkit.pipeline import Pix2NPHM

    gt = ground_truth(i, item)
    pipe = Pix2NPHM(model, predictor, regressor, fit=ImageFitConfig(steps=steps, patience=steps))
    start = time.perf_counter()
    res = pipe.reconstruct(item["rgb"][None], item["K"], seed=i, steps=b_steps(regressor, steps))
    seconds = time.perf_counter() - start
    new = evaluate_stage(model, (res.z_id, res.z_ex), (res.rotation, res.translation, res.scale), gt, item, resolution)
    render_b = new.pop("_render")
    row["stages"]["b_refined_predicted"] = {**new, "seconds": seconds}
    if "e_refine_exact" in row["stages"] and regressor is not None:
        ff = pipe.reconstruct(item["rgb"][None], item["K"], refine=False)
        start = time.perf_counter()
        same = refine_exact(model, item, FitResult(ff.z_id, ff.z_ex, ff.rotation, ff.translation, ff.scale), i)
        seconds = time.perf_counter() - start
        new = evaluate_stage(model, (same.z_id, same.z_ex), (same.rotation, same.translation, same.scale), gt, item,
                             resolution)
        new.pop("_render")
        row["stages"]["e_refine_exact"] = {**new, "seconds": seconds}
    return row, render_b


def missing_stages(row: dict, stages: str, regressor: bool) -> str:
    """The letters of ``stages`` a cached row lacks and can still get: none where the row was made with a regressor
    and this run has none, or the other way round (its stages started elsewhere; a row has (a) exactly when it was
    made with one); (e) only with a regressor; never (a) alone."""
    have = {key[0] for key in row["stages"]}
    if ("a" in have) != regressor:
        return ""
    return "".join(c for c in stages if c not in have and c != "a" and (regressor or c != "e"))


def run_image(i: int, item: dict, model, predictor, regressor, steps: int, resolution: int,
              stages: str = "abcde") -> dict:
    from nphmkit.fitting import FitResult, ImageFitConfig, PointFitConfig, fit_image, fit_points
    from nphmkit.pipeline import Pix2NPHM

    R_gt, t_gt = item["R"], item["t"]
    gt = ground_truth(i, item)
    surface = gt["surface"]
    fit = ImageFitConfig(steps=steps, patience=steps)
    pipe = Pix2NPHM(model, predictor, regressor, fit=fit)
    rgb, K = item["rgb"][None], item["K"]
    rows, results = {}, {}
    if regressor is not None:
        start = time.perf_counter()
        ff = pipe.reconstruct(rgb, K, refine=False)
        if "a" in stages:
            results["a_feed_forward"] = (ff, time.perf_counter() - start)
        init = FitResult(ff.z_id, ff.z_ex, ff.rotation, ff.translation, ff.scale)
    else:
        init = None
    if "b" in stages:
        start = time.perf_counter()
        results["b_refined_predicted"] = (pipe.reconstruct(rgb, K, seed=i, steps=b_steps(regressor, steps)),
                                          time.perf_counter() - start)
    if "c" in stages:
        start = time.perf_counter()
        exact = fit_image(model, item["normals"][None], item["canonical"][None], item["mask"][None], K[None],
                          init=init, config=ImageFitConfig(steps=steps, patience=steps, seed=i),
                          point_valid=item["canonical_valid"][None], progress=False)
        results["c_refined_exact"] = (exact, time.perf_counter() - start)
    if "e" in stages and init is not None:
        start = time.perf_counter()
        results["e_refine_exact"] = (refine_exact(model, item, init, i), time.perf_counter() - start)
    if "d" in stages:
        start = time.perf_counter()
        pts = fit_points(model, surface[None], config=PointFitConfig(steps=150, seed=i), progress=False)
        pts = FitResult(pts.z_id, pts.z_ex, R_gt[None], t_gt[None], torch.ones(1))
        results["d_fit_points"] = (pts, time.perf_counter() - start)
    renders = {}
    for name, (res, seconds) in results.items():
        row = evaluate_stage(model, (res.z_id, res.z_ex), (res.rotation, res.translation, res.scale), gt, item,
                             resolution)
        renders[name] = row.pop("_render")
        rows[name] = {**row, "seconds": seconds}
    return {"image": i, "stages": rows, "_renders": renders}


def _save_views(out: Path, i: int, item: dict, render_b) -> None:
    """Stage b's reconstruction as the input camera sees it: ``items/NNN_b.png`` = input | overlay | shaded."""
    from nphmkit.data.image_io import write_png
    from nphmkit.render import lambert, overlay

    if render_b is None:
        return
    normals, mask = render_b
    shaded = lambert(normals[None], mask[None], albedo=0.75, background=1.0)[0]
    over = overlay(item["rgb"][None], shaded[None], mask[None], 0.65)[0]
    write_png(out / "items" / f"{i:03d}_b.png", torch.cat([item["rgb"], over, shaded], 1))


def _gallery(out: Path, done: list[dict]) -> None:
    """Best, median and worst image of stage b (NoW mean) stacked: ``gallery.png``."""
    from nphmkit.data.image_io import read_image, write_png

    key = "b_refined_predicted"
    if not all(key in r["stages"] for r in done):
        return
    ranked = sorted(done, key=lambda r: r["stages"][key]["now_mean_mm"])
    picks = [ranked[0], ranked[len(ranked) // 2], ranked[-1]]
    paths = [out / "items" / f"{r['image']:03d}_b.png" for r in picks]
    if all(p.is_file() for p in paths):
        write_png(out / "gallery.png", torch.cat([read_image(p) for p in paths], 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "small_predictor" / "heldout")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench_reconstruction")
    parser.add_argument("--no-regressor", action="store_true", help="skip stage (a); (b), (c) start from PnP")
    parser.add_argument("--stages", default="abcde",
                        help="the stages each image runs (a subset of abcde; (b), (c) and (e) start from (a) either "
                             "way); cached images get those they lack")
    parser.add_argument("--no-confidence", action="store_true",
                        help="ablation: stage (b) ignores the predictor's confidence (unweighted pixels)")
    parser.add_argument("--redo-b", action="store_true",
                        help="recompute stages (b) and (e) of cached images with the pipeline's current refinement")
    args = parser.parse_args()
    if args.images < 1 or args.steps < 1:
        raise SystemExit(f"--images, --steps: expected positive counts, got {args.images}, {args.steps}")
    if not args.stages or set(args.stages) - set("abcde"):
        raise SystemExit(f"--stages: expected a subset of 'abcde', got {args.stages!r}")
    from nphmkit._io import write_text
    from nphmkit.data.dataset import ImageDataset
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset
    from nphmkit.pretrained import has_weights, load_small_nphm, load_small_predictor, load_small_regressor

    if not (args.data / "index.json").is_file():
        print(f"rendering {args.images} held-out images (seed 11) into {args.data} ...", flush=True)
        write_dataset(args.data, args.images, SynthConfig(image_size=128, seed=11), progress=False)
    data = ImageDataset(args.data)
    n = min(args.images, len(data))
    model, predictor = load_small_nphm(), load_small_predictor()
    if args.no_confidence:
        predictor = _WithoutConfidence(predictor)
    regressor = None if args.no_regressor or not has_weights("small_regressor") else load_small_regressor()
    (args.out / "items").mkdir(parents=True, exist_ok=True)
    tag = refine_tag(args.no_confidence, None if regressor else args.steps)
    done = []
    for i in range(n):
        path = args.out / "items" / f"{i:03d}.json"
        if path.is_file():
            row = json.loads(path.read_text())
            missing = missing_stages(row, args.stages, regressor is not None)
            if missing:  # a cached image gets the stages asked for now that it lacks
                extra = run_image(i, data[i], model, predictor, regressor, args.steps, args.resolution, missing)
                _save_views(args.out, i, data[i], extra.pop("_renders").get("b_refined_predicted"))
                row["stages"].update(extra["stages"])
                write_text(path, json.dumps(row) + "\n")
                print(f"image {i}: added " + "; ".join(f"{k[0]} now {v['now_mean_mm']:.2f} posed {v['posed_mm']:.2f} mm"
                                                        for k, v in extra["stages"].items()), flush=True)
            if args.redo_b and row.get("refine") != tag:
                row, render_b = redo_b(i, data[i], row, model, predictor, regressor, args.steps, args.resolution)
                row["refine"] = tag
                _save_views(args.out, i, data[i], render_b)
                write_text(path, json.dumps(row) + "\n")
                again = "; ".join(f"{k[0]} now {row['stages'][k]['now_mean_mm']:.2f} mm"
                                  for k in ("b_refined_predicted", "e_refine_exact") if k in row["stages"])
                print(f"image {i}: again: {again}", flush=True)
            done.append(row)
            continue
        row = run_image(i, data[i], model, predictor, regressor, args.steps, args.resolution, args.stages)
        row["refine"] = tag
        _save_views(args.out, i, data[i], row.pop("_renders").get("b_refined_predicted"))
        write_text(path, json.dumps(row) + "\n")
        done.append(row)
        print(f"image {i}: " + "; ".join(f"{k[0]} now {v['now_mean_mm']:.2f} posed {v['posed_mm']:.2f} mm"
                                         for k, v in row["stages"].items()), flush=True)
    stages = [s for s in STAGES if all(s in r["stages"] for r in done)]
    keys = ("posed_mm", "now_median_mm", "now_mean_mm", "landmarks_mm", "normals_deg", "neutral_chamfer_mm", "seconds",
            "posed_chamfer_mm", "posed_nc", "posed_f2.5", "neutral_nc", "neutral_f2.5")
    table = {s: {k: float(np.nanmean([r["stages"][s].get(k, np.nan) for r in done])) for k in keys} for s in stages}
    per_image = {s: [r["stages"][s]["now_mean_mm"] for r in done] for s in stages}
    intervals = ratio_intervals(per_image)
    summary = {"images": n, "data": str(args.data), "steps": args.steps, "regressor": regressor is not None,
               "refine": sorted({r.get("refine", "?") for r in done}), "mean": table,
               "now_mean_per_image": per_image, "ratio_intervals": intervals}
    write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(f"\n{n} held-out images; (c): {args.steps} steps; (b): {'; '.join(summary['refine'])}; means (mm unless said)")
    print("| stage | posed | NoW median | NoW mean | landmarks | normals (deg) | neutral chamfer | s/image |")
    print("|---|---|---|---|---|---|---|---|")
    for s in stages:
        v = table[s]
        print(f"| {s} | {v['posed_mm']:.2f} | {v['now_median_mm']:.2f} | {v['now_mean_mm']:.2f} | "
              f"{v['landmarks_mm']:.2f} | {v['normals_deg']:.1f} | {v['neutral_chamfer_mm']:.2f} | {v['seconds']:.1f} |")
    print("\nSVFR-style (chamfer mm, normal consistency, F-score at 2.5 mm; posed in the camera frame, neutral in head "
          "space; nan for images cached before these columns)")
    print("| stage | posed chamfer | posed NC | posed F@2.5 | neutral chamfer | neutral NC | neutral F@2.5 |")
    print("|---|---|---|---|---|---|---|")
    for s in stages:
        v = table[s]
        print(f"| {s} | {v['posed_chamfer_mm']:.2f} | {v['posed_nc']:.3f} | {v['posed_f2.5']:.3f} | "
              f"{v['neutral_chamfer_mm']:.2f} | {v['neutral_nc']:.3f} | {v['neutral_f2.5']:.3f} |")
    if intervals:
        print(f"\nRatios of the NoW means, with 95 % bootstrap intervals over the {n} images (a fresh draw of as many "
              "images could land anywhere in them):")
        for key, v in intervals.items():
            cut = f" (a cut of {100 * (1 - v['value']):.1f} %, interval {100 * (1 - v['high']):.1f} to "\
                  f"{100 * (1 - v['low']):.1f} %)" if key == "b/a" else ""
            print(f"  {key}: {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]{cut}")
    from nphmkit._optional import available

    if available("matplotlib"):
        from nphmkit.eval.plots import error_cdf

        error_cdf({s: np.concatenate([r["stages"][s]["_now_distances"] for r in done]) for s in stages},
                  args.out / "cdf.png", max_mm=3.0, title="NoW scan-to-mesh distances per stage")
    _gallery(args.out, done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
