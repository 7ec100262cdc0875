"""The terms that benchmarks/bench_refine_variants.py swaps into ``fit_image`` (its ``"points"``, ``"normals"`` and
``"surface"`` choices)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_refine_variants import canonical_surface_term, centred_point_term, rotated_normal_term  # noqa: E402

from nphmkit.losses import point_map_loss  # noqa: E402
from nphmkit.losses.image import robust as penalty  # noqa: E402


def _ctx(points, target, mask, confidence=None):
    render = SimpleNamespace(canonical=points, mask=mask)
    targets = SimpleNamespace(points=target, mask=mask, point_valid=mask, confidence=confidence)
    return SimpleNamespace(render=render, targets=targets, z_id=points)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 41), seed=st.integers(0, 10_000), scale=st.floats(0.9, 1.1),
       offset=st.floats(-0.05, 0.05), robust=st.sampled_from(["huber", "cauchy", "l2"]))
def test_point_terms_ignore_what_they_claim_to(n, seed, scale, offset, robust):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(2, n, 3, generator=g, dtype=torch.float64) * 0.1
    mask = torch.rand(2, n, generator=g) > 0.2
    mask[:, :3] = True  # at least three pixels per image
    confidence = torch.rand(2, n, generator=g, dtype=torch.float64) + 0.1
    # a target that is the rendered points moved by a global offset: the centred term sees nothing
    shifted = points + offset
    assert float(centred_point_term(_ctx(points, shifted, mask, confidence), robust)) < 1e-12
    # scaled about any centre and moved: only the scaled term sees nothing
    centre = torch.randn(1, 1, 3, generator=g, dtype=torch.float64) * 0.1
    similar = scale * (points - centre) + centre + offset
    assert float(centred_point_term(_ctx(points, similar, mask, confidence), robust, scaled=True)) < 1e-12
    if abs(scale - 1) > 0.02:
        assert float(centred_point_term(_ctx(points, similar, mask, confidence), robust)) > 0
    # under the squared penalty the removed offset and scale are the least-squares ones: never worse than none
    noisy = points + torch.randn(2, n, 3, generator=g, dtype=torch.float64) * 0.01
    plain = point_map_loss(points, noisy, mask.to(points.dtype) * confidence, "l2")
    centred = centred_point_term(_ctx(points, noisy, mask, confidence), "l2")
    scaled = centred_point_term(_ctx(points, noisy, mask, confidence), "l2", scaled=True)
    assert scaled <= centred + 1e-12 and centred <= plain + 1e-12


def test_scaled_point_term_passes_gradients():
    g = torch.Generator().manual_seed(3)
    points = (torch.randn(1, 17, 3, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    target = 1.03 * points.detach() + 0.01 * torch.randn(1, 17, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(1, 17, dtype=torch.bool)
    centred_point_term(_ctx(points, target, mask), "cauchy", scaled=True).backward()
    assert points.grad is not None and torch.isfinite(points.grad).all() and points.grad.abs().sum() > 0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 41), seed=st.integers(0, 10_000), angle=st.floats(0.005, 0.1),
       robust=st.sampled_from(["huber", "cauchy", "l2"]))
def test_rotated_normal_term_ignores_one_rotation_of_the_whole_map(n, seed, angle, robust):
    from nphmkit.losses import normal_map_loss
    from nphmkit.transforms import axis_angle_to_matrix

    g = torch.Generator().manual_seed(seed)
    normals = torch.nn.functional.normalize(torch.randn(1, n, 3, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.ones(1, n, dtype=torch.bool)
    axis = torch.nn.functional.normalize(torch.randn(1, 3, generator=g, dtype=torch.float64), dim=-1)
    R = axis_angle_to_matrix(axis * angle)  # (1, 3, 3)
    turned = normals @ R.transpose(1, 2)  # every target normal turned by one rotation
    ctx = SimpleNamespace(render=SimpleNamespace(normals=normals, mask=mask),
                          targets=SimpleNamespace(normals=turned, mask=mask, confidence=None))
    assert float(rotated_normal_term(ctx, robust, 0.05)) < 1e-9
    assert float(normal_map_loss(normals, turned, mask, robust, 0.05)) > 1e-6  # the plain term sees it


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 37), seed=st.integers(0, 10_000), radius=st.floats(0.8, 1.2),
       robust=st.sampled_from(["huber", "cauchy", "l1"]))
def test_canonical_surface_term_is_the_identity_sdf_at_the_target_points(n, seed, radius, robust):
    g = torch.Generator().manual_seed(seed)
    # an identity SDF: the sphere of radius 1, shifted by the sum of the hyper coordinates
    model = SimpleNamespace(identity_sdf=lambda q, z: (q[..., :3].norm(dim=-1) - 1 + q[..., 3:].sum(-1))[..., None])
    direction = torch.nn.functional.normalize(torch.randn(2, n, 3, generator=g, dtype=torch.float64), dim=-1)
    target = radius * direction  # the predicted canonical points, all at distance |radius - 1| from the surface
    hit = torch.rand(2, n, generator=g) > 0.5
    mask = torch.rand(2, n, generator=g) > 0.3
    mask[:, 0] = True
    hyper = torch.rand(2, n, 2, generator=g, dtype=torch.float64) * 0.1
    rendered = torch.cat([torch.zeros(2, n, 3, dtype=torch.float64), hyper], -1)
    confidence = torch.rand(2, n, generator=g, dtype=torch.float64) + 0.1
    ctx = SimpleNamespace(model=model, z_id=torch.zeros(2, 4, dtype=torch.float64),
                          render=SimpleNamespace(canonical=rendered, mask=hit),
                          targets=SimpleNamespace(points=target, mask=mask, point_valid=mask, confidence=confidence))
    # the render's hyper coordinates where it hits, 0 elsewhere; weights: target mask x confidence
    sdf = (radius - 1) + torch.where(hit, hyper.sum(-1), 0.0)
    w = mask.to(torch.float64) * confidence
    expected = (penalty(sdf.abs(), robust, 0.01) * w).sum() / w.sum()
    torch.testing.assert_close(canonical_surface_term(ctx, robust, 0.01), expected)
