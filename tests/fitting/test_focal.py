"""The focal length from a canonical point map (:mod:`nphmkit.fitting.focal`): an exact map of a known camera gives
its focal length back; bad inputs are refused by name."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.fitting.focal import DEFAULT_WIDTHS, centred_intrinsics, estimate_focal, estimate_shared_focal, spread_picks
from nphmkit.transforms import axis_angle_to_matrix


def ellipsoid_map(size: int, widths: float, axis_angle, axes=(0.45, 0.55, 0.5)):
    """The exact canonical point map ``(size, size, 3)`` and mask of an ellipsoid (semi-axes ``axes``, NPHM units)
    turned by ``axis_angle``, seen by a centred camera of focal length ``widths`` image widths from a distance that
    makes it fill the same part of the image at every focal length."""
    f = widths * size
    R = axis_angle_to_matrix(torch.tensor([axis_angle], dtype=torch.float64)).reshape(3, 3)
    t = torch.tensor([0.0, 0.0, 1.6 * widths], dtype=torch.float64)
    grid = torch.arange(size, dtype=torch.float64) + 0.5
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    rays = torch.stack([(xs - size / 2) / f, (ys - size / 2) / f, torch.ones_like(xs)], -1)
    origin, direction = -(R.T @ t), rays @ R  # the camera centre and the rays in the ellipsoid's frame
    D = torch.tensor(axes, dtype=torch.float64)
    a = ((direction / D) ** 2).sum(-1)
    b = 2 * ((origin / D) * (direction / D)).sum(-1)
    c = ((origin / D) ** 2).sum() - 1
    disc = b * b - 4 * a * c
    s = (-b - disc.clamp_min(0).sqrt()) / (2 * a)  # the nearer intersection
    return (origin + s[..., None] * direction).float(), disc > 0


@settings(max_examples=6, deadline=None)
@given(k=st.integers(0, len(DEFAULT_WIDTHS) - 1), size=st.sampled_from([48, 61, 64]),
       angles=st.tuples(*[st.floats(-0.4, 0.4)] * 3))
def test_an_exact_map_gives_the_focal_length_back(k, size, angles):
    widths = DEFAULT_WIDTHS[k]
    point_map, mask = ellipsoid_map(size, widths, angles)
    est = estimate_focal(point_map, mask, max_points=600, iterations=32)
    assert abs(DEFAULT_WIDTHS[est.index] - widths) < 0.1 + 1e-6, (DEFAULT_WIDTHS[est.index], widths)
    torch.testing.assert_close(est.K, centred_intrinsics(size)[est.index])
    assert est.errors.shape == (len(DEFAULT_WIDTHS),) and float(est.errors[est.index]) == float(est.errors.min())
    assert float(est.errors[est.index]) < 0.5  # pixels: the right camera reprojects the exact map to its pixels


def test_candidates_and_bad_inputs():
    K = centred_intrinsics(61, (2.0, 3.5))
    assert K.shape == (2, 3, 3) and K[1, 0, 0] == 3.5 * 61 and K[0, 0, 2] == K[0, 1, 2] == 30.5 and K[0, 2, 2] == 1
    point_map, mask = ellipsoid_map(32, 3.0, (0.1, 0.2, 0.0))
    # the wrong focal lengths alone: the nearer one wins
    assert estimate_focal(point_map, mask, centred_intrinsics(32, (1.5, 2.6, 4.5)), iterations=32).index == 1
    few = torch.zeros_like(mask)
    few[16, 10:15] = True
    with pytest.raises(ValueError, match="mask: need at least 6 head pixels to estimate a focal length, got 5"):
        estimate_focal(point_map, few)
    with pytest.raises(ValueError, match="candidates: expected at least one candidate"):
        estimate_focal(point_map, mask, torch.zeros(0, 3, 3))
    with pytest.raises(ValueError, match="candidates"):
        estimate_focal(point_map, mask, torch.eye(3))
    with pytest.raises(ValueError, match="mask"):
        estimate_focal(point_map, mask[:-1])


def test_a_shared_focal_length_sums_the_maps_errors():
    maps, masks = zip(*(ellipsoid_map(40, 2.7, angles) for angles in [(0.1, 0.3, 0.0), (-0.2, -0.1, 0.3)]))
    maps, masks = torch.stack(maps), torch.stack(masks)
    candidates = centred_intrinsics(40, (2.0, 2.7, 3.5))
    shared = estimate_shared_focal(maps, masks, candidates, max_points=500, iterations=32)
    each = [estimate_focal(maps[j], masks[j], candidates, max_points=500, iterations=32).errors for j in range(2)]
    torch.testing.assert_close(shared.errors, each[0] + each[1])
    assert shared.index == 1 and torch.equal(shared.K, candidates[1])
    masks[1] = False
    with pytest.raises(ValueError, match=r"need at least 6 head pixels .* got 0 \(map 1\)"):
        estimate_shared_focal(maps, masks, candidates)
    with pytest.raises(ValueError, match="point_maps: expected at least one map"):
        estimate_shared_focal(maps[:0], masks[:0])
    with pytest.raises(ValueError, match="masks"):
        estimate_shared_focal(maps, masks[:, 1:])


@settings(max_examples=5, deadline=None)
@given(k=st.integers(0, len(DEFAULT_WIDTHS) - 1), size=st.sampled_from([40, 47]),
       angles=st.tuples(*[st.floats(-0.4, 0.4)] * 3), step=st.integers(2, 5))
def test_the_coarse_to_fine_search_picks_what_the_full_search_picks(k, size, angles, step):
    point_map, mask = ellipsoid_map(size, DEFAULT_WIDTHS[k], angles)
    full = estimate_focal(point_map, mask, max_points=400, iterations=16)
    fast = estimate_focal(point_map, mask, max_points=400, iterations=16, step=step)
    assert fast.index == full.index and torch.equal(fast.K, full.K)
    scored = torch.isfinite(fast.errors)
    torch.testing.assert_close(fast.errors[scored], full.errors[scored], rtol=0, atol=0)  # same pixels, same seeds
    assert int(scored.sum()) < len(DEFAULT_WIDTHS)  # it skipped some
    shared = estimate_shared_focal(torch.stack([point_map, point_map]), torch.stack([mask, mask]), max_points=400,
                                   iterations=16, step=step)
    assert shared.index == full.index and torch.equal(torch.isfinite(shared.errors), scored)


def test_the_search_scores_the_coarse_grid_then_the_best_ones_neighbours():
    from nphmkit.fitting.focal import _search

    asked = []

    def score(idx):
        asked.append(list(idx))
        return (torch.tensor(idx, dtype=torch.float32) - 20.4) ** 2  # a single minimum at candidate 20

    errors = _search(score, 37, 3)
    assert asked == [list(range(0, 37, 3)), [19, 20, 22, 23]]  # 21 is the coarse best; then its unscored neighbours
    assert int(errors.argmin()) == 20 and int(torch.isfinite(errors).sum()) == 17
    asked.clear()
    assert int(_search(score, 10, 4).argmin()) == 9 and asked[0] == [0, 4, 8, 9]  # the last candidate is scored too
    assert torch.isfinite(_search(score, 5, 1)).all()
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="step: expected a positive int"):
            _search(score, 5, bad)


def test_a_long_video_gives_evenly_spread_frames():
    assert spread_picks(12, 5).tolist() == [0, 3, 6, 8, 11] and spread_picks(3, 5).tolist() == [0, 1, 2]
    assert spread_picks(1, 5).tolist() == [0]
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="frames: expected a positive int"):
            spread_picks(10, bad)
