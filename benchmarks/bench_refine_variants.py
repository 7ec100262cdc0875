"""Refinement from feed-forward codes: schedules and priors compared on held-out synthetic images.

    python benchmarks/bench_refine_variants.py [--images 0 1 3] [--steps 100] [--variants '{"name": {...}}']

Each variant is a set of :class:`~nphmkit.fitting.ImageFitConfig` overrides applied to a refinement started
from the shipped regressor's codes and pose against the shipped predictor's maps, plus these keys:

- ``"steps": 0``: the feed-forward result itself;
- ``"maps"``: ``"predicted"`` (default); ``"flip"``, the predictor's maps averaged with those of the mirrored
  image (``predict_maps(..., flip_tta=True)``); ``"exact"``, the renderer's exact maps; ``"exact normals"``,
  the predicted maps with the exact normal map; ``"exact tails"``, the predicted normal map with its pixels
  more than 10 degrees off replaced by the exact normals; ``"exact bulk"``, the other way round (the exact
  normal map with those pixels predicted); ``"blend A"`` (A in 0..1), the maps between exact (A = 0) and
  predicted (A = 1): normals ``normalize((1 - A) exact + A predicted)``, canonical points likewise (unnormalised),
  the predicted mask and confidence -- roughly what a predictor with A times the shipped one's error would give;
- ``"pose"``: the start pose, ``"regressor"`` (default); ``"pnp"``, from the predicted canonical map;
  ``"mean"``, the regressor's rotation and the mean of both translations; ``"gt"``, the true pose (an oracle);
- ``"points"``: the canonical point term, ``"plain"`` (default); ``"centred"``, up to a global offset (the
  residuals minus their weighted mean); ``"scaled"``, up to a global offset and scale; ``"off"``;
- ``"normals"``: the normal term, ``"plain"`` (default); ``"rotated"``, up to a global rotation (each step the
  weighted least-squares rotation of the rendered normals onto the targets is applied first);
- ``"K"``: the intrinsics the pipeline is given, ``"true"`` (default, the render's) or ``"default"`` (the default
  crop intrinsics, focal length 2 crop widths: what a photo of unknown focal length gets); with ``"default"`` the
  feed-forward pose and the refinement both use them (the feed-forward codes do not depend on ``K``), and the
  posed and landmark figures are then in another camera than the truth's: compare the NoW mean only;
  ``"estimated"``, the same with the focal length estimated from the predicted canonical map
  (``Pix2NPHM.estimate_intrinsics``, principal point at the centre: ``reconstruct(..., K="auto")``);
- ``"weights"``: the per-pixel weights of the map terms, ``"confidence"`` (default, the predictor's);
  ``"none"``; ``"squared"``, the confidence squared; ``"oracle"``, the confidence with the pixels whose
  predicted normal is more than 10 degrees off the exact one dropped (an oracle: what a perfect outlier
  detector would give);
- ``"surface": w`` (default 0): adds a term of weight ``w`` holding the predicted canonical points on the identity's
  zero level set (:func:`canonical_surface_term`; ``"surface_delta"``, its Cauchy/Huber scale, default 0.01).

Printed per image and summed: NoW mean (mm, aligned), posed surface error (mm), mean landmark error (mm,
camera frame). How ``nphmkit.pipeline.pix2nphm.REFINE`` was chosen, and what limits it (benchmarks/RESULTS.md).
Needs the held-out renders of bench_reconstruction.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_VARIANTS = {
    "feed-forward": {"steps": 0},
    "default fit_image": {},
    "lr 1e-3": {"lr_codes": 1e-3},
    "anchor 0.01": {"anchor": 0.01},
    "anchor 0.1": {"anchor": 0.1},
    "anchor 0.1, lr 1e-3": {"anchor": 0.1, "lr_codes": 1e-3},
    "anchor 0.1, lr 1e-3, pose 2e-4": {"anchor": 0.1, "lr_codes": 1e-3, "lr_pose": 2e-4},
    "anchor 0.1, lr 1e-3, pose fixed": {"anchor": 0.1, "lr_codes": 1e-3, "fit_pose": False},
    "anchor 0.3, lr 2e-3, pose fixed": {"anchor": 0.3, "lr_codes": 2e-3, "fit_pose": False},
    "anchor 0.1, lr 1e-3, pose fixed, points 10": {"anchor": 0.1, "lr_codes": 1e-3, "fit_pose": False, "w_points": 10.0},
}


BLENDS = tuple(f"blend {a:g}" for a in (0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9))
"""The ``"maps"`` values that blend exact and predicted maps."""

CHOICES = {"maps": ("predicted", "flip", "exact", "exact normals", "exact tails", "exact bulk", *BLENDS),
           "pose": ("regressor", "pnp", "mean", "gt"),
           "points": ("plain", "centred", "scaled", "off"), "weights": ("confidence", "none", "squared", "oracle"),
           "normals": ("plain", "rotated"), "K": ("true", "default", "estimated")}
"""The variants' extra keys and their values, the default first."""


