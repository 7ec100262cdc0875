"""Head pose from a canonical point map: PnP with the intrinsics, robust to outliers.

Every foreground pixel of a canonical point map pairs an image position with a point in NPHM
space; the pose ``x_cam = R x_nphm + t`` (scale fixed) follows from these correspondences by
RANSAC over minimal direct-linear-transform solutions, then Gauss-Newton on the inliers with a
Huber penalty on the reprojection error. Expression changes move some canonical points away
from where the neutral head would put them; RANSAC treats them as outliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nphmkit._checks import check_tensor
from nphmkit.transforms import axis_angle_to_matrix, matrix_to_axis_angle


@dataclass(frozen=True)
class PoseEstimate:
    """``R (3, 3)``, ``t (3,)`` with ``x_cam = R x_nphm + t``; inlier mask over the used pixels; RMS error (px)."""

    R: torch.Tensor
    t: torch.Tensor
    inliers: torch.Tensor
    rms_px: float


def _dlt(x_norm: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Batched DLT: normalized image points ``(S, n, 2)``, 3D points ``(S, n, 3)`` -> ``[R|t]`` ``(S, 3, 4)``."""
    s, n, _ = X.shape
    Xh = torch.cat([X, torch.ones_like(X[..., :1])], dim=-1)  # (S, n, 4)
    zeros = torch.zeros_like(Xh)
    u, v = x_norm[..., :1], x_norm[..., 1:]
    rows1 = torch.cat([Xh, zeros, -u * Xh], dim=-1)
    rows2 = torch.cat([zeros, Xh, -v * Xh], dim=-1)
    A = torch.cat([rows1, rows2], dim=1)  # (S, 2n, 12)
    _, _, vh = torch.linalg.svd(A)
    M = vh[:, -1].reshape(s, 3, 4)
    # M = lambda [R | t] up to sign: the nearest rotation of M[:, :3] is det * U V^T, lambda = det * mean(S)
    U, S, Vh = torch.linalg.svd(M[:, :, :3])
    det = torch.linalg.det(U @ Vh)
    R = (U @ Vh) * det[:, None, None]
    t = M[:, :, 3] / (S.mean(-1) * det)[:, None]
    return torch.cat([R, t[:, :, None]], dim=-1)


def _project(R, t, X, K):
    cam = torch.einsum("...ij,...nj->...ni", R, X) + t[..., None, :]
    uv = torch.einsum("ij,...nj->...ni", K, cam)
    return uv[..., :2] / uv[..., 2:3].clamp_min(1e-6), cam[..., 2]


def solve_pose(
    pixels: torch.Tensor,
    points: torch.Tensor,
    K: torch.Tensor,
    iterations: int = 256,
    threshold_px: float = 3.0,
    refine_steps: int = 10,
    seed: int = 0,
) -> PoseEstimate:
    """Pose from 2D-3D correspondences: ``pixels (N, 2)`` (x, y), ``points (N, 3)`` NPHM, ``K (3, 3)``."""
    check_tensor("pixels", pixels, ("N", 2), finite=True)
    check_tensor("points", points, (pixels.shape[0], 3), finite=True)
    check_tensor("K", K, (3, 3))
    n = pixels.shape[0]
    if n < 6:
        raise ValueError(f"pixels: need at least 6 correspondences for a pose, got {n}")
    dt = torch.float64
    pix, X, Kd = pixels.to(dt), points.to(dt), K.to(dt)
    homo = torch.cat([pix, torch.ones_like(pix[:, :1])], dim=-1)
    x_norm = (torch.linalg.inv(Kd) @ homo.T).T[:, :2]
    g = torch.Generator().manual_seed(seed)
    sample = torch.stack([torch.randperm(n, generator=g)[:8] for _ in range(iterations)])
    Rt = _dlt(x_norm[sample], X[sample])
    uv, depth = _project(Rt[:, :, :3], Rt[:, :, 3], X[None].expand(iterations, -1, -1), Kd)
    err = (uv - pix[None]).norm(dim=-1)
    err = torch.where(depth > 0, err, torch.full_like(err, 1e9))
    score = (err < threshold_px).sum(-1)
    best = int(score.argmax())
    R, t = Rt[best, :, :3], Rt[best, :, 3]
    inliers = err[best] < threshold_px
    # tighten the inlier threshold to the data's own noise (2.5 x the median inlier error, at least
    # half a pixel): expression-moved points that still fit within a few pixels would bias the pose
    thr = float(min(threshold_px, max(0.5, 2.5 * float(err[best][inliers].median()))))
    # Gauss-Newton with a Huber weight on the inliers' reprojection error
    r = matrix_to_axis_angle(R[None])[0]
    params = torch.cat([r, t])
    for _ in range(refine_steps):
        Xi, pi = X[inliers], pix[inliers]

        def residual(p: torch.Tensor) -> torch.Tensor:
            uv_i, _ = _project(axis_angle_to_matrix(p[None, :3])[0], p[3:], Xi, Kd)
            return (uv_i - pi).reshape(-1)

        res = residual(params)
        J = torch.func.jacfwd(residual)(params)  # (2n, 6): six forward-mode passes
        a = res.reshape(-1, 2).norm(dim=-1).repeat_interleave(2)
        w = torch.where(a <= thr, torch.ones_like(a), thr / a).sqrt()
        delta = torch.linalg.lstsq(J * w[:, None], -(res * w)[:, None]).solution[:, 0]
        params = params + delta
        uv_all, depth_all = _project(axis_angle_to_matrix(params[None, :3])[0], params[3:], X, Kd)
        err_all = (uv_all - pix).norm(dim=-1)
        inliers = (err_all < thr) & (depth_all > 0)
        if bool(inliers.any()):
            thr = float(min(threshold_px, max(0.5, 2.5 * float(err_all[inliers].median()))))
            inliers = (err_all < thr) & (depth_all > 0)
        if float(delta.norm()) < 1e-9:
            break
    R = axis_angle_to_matrix(params[None, :3])[0]
    rms = float(err_all[inliers].pow(2).mean().sqrt()) if bool(inliers.any()) else float("inf")
    return PoseEstimate(R.to(pixels.dtype), params[3:].to(pixels.dtype), inliers, rms)


def pose_from_point_map(
    point_map: torch.Tensor,
    mask: torch.Tensor,
    K: torch.Tensor,
    max_points: int = 3000,
    seed: int = 0,
    **kwargs,
) -> PoseEstimate:
    """Pose of the head seen in a canonical ``point_map (H, W, 3)`` over ``mask (H, W)`` with intrinsics ``K (3, 3)``."""
    check_tensor("point_map", point_map, ("H", "W", 3))
    check_tensor("mask", mask, tuple(point_map.shape[:2]), floating=False)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() > max_points:
        keep = torch.randperm(ys.numel(), generator=torch.Generator().manual_seed(seed))[:max_points]
        ys, xs = ys[keep], xs[keep]
    pixels = torch.stack([xs, ys], dim=-1).to(point_map.dtype) + 0.5
    return solve_pose(pixels, point_map[ys, xs], K, seed=seed, **kwargs)
