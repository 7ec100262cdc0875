"""Exact point-to-mesh distances: closest points on triangles, found through a k-d tree of triangle centres.

For each query point the nearest *vertex* bounds its distance to the mesh from above (``d_v``);
a triangle can only be closer if its centre lies within ``d_v + r`` (``r``: the largest distance
from a triangle's centre to its corners). Those candidates are few on a regular mesh, and each is
solved exactly (the closest point of a triangle, by its Voronoi regions), so the result equals
the brute-force minimum over all triangles (:func:`point_mesh_distance_reference`, used by the
tests) at a fraction of the cost. Work is chunked over the query points to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Closest:
    """Per query point: ``distance (P,)``, ``point (P, 3)`` on the mesh, ``face (P,)`` int64, ``bary (P, 3)``."""

    distance: np.ndarray
    point: np.ndarray
    face: np.ndarray
    bary: np.ndarray


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of triangles ``(a, b, c)`` to points ``p`` (all ``(M, 3)``, float64): ``(point (M, 3), bary (M, 3))``.

    Vectorised form of the classic Voronoi-region test (vertex, edge or face region).
    """
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    m = len(p)
    bary = np.zeros((m, 3))
    done = np.zeros(m, bool)

    def assign(mask, u, v, w):
        nonlocal done
        mask = mask & ~done
        bary[mask] = np.stack([u, v, w], 1)[mask]
        done |= mask

    with np.errstate(divide="ignore", invalid="ignore"):
        one, zero = np.ones(m), np.zeros(m)
        assign((d1 <= 0) & (d2 <= 0), one, zero, zero)  # vertex a
        assign((d3 >= 0) & (d4 <= d3), zero, one, zero)  # vertex b
        assign((d6 >= 0) & (d5 <= d6), zero, zero, one)  # vertex c
        t = d1 / (d1 - d3)
        assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t, t, zero)  # edge ab
        t = d2 / (d2 - d6)
        assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t, zero, t)  # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        assign((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), zero, 1 - t, t)  # edge bc
        denom = va + vb + vc
        v, w = vb / denom, vc / denom
        assign(np.ones(m, bool), 1 - v - w, v, w)  # inside the face
    bary = np.nan_to_num(bary)
    point = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return point, bary


def point_mesh_distance_reference(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Brute force: for every point the minimum over every triangle (``(P,)``; small meshes only)."""
    points, vertices = np.asarray(points, np.float64), np.asarray(vertices, np.float64)
    tri = vertices[np.asarray(faces)]
    out = np.empty(len(points))
    for i, p in enumerate(points):
        q, _ = closest_on_triangles(np.repeat(p[None], len(tri), 0), tri[:, 0], tri[:, 1], tri[:, 2])
        out[i] = np.sqrt(((q - p) ** 2).sum(1)).min()
    return out


def closest_points(points, vertices, faces, chunk: int = 20_000) -> Closest:
    """Exact closest points on the mesh ``(vertices (V, 3), faces (F, 3))`` for ``points (P, 3)``.

    Arrays or tensors; computed in float64 with numpy/scipy (see the module notes). Units: those of
    the inputs.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(_numpy(points), np.float64).reshape(-1, 3)
    vertices = np.asarray(_numpy(vertices), np.float64)
    faces = np.asarray(_numpy(faces), np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"faces: expected a non-empty (F, 3) array, got shape {faces.shape}")
    tri = vertices[faces]  # (F, 3, 3)
    centre = tri.mean(1)
    radius = np.sqrt(((tri - centre[:, None]) ** 2).sum(-1)).max(1)
    r_max = float(radius.max())
    used = np.unique(faces)
    vtree, ctree = cKDTree(vertices[used]), cKDTree(centre)
    n = len(points)
    dist, best, face, bary = np.empty(n), np.empty((n, 3)), np.empty(n, np.int64), np.empty((n, 3))
    for s in range(0, n, chunk):
        p = points[s : s + chunk]
        d_v, _ = vtree.query(p)
        cand = ctree.query_ball_point(p, d_v + r_max + 1e-12)
        counts = np.fromiter((len(c) for c in cand), np.int64, len(cand))
        fid = np.fromiter((f for c in cand for f in c), np.int64, int(counts.sum()))
        owner = np.repeat(np.arange(len(p)), counts)
        q, bc = closest_on_triangles(p[owner], tri[fid, 0], tri[fid, 1], tri[fid, 2])
        d = np.sqrt(((q - p[owner]) ** 2).sum(1))
        order = np.lexsort((d, owner))  # per owner, nearest first
        first = order[np.r_[0, np.flatnonzero(np.diff(owner[order])) + 1]]
        dist[s : s + len(p)] = d[first]
        best[s : s + len(p)] = q[first]
        face[s : s + len(p)] = fid[first]
        bary[s : s + len(p)] = bc[first]
    return Closest(dist, best, face, bary)


def _numpy(x):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return x