def centred_point_term(ctx, robust: str = "huber", scaled: bool = False):
    """The point term up to a global offset: the canonical residuals minus their weighted mean (a predicted
    point map's bias over the whole image does not pull the shape). ``scaled``: up to a global scale as well
    (the rendered points scaled about their weighted mean by the weighted least-squares factor onto the
    target's), so a point map whose size is off by a percent does not resize the head."""
    from nphmkit.losses import point_map_loss

    if ctx.render.canonical is None or ctx.targets.points is None:
        return ctx.z_id.new_zeros(())
    w = (ctx.render.mask & ctx.targets.mask & ctx.targets.point_valid).to(ctx.render.canonical.dtype)
    if ctx.targets.confidence is not None:
        w = w * ctx.targets.confidence
    total = w.sum(-1)[..., None, None].clamp_min(1e-8)
    mean_r = (w[..., None] * ctx.render.canonical).sum(-2, keepdim=True) / total
    mean_t = (w[..., None] * ctx.targets.points).sum(-2, keepdim=True) / total
    dr, dt = ctx.render.canonical - mean_r, ctx.targets.points - mean_t
    s = 1.0
    if scaled:
        s = ((w[..., None] * dr * dt).sum((-2, -1)) / (w[..., None] * dr * dr).sum((-2, -1)).clamp_min(1e-12))[..., None, None]
    return point_map_loss(s * dr + mean_t, ctx.targets.points, w, robust)


def rotated_normal_term(ctx, robust: str = "huber", delta: float = 0.1):
    """The normal term up to a global rotation: each step, the rotation that best turns the rendered normals
    onto the targets (weighted least squares, Kabsch; not differentiated) is applied to the rendered normals
    first, so a predicted normal map turned by a degree over the whole image does not bend the shape."""
    import torch

    from nphmkit.losses import normal_map_loss

    both = ctx.render.mask & ctx.targets.mask
    w = both.to(ctx.render.normals.dtype)
    if ctx.targets.confidence is not None:
        w = w * ctx.targets.confidence
    with torch.no_grad():
        h = torch.einsum("bm,bmi,bmj->bij", w, ctx.render.normals, ctx.targets.normals)
        u, _, vt = torch.linalg.svd(h)
        d = torch.sign(torch.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
        flip = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        rot = vt.transpose(1, 2) @ flip @ u.transpose(1, 2)  # (B, 3, 3): rot @ n_render ~ n_target
    normals = torch.einsum("bij,bmj->bmi", rot, ctx.render.normals)
    return normal_map_loss(normals, ctx.targets.normals, w, robust, delta)


def canonical_surface_term(ctx, robust: str = "cauchy", delta: float = 0.01):
    """The predicted canonical points on the identity's zero level set: the robust mean of ``|sdf_id(x_c)|`` over
    the sampled pixels of the target mask (the render need not hit them), weighted by the confidence. The hyper
    coordinates are the render's where it hits, 0 (the neutral) elsewhere. Needs a model with ``identity_sdf``."""
    import torch

    from nphmkit.losses.image import robust as penalty

    t = ctx.targets
    if t.points is None:
        return ctx.z_id.new_zeros(())
    q = t.points
    n_query = ctx.render.canonical.shape[-1] if ctx.render.canonical is not None else 3
    if n_query > 3:
        hyper = torch.where(ctx.render.mask[..., None], ctx.render.canonical[..., 3:].detach(), 0.0)
        q = torch.cat([q, hyper], -1)
    sdf = ctx.model.identity_sdf(q, ctx.z_id)[..., 0]
    w = (t.mask & t.point_valid).to(sdf.dtype)
    if t.confidence is not None:
        w = w * t.confidence
    return (penalty(sdf.abs(), robust, delta) * w).sum() / w.sum().clamp_min(1.0)


def far_off(normals, exact_normals, degrees: float = 10.0):
    """``(1, H, W)`` bool: where unit normals ``(1, H, W, 3)`` are more than ``degrees`` off the exact ones."""
    import torch

    cos = (normals * exact_normals).sum(-1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos)) > degrees


