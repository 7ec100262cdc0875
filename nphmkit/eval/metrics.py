"""Reconstruction metrics: the NoW protocol (scan-to-mesh after landmark + ICP alignment) and
single-view face-reconstruction figures (accuracy, completeness, chamfer, normal consistency,
precision / recall / F-score at distance thresholds), in millimetres.

Meshes are ``(vertices (V, 3), faces (F, 3))`` arrays or tensors; ``mm_per_unit`` converts their
units (250 for NPHM units, 1 for meshes in mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nphmkit.eval.align import ICPResult, Similarity, face_normals, icp, umeyama
from nphmkit.eval.distance import _numpy, closest_points

MM_PER_NPHM = 250.0
THRESHOLDS_MM = (1.0, 2.5, 5.0, 10.0)


def _mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    v, f = np.asarray(_numpy(vertices), np.float64), np.asarray(_numpy(faces), np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"mesh: expected vertices (V, 3) and non-empty faces (F, 3), got {v.shape} and {f.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"mesh: {int((~np.isfinite(v)).any(1).sum())} of {len(v)} vertices are NaN or infinite")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"mesh: faces index vertices {f.min()}..{f.max()}, but there are {len(v)}")
    return v, f


def face_region(points, nose_tip, radius: float) -> np.ndarray:
    """``(P,)`` bool: the points within ``radius`` of the nose tip ``(3,)`` (same units as the points)."""
    points = np.asarray(_numpy(points), np.float64)
    return np.linalg.norm(points - np.asarray(_numpy(nose_tip), np.float64), axis=1) <= radius


@dataclass(frozen=True)
class NowResult:
    median: float
    mean: float
    std: float
    distances: np.ndarray
    """``(P,)`` scan-to-mesh distances (mm) of the scan points used."""
    alignment: Similarity
    """Moves the predicted mesh onto the scan."""
    icp: ICPResult


def now_errors(scan_points, scan_landmarks, vertices, faces, landmarks, mm_per_unit: float = 1.0,
               icp_iterations: int = 30, mask=None) -> NowResult:
    """The NoW protocol for one scan.

    Args:
        scan_points: ``(P, 3)`` scan vertices (the face region), in the scan's units.
        scan_landmarks, landmarks: ``(7, 3)`` NoW landmarks of the scan and of the prediction (same order).
        vertices, faces: the predicted mesh, any units and pose.
        mm_per_unit: millimetres per scan unit.
        mask: ``(P,)`` bool scan points to use (default: all).

    The prediction is moved onto the scan by the similarity of the landmarks, then by rigid ICP on
    point-to-surface distances; the result is the scan-to-mesh distance of every used scan point.
    """
    v, f = _mesh(vertices, faces)
    scan = np.asarray(_numpy(scan_points), np.float64)
    if mask is not None:
        scan = scan[np.asarray(_numpy(mask), bool)]
    if len(scan) == 0:
        raise ValueError("scan_points: no points to evaluate (empty scan or mask)")
    init = umeyama(_numpy(landmarks), _numpy(scan_landmarks), scale=True)
    fit = icp(scan, v, f, init=init, iterations=icp_iterations, scale=False)
    d = closest_points(scan, fit.transform.apply(v), f).distance * mm_per_unit
    return NowResult(float(np.median(d)), float(d.mean()), float(d.std()), d, fit.transform, fit)


def sample_surface(vertices, faces, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly on the surface (area-weighted) and their face normals, ``(n, 3)`` each."""
    v, f = _mesh(vertices, faces)
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    pts = (w[:, :, None] * tri[face]).sum(1)
    normals = cross[face] / np.maximum(area[face], 1e-30)[:, None]
    return pts, normals


def surface_metrics(vertices, faces, gt_vertices, gt_faces, mm_per_unit: float = MM_PER_NPHM, n_samples: int = 20_000,
                    thresholds_mm=THRESHOLDS_MM, seed: int = 0) -> dict:
    """Figures of a predicted mesh against a ground-truth mesh in the same frame (already aligned).

    Returns a dict (distances in mm): ``accuracy`` (mean predicted-to-truth distance), ``completeness``
    (truth-to-predicted), ``chamfer`` (their mean), ``normal_consistency`` (mean ``|n . n'|`` at the
    closest points, both ways), and ``precision`` / ``recall`` / ``fscore`` per threshold; the samples'
    distances as arrays ``accuracy_distances (n_samples,)`` and ``completeness_distances (n_samples,)``.
    """
    v, f = _mesh(vertices, faces)
    gv, gf = _mesh(gt_vertices, gt_faces)
    p_pts, p_nrm = sample_surface(v, f, n_samples, seed)
    g_pts, g_nrm = sample_surface(gv, gf, n_samples, seed + 1)
    to_gt, to_pred = closest_points(p_pts, gv, gf), closest_points(g_pts, v, f)
    gt_face_n = face_normals(gv, gf)
    pred_face_n = face_normals(v, f)
    nc = 0.5 * (np.abs((p_nrm * gt_face_n[to_gt.face]).sum(1)).mean()
                + np.abs((g_nrm * pred_face_n[to_pred.face]).sum(1)).mean())
    acc, comp = to_gt.distance * mm_per_unit, to_pred.distance * mm_per_unit
    out = {"accuracy": float(acc.mean()), "completeness": float(comp.mean()),
           "chamfer": float(0.5 * (acc.mean() + comp.mean())), "normal_consistency": float(nc),
           "precision": {}, "recall": {}, "fscore": {}, "accuracy_distances": acc, "completeness_distances": comp}
    for tau in thresholds_mm:
        p, r = float((acc < tau).mean()), float((comp < tau).mean())
        key = f"{tau:g}mm"
        out["precision"][key], out["recall"][key] = p, r
        out["fscore"][key] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return out
