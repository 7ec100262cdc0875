"""A camera's focal length from a canonical point map: the candidate whose best pose reprojects the map best.

A canonical point map pairs every head pixel with a point of the head in a fixed frame, so it is a dense set of
2D-3D correspondences. For given intrinsics, PnP (:func:`~nphmkit.fitting.pose.solve_pose`) finds the pose that
reprojects the points closest to their pixels. How the pixels of the nose spread against those of the ears
depends on the perspective, so intrinsics with the wrong focal length leave a larger reprojection error than the
right ones, whatever the pose. :func:`estimate_focal` tries candidate intrinsics (by default focal lengths of
1.4 to 5 image widths, principal point at the centre: :func:`centred_intrinsics`) and keeps the one with the
smallest median error. With ``step > 1`` the candidates (ordered by focal length) are searched coarse to fine:
every ``step``-th first, then the neighbours of the best; on the smooth, single-minimum error curves of canonical
maps this picks what the full search picks (20 of 20 held-out crops at ``step=3``) with 17 PnP solves instead
of 37. The pipeline uses ``step=3`` (:data:`PIPELINE_STEP`); the default 1 (every candidate) is the reference it
is tested against.

How well it works depends on the map (``benchmarks/RESULTS.md``, "What an unknown focal length costs"): on the
synthetic renders' exact maps it finds the focal length to the grid's 0.1 widths; on the shipped predictor's maps
of 20 held-out renders it is off by 0.37 widths on average, against 0.98 for assuming the default 2 widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nphmkit._checks import check_tensor
from nphmkit.fitting.pose import _project, solve_pose

PIPELINE_STEP = 3
"""The coarse-to-fine ``step`` that the pipeline's estimates use (``K="auto"``, ``--focal auto``)."""
DEFAULT_WIDTHS = tuple(round(1.4 + 0.1 * k, 1) for k in range(37))
"""The focal lengths :func:`estimate_focal` tries by default, in image widths (1.4, 1.5, ..., 5.0)."""


@dataclass(frozen=True)
class FocalEstimate:
    """``K (3, 3)``: the chosen candidate; ``index`` its position among the candidates; ``errors (C,)`` the median
    reprojection error (pixels) of each candidate's best pose (inf for candidates a coarse-to-fine search skipped)."""

    K: torch.Tensor
    index: int
    errors: torch.Tensor


