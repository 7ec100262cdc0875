"""Aligning a predicted mesh to a scan: a similarity from corresponding landmarks (Umeyama), then ICP.

Transforms are ``x -> s R x + t`` (``s`` scalar, ``R (3, 3)``, ``t (3,)``), float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nphmkit.eval.distance import closest_points


@dataclass(frozen=True)
class Similarity:
    s: float = 1.0
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(N, 3)`` -> ``s R x + t``."""
        return self.s * np.asarray(x, np.float64) @ self.R.T + self.t

    def after(self, first: "Similarity") -> "Similarity":
        """This transform applied after ``first``: ``x -> self(first(x))``."""
        return Similarity(self.s * first.s, self.R @ first.R, self.s * self.R @ first.t + self.t)


def umeyama(src, dst, scale: bool = True) -> Similarity:
    """The least-squares similarity (or rigid transform, ``scale=False``) with ``dst ~ s R src + t``.

    ``src``, ``dst``: ``(N, 3)`` corresponding points, ``N >= 3`` not collinear. Never a reflection.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"src, dst: expected two (N, 3) arrays with N >= 3, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var = (xs**2).sum() / len(src)
    s = float((S * np.diag(D)).sum() / var) if scale else 1.0
    return Similarity(s, R, mu_d - s * R @ mu_s)


@dataclass(frozen=True)
class ICPResult:
    transform: Similarity
    """Moves the mesh onto the points: ``mesh' = transform.apply(mesh)``."""
    errors: list[float]
    """Mean point-to-surface distance of each transform tried (the first: ``init``); ``transform`` is the best."""
    converged: bool
    iterations: int


def icp(points, vertices, faces, init: Similarity = Similarity(), iterations: int = 30, scale: bool = False,
        tol: float = 1e-6) -> ICPResult:
    """Move the mesh ``(vertices (V, 3), faces (F, 3))`` onto ``points (P, 3)`` (a scan): ICP on point-to-surface distances.

    Each iteration finds the closest point on the moved mesh for every scan point (exactly,
    :func:`~nphmkit.eval.distance.closest_points`). Rigid (default): one Gauss-Newton step of the
    point-to-plane objective (the closest points' face normals), which converges in a few
    iterations on smooth surfaces where point-to-point ICP crawls. ``scale=True``: the similarity
    refit of the closest points (Umeyama). Stops when the mean distance improves by less than ``tol``
    (relative), returning the best transform seen, or after ``iterations``.
    """
    points = np.asarray(points, np.float64)
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    T = init
    best, best_error = init, np.inf
    errors, converged, it = [], False, 0
    for it in range(1, iterations + 2):  # noqa: B007 - the count is returned
        moved = T.apply(vertices)
        near = closest_points(points, moved, faces)
        errors.append(float(near.distance.mean()))
        if errors[-1] >= best_error * (1 - tol):  # no longer improving: keep the best transform
            converged = True
            break
        best, best_error = T, errors[-1]
        if it > iterations:
            break
        if scale:
            src = (near.bary[:, :, None] * vertices[faces[near.face]]).sum(1)  # in the mesh's own frame
            T = umeyama(src, points, scale=True)
        else:
            T = _point_to_plane_step(near.point, face_normals(moved, faces)[near.face], points).after(T)
    return ICPResult(best, errors, converged, min(it, iterations))


def face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Unit normals ``(F, 3)`` of the triangles ``f (F, 3)`` of vertices ``v (V, 3)`` (counter-clockwise = outward)."""
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def _point_to_plane_step(c: np.ndarray, n: np.ndarray, p: np.ndarray) -> Similarity:
    """The small rigid motion ``x -> R x + t`` that best moves surface points ``c`` (normals ``n``) onto the
    planes through them towards ``p``: least squares of ``((R c + t - p) . n)`` linearised in the rotation."""
    A = np.concatenate([np.cross(c, n), n], axis=1)  # (P, 6)
    b = -((c - p) * n).sum(1)
    x, *_ = np.linalg.lstsq(A, b, rcond=None)
    w, t = x[:3], x[3:]
    angle = float(np.linalg.norm(w))
    if angle < 1e-15:
        R = np.eye(3)
    else:
        k = w / angle
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
    return Similarity(1.0, R, t)