def pixel_weights(kind: str, maps, exact):
    """The map terms' per-pixel weights ``(1, H, W)`` for the ``"weights"`` choice ``kind``; None (plain mask)
    for ``"none"`` and for maps without a confidence (the exact maps)."""
    conf = maps.confidence
    if kind == "none" or conf is None:
        return None
    if kind == "squared":
        return conf**2
    if kind == "oracle":
        return conf * (~far_off(maps.normals, exact.normals)).to(conf.dtype)
    return conf


def main() -> int:

    import torch
    from bench_reconstruction import evaluate_stage, ground_truth

    from nphmkit.data.dataset import ImageDataset
    from nphmkit.fitting import FitResult, ImageFitConfig, fit_image
    from nphmkit.fitting.image import initial_pose
    from nphmkit.fitting.terms import LossTerm
    from nphmkit.heads.dense import DenseMaps, DensePredictor
    from nphmkit.pipeline import Pix2NPHM
    from nphmkit.pretrained import load_small_nphm, load_small_predictor, load_small_regressor
    from nphmkit.render import default_intrinsics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "small_predictor" / "heldout")
    parser.add_argument("--images", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--variants", default=None, help="JSON {name: overrides} (default: the variants measured)")
    parser.add_argument("--predictor", type=Path, default=None,
                        help="a dense predictor's weight folder whose maps are fitted (default: the shipped one; "
                             "the regressor reads the shipped one's features either way)")
    args = parser.parse_args()
    if not (args.data / "index.json").is_file():
        raise SystemExit(f"--data: {args.data} has no index.json; run benchmarks/bench_reconstruction.py first")
    variants = json.loads(args.variants) if args.variants else DEFAULT_VARIANTS
    for name, over in variants.items():  # refuse a bad key before any fit runs
        for key, allowed in CHOICES.items():
            if over.get(key, allowed[0]) not in allowed:
                raise SystemExit(f"--variants: {name!r} has {key}={over[key]!r}; expected one of {list(allowed)}")
    data = ImageDataset(args.data)
    model, regressor = load_small_nphm(), load_small_regressor()
    predictor = load_small_predictor() if args.predictor is None else DensePredictor.load(args.predictor).eval()
    pipe = Pix2NPHM(model, predictor, regressor)
    totals: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in variants}
    for i in args.images:
        item = data[i]
        gt = ground_truth(i, item)
        ff = pipe.reconstruct(item["rgb"][None], item["K"], refine=False)
        with torch.no_grad():
            flipped = predictor.predict_maps(item["rgb"][None], flip_tta=True)
        exact = DenseMaps(item["normals"][None], item["canonical"][None], item["mask"][None])
        all_maps = {"predicted": ff.maps, "flip": flipped, "exact": exact,
                    "exact normals": replace(ff.maps, normals=exact.normals)}
        tails = far_off(ff.maps.normals, exact.normals)[..., None]
        all_maps["exact tails"] = replace(ff.maps, normals=torch.where(tails, exact.normals, ff.maps.normals))
        all_maps["exact bulk"] = replace(ff.maps, normals=torch.where(tails, ff.maps.normals, exact.normals))
        for blend in {over.get("maps") for over in variants.values()} & set(BLENDS):  # only those asked for
            a = float(blend.split()[1])
            valid = (exact.mask & item["canonical_valid"][None])[..., None]  # where the exact point map is defined
            canonical = torch.where(valid, (1 - a) * exact.canonical + a * ff.maps.canonical, ff.maps.canonical)
            normals = torch.nn.functional.normalize((1 - a) * exact.normals + a * ff.maps.normals, dim=-1)
            all_maps[blend] = replace(ff.maps, normals=torch.where(exact.mask[..., None], normals, ff.maps.normals),
                                      canonical=canonical)
        start = FitResult(ff.z_id, ff.z_ex, ff.rotation, ff.translation, ff.scale)
        R_pnp, t_pnp = initial_pose(ff.maps.canonical, ff.maps.mask, None, item["K"][None], seed=i)
        starts = {"regressor": start, "gt": replace(start, rotation=item["R"][None], translation=item["t"][None]),
                  "pnp": replace(start, rotation=R_pnp, translation=t_pnp),
                  "mean": replace(start, translation=0.5 * (start.translation + t_pnp))}
        for name, over in variants.items():
            over = dict(over)
            steps = over.pop("steps", args.steps)
            kind, pose, points, weights, normal_kind, K_kind = (over.pop(key, allowed[0]) for key, allowed in CHOICES.items())
            w_surface, surface_delta = float(over.pop("surface", 0.0)), float(over.pop("surface_delta", 0.01))
            m, first, K = all_maps[kind], starts[pose], item["K"]
            if K_kind != "true":  # the pose of the regressor's start in that camera
                if pose != "regressor":
                    raise SystemExit(f"--variants: {name!r}: K={K_kind!r} starts from the regressor's pose only")
                K = default_intrinsics((item["rgb"].shape[0], item["rgb"].shape[1]))[0]
                if K_kind == "estimated":
                    K = pipe.estimate_intrinsics(ff.maps, seed=0, progress=False)[0]
                    print(f"image {i} | {name} | focal {float(K[0, 0]) / item['rgb'].shape[1]:.1f} widths (true "
                          f"{float(item['K'][0, 0]) / item['rgb'].shape[1]:.2f})", flush=True)
                dff = pipe.reconstruct(item["rgb"][None], K, refine=False)
                first = FitResult(dff.z_id, dff.z_ex, dff.rotation, dff.translation, dff.scale)
            confidence = pixel_weights(weights, m, exact)
            t0 = time.perf_counter()
            if steps == 0:
                res = first
            else:
                cfg = replace(ImageFitConfig(steps=steps, patience=steps, seed=i), **over)
                terms = None
                if points != "plain" or normal_kind != "plain" or w_surface:
                    terms = list(cfg.default_terms())
                if points != "plain":
                    terms = [t for t in terms if t.name != "points"]
                    if points in ("centred", "scaled"):
                        term = partial(centred_point_term, robust=cfg.robust, scaled=points == "scaled")
                        terms.append(LossTerm("points", cfg.w_points, term, "data"))
                if normal_kind == "rotated":
                    terms = [t for t in terms if t.name != "normals"]
                    term = partial(rotated_normal_term, robust=cfg.robust, delta=cfg.normal_delta)
                    terms.append(LossTerm("normals", cfg.w_normals, term, "data"))
                if w_surface:
                    term = partial(canonical_surface_term, robust=cfg.robust, delta=surface_delta)
                    terms.append(LossTerm("canonical surface", w_surface, term, "data"))
                res = fit_image(model, m.normals, m.canonical, m.mask, K[None], init=first, config=cfg,
                                progress=False, confidence=confidence, terms=terms,
                                point_valid=item["canonical_valid"][None] if kind == "exact" else None)
            row = evaluate_stage(model, (res.z_id, res.z_ex), (res.rotation, res.translation, res.scale), gt, item, 96)
            figures = (row["now_mean_mm"], row["posed_mm"], row["landmarks_mm"])
            totals[name] = [a + b for a, b in zip(totals[name], figures)]
            print(f"image {i} | {name} | NoW {figures[0]:.3f} | posed {figures[1]:.2f} | landmarks {figures[2]:.2f} | "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    n = len(args.images)
    base = totals.get("feed-forward", [float("nan")])[0]
    print(f"\nmeans over images {args.images}, {args.steps} steps")
    print("| variant | NoW mean | vs feed-forward | posed | landmarks |")
    print("|---|---|---|---|---|")
    for name, (now, posed, marks) in totals.items():
        print(f"| {name} | {now / n:.3f} | {100 * (now / base - 1):+.0f} % | {posed / n:.2f} | {marks / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