def centred_intrinsics(size: int, widths=DEFAULT_WIDTHS) -> torch.Tensor:
    """``(C, 3, 3)`` intrinsics of a ``size x size`` image with focal lengths ``widths`` (in image widths) and the
    principal point at the centre."""
    f = torch.as_tensor(widths, dtype=torch.float32) * size
    K = torch.zeros(f.shape[0], 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, size / 2, size / 2, 1.0
    return K


def estimate_focal(point_map: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor | None = None,
                   max_points: int = 3000, iterations: int = 256, seed: int = 0, step: int = 1) -> FocalEstimate:
    """The intrinsics among ``candidates (C, 3, 3)`` (pixels; default :func:`centred_intrinsics` of the map's
    width) under which the canonical ``point_map (H, W, 3)`` (NPHM units) over ``mask (H, W)`` bool reprojects best.

    Each candidate gets its PnP pose from the same ``max_points`` pixels (drawn with ``seed``; ``iterations``
    RANSAC draws); its score is the median distance (pixels) between those pixels and their points projected with
    that pose. ``step``: 1 scores every candidate; more searches coarse to fine (module notes). Raises ValueError
    for fewer than 6 masked pixels.
    """
    check_tensor("point_map", point_map, ("H", "W", 3))
    check_tensor("mask", mask, tuple(point_map.shape[:2]), floating=False)
    candidates = _check_candidates(candidates, point_map.shape[1])
    errors = _search(lambda idx: _candidate_errors(point_map, mask, candidates[idx], max_points, iterations, seed),
                     candidates.shape[0], step)
    index = int(errors.argmin())
    return FocalEstimate(candidates[index].clone(), index, errors)


def estimate_shared_focal(point_maps: torch.Tensor, masks: torch.Tensor, candidates: torch.Tensor | None = None,
                          max_points: int = 3000, iterations: int = 256, seed: int = 0, step: int = 1) -> FocalEstimate:
    """The intrinsics among ``candidates (C, 3, 3)`` that best explain ``T`` canonical maps ``(T, H, W, 3)`` over
    ``masks (T, H, W)`` bool seen by one camera (a video's frames): as :func:`estimate_focal` for each map, with
    the candidates' median reprojection errors summed over the maps (``errors (C,)`` is that sum, pixels). A map
    with fewer than 6 masked pixels raises ValueError naming its index. ``step`` as in :func:`estimate_focal`."""
    check_tensor("point_maps", point_maps, ("T", "H", "W", 3))
    check_tensor("masks", masks, tuple(point_maps.shape[:3]), floating=False)
    if point_maps.shape[0] == 0:
        raise ValueError("point_maps: expected at least one map, got none")
    candidates = _check_candidates(candidates, point_maps.shape[2])

    def score(idx: list[int]) -> torch.Tensor:
        total = 0
        for j in range(point_maps.shape[0]):
            try:
                total = total + _candidate_errors(point_maps[j], masks[j], candidates[idx], max_points, iterations, seed)
            except ValueError as exc:
                raise ValueError(f"{exc} (map {j})") from None
        return total

    errors = _search(score, candidates.shape[0], step)
    index = int(errors.argmin())
    return FocalEstimate(candidates[index].clone(), index, errors)


def _search(score, count: int, step: int) -> torch.Tensor:
    """``(count,)`` errors of the candidates ``score(indices) -> (len(indices),)`` was asked for, inf elsewhere:
    all of them for ``step=1``; else every ``step``-th and the last, then the unscored ones within ``step - 1`` of
    the best of those."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ValueError(f"step: expected a positive int, got {step!r}")
    errors = torch.full((count,), float("inf"))
    first = sorted(set(range(0, count, step)) | {count - 1})
    errors[first] = score(first)
    best = first[int(errors[first].argmin())]
    near = [k for k in range(max(0, best - step + 1), min(count, best + step)) if k not in first]
    if near:
        errors[near] = score(near)
    return errors


def spread_picks(count: int, most: int) -> torch.Tensor:
    """``(k,)`` int64 indices of at most ``most`` of ``count`` items (a video's frames), evenly spaced and including
    the first and the last: the maps :func:`estimate_shared_focal` is given when a video is long."""
    if not isinstance(most, int) or isinstance(most, bool) or most < 1:
        raise ValueError(f"frames: expected a positive int, got {most!r}")
    return torch.linspace(0, count - 1, min(most, count)).round().long().unique()


def _check_candidates(candidates: torch.Tensor | None, width: int) -> torch.Tensor:
    if candidates is None:
        candidates = centred_intrinsics(width)
    check_tensor("candidates", candidates, ("C", 3, 3), finite=True)
    if candidates.shape[0] == 0:
        raise ValueError("candidates: expected at least one candidate, got none")
    return candidates


def _candidate_errors(point_map: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor, max_points: int,
                      iterations: int, seed: int) -> torch.Tensor:
    """``(C,)`` float32: each candidate's median reprojection error (pixels) after its PnP pose."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() < 6:
        raise ValueError(f"mask: need at least 6 head pixels to estimate a focal length, got {ys.numel()}")
    if ys.numel() > max_points:
        keep = torch.randperm(ys.numel(), generator=torch.Generator().manual_seed(seed))[:max_points]
        ys, xs = ys[keep], xs[keep]
    pixels = torch.stack([xs, ys], dim=-1).to(torch.float64) + 0.5
    points = point_map[ys, xs].to(torch.float64)
    errors = []
    for K in candidates.to(torch.float64):
        pose = solve_pose(pixels, points, K, iterations=iterations, seed=seed)
        uv, depth = _project(pose.R.to(torch.float64), pose.t.to(torch.float64), points, K)
        err = (uv - pixels).norm(dim=-1)
        errors.append(torch.where(depth > 0, err, torch.full_like(err, float("inf"))).median())
    return torch.stack(errors).to(torch.float32)
