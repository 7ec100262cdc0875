"""The whole Pix2NPHM system as far as nphmkit has built it: `make demo` runs this.

    python examples/pix2nphm_full.py [--out out/demo] [--images 0 1] [--steps N] [--resolution 128]
                                     [--maps predicted|exact]

What runs (default ``--maps predicted``): shipped synthetic test images (face crops) -> the shipped
small dense predictor's normal, canonical-point and mask maps -> the shipped small regressor's
feed-forward codes and pose (when shipped; else the PnP pose of the predicted point map) ->
inference-time optimization of the shipped small NPHM's codes and pose against the predicted maps
-> meshes (posed, neutral), 7 landmarks, codes, renders and a side-by-side picture (input | predicted
normals | feed-forward overlay | refined overlay), with the errors of the feed-forward (a) and refined
(b) heads against the ground-truth head, beside the exact-map refinement (c) stored in the regressor's
quality.json. ``--maps exact`` fits to the renderer's exact maps instead (the upper bound of the
refinement). The shipped weights know only nphmkit's synthetic head family: real photos need real
checkpoints (MonoNPHM, Pixel3DMM) and models trained on real data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

BANNER = """\
nphmkit - Pix2NPHM demo
  Models: nphmkit's small NPHM, dense predictor and regressor, trained on nphmkit's SYNTHETIC head
  family (analytic heads, not real people). They know only that family; real photos need real checkpoints.
  Input: shipped synthetic test images (face crops) no model saw; by default the pipeline sees only the
  RGB image (--maps exact: it fits the renderer's exact maps instead).
"""


def fail(message: str) -> int:
    print(f"demo: error: {message}", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--images", type=int, nargs="*", default=None, help="which shipped images (default all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimization steps per image (default: the pipeline's, 50 from the regressor's start; "
                             "100 for exact maps or without a regressor)")
    parser.add_argument("--resolution", type=int, default=128, help="marching-cubes grid per axis")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--maps", choices=["exact", "predicted"], default="predicted",
                        help="predicted (default): Pix2NPHM from the RGB image alone; exact: fit the renderer's exact "
                             "maps (the refinement's upper bound)")
    parser.add_argument("--no-photo", action="store_true", help="skip the real-photo part (scikit-image's astronaut)")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            return fail(f"--threads: expected at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    print(BANNER)
    start_all = time.perf_counter()
    try:
        from nphmkit._io import write_text
        from nphmkit.data.dataset import ImageDataset
        from nphmkit.data.image_io import write_png
        from nphmkit.data.synthetic import SyntheticHead
        from nphmkit.data.synthetic.landmarks import landmarks as gt_landmarks
        from nphmkit.fitting import ImageFitConfig, fit_image
        from nphmkit.mesh import save_mesh
        from nphmkit.nphm.codes import save_codes, save_official_codes
        from nphmkit.nphm.meshing import head_mesh
        from nphmkit.pipeline import Pix2NPHM
        from nphmkit.pretrained import (
            ASSETS,
            SMALL_PREDICTOR,
            has_weights,
            load_small_nphm,
            load_small_predictor,
            load_small_regressor,
        )
        from nphmkit.protocols import NOW_LANDMARKS
        from nphmkit.render import Camera, lambert, normal_map_rgb, overlay, render
        from nphmkit.training.samples import sample_surface
        from nphmkit.transforms import matrix_to_axis_angle
    except ImportError as err:
        return fail(f"nphmkit is not installed completely ({err}); run `make demo` or `pip install -e .`")
    try:
        model = load_small_nphm()
        data = ImageDataset(ASSETS / "demo")
    except FileNotFoundError as err:
        return fail(str(err))
    quality = json.loads((ASSETS / "small_nphm" / "quality.json").read_text())
    print(f"Loaded the small NPHM ({sum(p.numel() for p in model.parameters()):,} parameters; held-out fit_points "
          f"surface error {quality['fit_points_heldout_mm']['mean_mm']:.2f} mm at training time).")
    predictor = regressor = None
    if args.maps == "predicted":
        try:
            predictor = load_small_predictor()
            regressor = load_small_regressor() if has_weights("small_regressor") else None
        except (FileNotFoundError, ValueError) as err:
            return fail(f"{err}; or run with --maps exact")
        pq = json.loads((SMALL_PREDICTOR / "quality.json").read_text())["heldout"]
        print(f"Loaded the small dense predictor (held-out normals {pq['normals_deg']['mean']:.1f} deg, canonical "
              f"{pq['canonical_mm']['mean']:.1f} mm, mask IoU {pq['mask_iou']:.3f})"
              + (" and the small regressor (feed-forward codes and pose)." if regressor is not None else
                 "; no regressor shipped: refinement starts from the PnP pose."))
    indices = range(len(data)) if args.images is None else args.images
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for i in indices:
        if not 0 <= i < len(data):
            return fail(f"--images: expected indices in 0..{len(data) - 1}, got {i}")
        item = data[i]
        rec = item["record"]
        h, w = rec["image_size"]
        cam = Camera(item["K"][None], torch.eye(3)[None], torch.zeros(1, 3), (h, w))
        steps = args.steps or (None if regressor is not None and predictor is not None else 100)
        print(f"image {i}: fitting codes and pose to its maps ({steps or 'the pipeline'} steps, "
              f"{torch.get_num_threads()} threads) ...", flush=True)
        t0 = time.perf_counter()
        fit_cfg = ImageFitConfig(steps=steps or 100, patience=steps or 100)
        ff = None  # the feed-forward result (a), with a regressor
        if predictor is not None:  # Pix2NPHM from the RGB image alone: predicted maps -> refinement
            pipe = Pix2NPHM(model, predictor, regressor, fit=fit_cfg)
            res = pipe.reconstruct(item["rgb"][None], item["K"], steps=steps, progress=False)
            n_steps = res.steps[0]
            target_normals, target_mask = res.maps.normals, res.maps.mask
            if regressor is not None:
                ff = pipe.reconstruct(item["rgb"][None], item["K"], refine=False, progress=False)
        else:  # the exact maps of the renderer stand in for the predictor's
            res = fit_image(model, item["normals"][None], item["canonical"][None], item["mask"][None], cam,
                            config=fit_cfg, point_valid=item["canonical_valid"][None])
            n_steps = res.steps
            target_normals, target_mask = item["normals"][None], item["mask"][None]
        t_fit = time.perf_counter() - t0
        z_id, z_ex = res.z_id, res.z_ex
        # meshes, landmarks, codes
        print(f"image {i}: fitted in {t_fit:.1f} s; meshing at {args.resolution}^3, rendering, writing ...", flush=True)
        t0 = time.perf_counter()
        posed = head_mesh(model, z_id, z_ex, resolution=args.resolution, progress=False)
        neutral = head_mesh(model, z_id, None, resolution=args.resolution, progress=False)
        t_mesh = time.perf_counter() - t0
        stem = out / f"{i:02d}"
        save_mesh(f"{stem}_posed.ply", posed)
        save_mesh(f"{stem}_neutral.ply", neutral)
        with torch.no_grad():  # on the fitted surface, found from the anchors named in the weights' metadata
            marks = model.landmarks(z_id, z_ex)[0]
        write_text(f"{stem}_landmarks.json", json.dumps(
            {"units": "NPHM (x 250 = mm), head space", "landmarks": dict(zip(NOW_LANDMARKS, marks.tolist()))}, indent=1))
        save_codes(f"{stem}_codes.npz", z_id, z_ex, rotation=res.rotation, translation=res.translation, scale=res.scale)
        save_official_codes(f"{stem}_official_codes", z_id, z_ex)
        # renders: the fitted head seen by the input camera
        fit_cam = Camera(item["K"][None], res.rotation, res.translation, (h, w))
        field = model.field(z_id, z_ex)
        with torch.no_grad():
            rend = render(field, fit_cam, differentiable=False)
        rgb = item["rgb"][None]
        normals_png = normal_map_rgb(rend.normals, rend.mask)
        shaded = lambert(rend.normals, rend.mask, albedo=0.75, background=1.0)
        over = overlay(rgb, shaded, rend.mask, alpha=0.65)
        write_png(f"{stem}_normals.png", normals_png[0])
        write_png(f"{stem}_overlay.png", over[0])
        panels = [rgb[0], normal_map_rgb(target_normals, target_mask)[0]]
        if ff is not None:
            with torch.no_grad():
                ff_rend = render(model.field(ff.z_id, ff.z_ex),
                                 Camera(item["K"][None], ff.rotation, ff.translation, (h, w)), differentiable=False)
            ff_shaded = lambert(ff_rend.normals, ff_rend.mask, albedo=0.75, background=1.0)
            panels.append(overlay(rgb, ff_shaded, ff_rend.mask, alpha=0.65)[0])
        panels += [over[0]] if ff is not None else [over[0], shaded[0]]
        write_png(f"{stem}_side_by_side.png", torch.cat(panels, dim=1))
        # error against the ground truth: GT surface points in the camera frame -> fitted head space
        gt = SyntheticHead(torch.tensor([list(rec["identity"].values())]),
                           torch.tensor([list(rec["expression_params"].values())]))
        with torch.no_grad():
            pts = sample_surface(gt, 4000, torch.Generator().manual_seed(0))
            R_gt, t_gt = item["R"][None], item["t"][None]
            cam_pts = torch.einsum("bij,bnj->bni", R_gt, pts) + t_gt[:, None]
            gt_marks = torch.einsum("bij,bnj->bni", R_gt, gt_landmarks(gt)) + t_gt[:, None]
            fit_marks = torch.einsum("bij,nj->bni", res.rotation, marks) + res.translation[:, None]
            lm_mm = (gt_marks - fit_marks).norm(dim=-1)[0] * 250
            dR = res.rotation @ R_gt.transpose(1, 2)
            rot_deg = float(matrix_to_axis_angle(dR).norm() * 180 / np.pi)
            trans_mm = float((res.translation - t_gt).norm() * 250)
            normal_err = torch.rad2deg(torch.acos((rend.normals * item["normals"][None]).sum(-1).clamp(-1, 1)))
            both = rend.mask & item["mask"][None]
        gt_mesh = gt.mesh(0, resolution=args.resolution)
        truth = {"mesh": torch.einsum("ij,nj->ni", R_gt[0], gt_mesh.vertices) + t_gt[0], "landmarks": gt_marks[0],
                 "surface": cam_pts}
        stages = {"b_refined": stage_errors(model, res, posed, marks, truth)}
        if ff is not None:
            stages = {"a_feed_forward": stage_errors(model, ff, None, None, truth, args.resolution), **stages}
        row = {
            "image": i, "fit_steps": n_steps, "stages": stages, "fit_seconds": round(t_fit, 1), "mesh_seconds": round(t_mesh, 1),
            "surface_error_mm": {"mean": stages["b_refined"]["posed_mm"], "median": stages["b_refined"]["posed_median_mm"]},
            "landmark_error_mm": float(lm_mm.mean()), "normal_error_deg": float(normal_err[both].mean()),
            "mask_iou": float((rend.mask & item["mask"][None]).sum() / (rend.mask | item["mask"][None]).sum()),
            "rotation_error_deg": rot_deg, "translation_error_mm": trans_mm,
            "posed_mesh": {"vertices": posed.n_vertices, "faces": posed.n_faces, "sdf_queries": posed.n_queries},
        }
        summary.append(row)
        print(f"image {i}: fit {n_steps} steps in {t_fit:.1f} s; surface error {row['surface_error_mm']['mean']:.2f} mm "
              f"(median {row['surface_error_mm']['median']:.2f}), landmarks {row['landmark_error_mm']:.2f} mm, "
              f"normals {row['normal_error_deg']:.1f} deg, mask IoU {row['mask_iou']:.3f}, pose {rot_deg:.2f} deg / "
              f"{trans_mm:.1f} mm; meshes {posed.n_vertices} + {neutral.n_vertices} vertices in {t_mesh:.1f} s")
        print(f"image {i}: NoW mean (aligned) / posed surface error against the ground truth: "
              + "; ".join(f"({k[0]}) {STAGE_NAMES[k]} {v['now_mean_mm']:.2f} / {v['posed_mm']:.2f} mm"
                          for k, v in stages.items()))
    reference(summary, args.maps, regressor is not None)
    write_text(out / "summary.json", json.dumps({"model": quality["trained_on"], "images": summary}, indent=1) + "\n")
    print(f"\nWrote meshes (PLY), landmarks, codes (.npz and the official layout), renders and side-by-side pictures "
          f"(input | {'predicted' if args.maps == 'predicted' else 'exact'} normals | "
          f"{'feed-forward overlay | refined overlay' if regressor is not None else 'overlay | reconstruction'}) "
          f"to {out}/ in {time.perf_counter() - start_all:.0f} s.")
    if not args.no_photo:
        status = real_photo(out / "photo", args)
        if status:
            return status
    print("Reminder: the weights know only the synthetic family; this demo shows the pipeline, not real-photo quality.")
    return 0


STAGE_NAMES = {"a_feed_forward": "feed-forward", "b_refined": "refined"}


def stage_errors(model, res, mesh, marks, truth: dict, resolution: int = 128) -> dict:
    """NoW errors (the reconstruction aligned to the ground-truth face region: landmark similarity, then rigid
    ICP; mm) and the posed surface error (mean |sdf| of the head in its own pose at the ground-truth surface
    points ``truth["surface"] (1, N, 3)``, camera frame; mm) of one result; its head-space ``mesh`` and
    landmarks ``marks (7, 3)`` when already made."""
    from nphmkit.eval import face_region, now_errors
    from nphmkit.nphm.meshing import head_mesh

    with torch.no_grad():
        if mesh is None:
            mesh = head_mesh(model, res.z_id, res.z_ex, resolution=resolution, progress=False)
            marks = model.landmarks(res.z_id, res.z_ex)[0]
        s, R, t = res.scale[0], res.rotation[0], res.translation[0]
        verts = s * torch.einsum("ij,nj->ni", R, mesh.vertices) + t
        posed_marks = s * torch.einsum("ij,nj->ni", R, marks) + t
        in_head = torch.einsum("bji,bnj->bni", res.rotation, truth["surface"] - res.translation[:, None]) / s
        surface_mm = model.field(res.z_id, res.z_ex)(in_head).abs() * 250
    region = face_region(truth["mesh"], truth["landmarks"][4], 0.4)  # 100 mm around the nose tip
    now = now_errors(truth["mesh"], truth["landmarks"], verts, mesh.faces, posed_marks, mm_per_unit=250, mask=region)
    return {"now_mean_mm": float(now.mean), "now_median_mm": float(now.median), "posed_mm": float(surface_mm.mean()),
            "posed_median_mm": float(surface_mm.median())}


def reference(summary: list[dict], maps: str, with_regressor: bool) -> None:
    """The demo images' mean (a) and (b) beside the regressor's stored held-out figures, (c) included."""
    from nphmkit.pretrained import ASSETS

    if not summary or maps != "predicted" or not with_regressor:
        return
    quality = json.loads((ASSETS / "small_regressor" / "quality.json").read_text())
    q = quality["heldout"]
    held = q["stages"]
    mean = {k: float(np.mean([r["stages"][k]["now_mean_mm"] for r in summary])) for k in summary[0]["stages"]}
    print(f"\nNoW mean over these {len(summary)} images: (a) feed-forward {mean['a_feed_forward']:.2f} mm, (b) refined "
          f"{mean['b_refined']:.2f} mm. Stored in small_regressor/quality.json ({q['images']} held-out images, same "
          f"protocol): (a) {held['a_feed_forward']['now_mean_mm']:.2f}, (b) {held['b_refined_predicted']['now_mean_mm']:.2f}, "
          f"(c) refined from exact maps {held['c_refined_exact']['now_mean_mm']:.2f} mm.")
    cut = quality.get("ratios", {}).get("refinement_cut_of_feed_forward_now_mean")
    target = quality.get("targets", {}).get("refinement_cut_of_feed_forward_now_mean")
    if cut is not None and target is not None:
        span = ""
        if "interval_95" in target:  # where a fresh draw of as many held-out images could put the cut
            low, high = target["interval_95"]
            span = f"; 95 % interval over the images {100 * low:.0f} to {100 * high:.0f} %"
        print(f"There the refinement cuts (a) by {100 * cut:.1f} % (target {target['op']} {100 * target['value']:g} %: "
              f"{'met' if target['met'] else 'NOT met'}{span}); (b) is "
              f"{quality['ratios']['predicted_to_exact_now_mean']:.2f}x (c).")
    fresh = quality.get("refinement_cut_on_images_that_chose_nothing")
    if fresh is not None:  # the first held-out images also chose REFINE's settings
        low, high = fresh["interval_95"]
        print(f"On held-out images {fresh['images']}, which chose none of the refinement's settings, the cut is "
              f"{100 * fresh['value']:.1f} % (95 % interval {100 * low:.0f} to {100 * high:.0f} %).")


def real_photo(out: Path, args) -> int:
    """`nphmkit reconstruct` on a real photo: scikit-image's astronaut (a real person; public domain, NASA)."""
    from PIL import Image
    from skimage import data

    from nphmkit.cli import main as cli

    print("\n--- A REAL PHOTO (scikit-image's astronaut) through `nphmkit reconstruct` ---")
    print("  The shipped weights know only the synthetic family: the result is the closest SYNTHETIC-FAMILY head,")
    print("  placed and posed on her face - it shows detection, crop, pipeline and outputs, not real-photo quality.")
    photo = out.parent / "photo_input" / "astronaut.png"
    photo.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(photo)
    steps = [] if args.steps is None else ["--steps", str(min(args.steps, 60))]
    status = cli(["reconstruct", str(photo), "-o", str(out), *steps, "--resolution", str(args.resolution)])
    if status:
        return fail(f"reconstruct on {photo} failed (status {status}); see {out}/failures.json")
    crop = json.loads((out / "astronaut" / "crop.json").read_text())
    print(f"  face crop box {[round(v) for v in crop['box']]} (x0, y0, x1, y1 px of the 512x512 photo, "
          f"from the {crop['box_source']}); overlay on the full photo: {out}/astronaut/overlay.png")
    picture = out / "astronaut_summary.png"
    summary_picture(photo, out / "astronaut", crop["box"], picture)
    print(f"  everything at a glance: {out}/index.html; one picture: {picture}")
    return 0


def summary_picture(photo: Path, item: Path, box, path: Path) -> None:
    """photo with the crop box | reconstruction over the photo | predicted normals | turntable, one PNG."""
    from PIL import Image, ImageDraw

    h = 256
    image = Image.open(photo).convert("RGB")
    ImageDraw.Draw(image).rectangle([round(v) for v in box], outline=(230, 30, 30), width=4)
    panels = [image, Image.open(item / "overlay.png").convert("RGB"), Image.open(item / "normals.png").convert("RGB")]
    panels = [p.resize((round(p.width * h / p.height), h)) for p in panels]
    turn = Image.open(item / "turntable.png").convert("RGB")
    turn = turn.resize((round(turn.width * (h * 0.6) / turn.height), round(h * 0.6)))
    width = max(sum(p.width for p in panels) + 8 * (len(panels) - 1), turn.width)
    canvas = Image.new("RGB", (width, h + 8 + turn.height), (255, 255, 255))
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + 8
    canvas.paste(turn, (0, h + 8))
    canvas.save(path)


if __name__ == "__main__":
    sys.exit(main())
