"""The synthetic head family: distances, symmetry, canonical map, anchors, determinism, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nphmkit.data.synthetic import BOUNDS, SyntheticHead
from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.landmarks import ANCHOR_NAMES, LANDMARK_NAMES, anchors, landmarks
from nphmkit.data.synthetic.primitives import Vec3
from nphmkit.mesh import extract_mesh
from nphmkit.render import Camera, RenderConfig, render
from tests.helpers import assert_close

MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def _box_points(n, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(BOUNDS[0]), torch.tensor(BOUNDS[1])
    return lo + (hi - lo) * torch.rand(1, n, 3, generator=g)


def test_parameter_counts_and_determinism():
    assert SyntheticHead.n_identity >= 12 and SyntheticHead.n_expression >= 4
    a, b = SyntheticHead.sample(3, seed=5), SyntheticHead.sample(3, seed=5)
    assert torch.equal(a.identity, b.identity) and torch.equal(a.expression, b.expression)
    assert not torch.equal(a.identity, SyntheticHead.sample(3, seed=6).identity)
    x = _box_points(500, 0).expand(3, -1, -1)
    assert torch.equal(a.sdf(x), b.sdf(x))


@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(1, 300))
def test_value_only_composition_is_the_full_one_bit_for_bit(seed, batch, n):
    """The value-only composition skips the canonical/group/carve bookkeeping; its values and gradients are
    those of the full composition (the reference) exactly, for odd batch and point counts."""
    head = SyntheticHead.sample(batch, seed)
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(BOUNDS[0]), torch.tensor(BOUNDS[1])
    x = (lo + (hi - lo) * torch.rand(batch, n, 3, generator=g)).requires_grad_(True)
    fast, full = head._compose(x, full=False).value, head._compose(x).value
    assert torch.equal(fast, full)
    (g_fast,) = torch.autograd.grad(fast.sum(), x)
    (g_full,) = torch.autograd.grad(full.sum(), x)
    assert torch.equal(g_fast, g_full)


@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 301))
def test_sdf_on_coordinate_planes_matches_the_point_tensor_reference(seed, batch, n):
    """``sdf`` runs on three (B, N) coordinate planes (the fast path); the (B, N, 3) composition is the
    reference. Values, and gradients w.r.t. the points and both parameter sets, agree to float rounding, for
    odd batch and point counts; points out in space, near the surface and at the face landmarks (which sit
    on primitives' axes, where a length's gradient must stay finite). The canonical map and the part groups
    likewise."""
    from nphmkit.data.synthetic.framing import face_points

    g = torch.Generator().manual_seed(seed)
    ident = P.sample_identity(batch, seed).requires_grad_(True)
    expr = P.sample_expression(batch, seed + 1).requires_grad_(True)
    head = SyntheticHead(ident, expr)
    lo, hi = torch.tensor(BOUNDS[0]), torch.tensor(BOUNDS[1])
    box = lo + (hi - lo) * torch.rand(batch, n, 3, generator=g)
    with torch.no_grad():
        marks = face_points(head)
    near = marks[:, torch.randint(0, marks.shape[1], (n,), generator=g)] + 0.01 * torch.randn(batch, n, 3, generator=g)
    x = torch.cat([box, near, marks], 1).requires_grad_(True)
    out = {}
    for planes in (True, False):
        head.coordinate_planes = planes
        value = head.sdf(x)
        out[planes] = (value, *torch.autograd.grad((value * torch.linspace(0.5, 1.5, value.shape[1])).sum(),
                                                   (x, ident, expr)))
    for fast, ref in zip(out[True], out[False]):
        assert torch.isfinite(fast).all()
        assert_close(fast, ref, atol=2e-5, rtol=1e-5)
    assert (out[True][0] - out[False][0]).abs().max() <= 1e-6
    # the canonical map and the part groups: the full composition on planes against the reference
    with torch.no_grad():
        maps = {}
        for planes in (True, False):
            head.coordinate_planes = planes
            maps[planes] = (*head.canonical(x), head.groups(x))
    assert maps[True][0].shape == (batch, x.shape[1], 3)
    assert_close(maps[True][0], maps[False][0], atol=2e-6, rtol=0)
    assert torch.equal(maps[True][1], maps[False][1]) and torch.equal(maps[True][2], maps[False][2])
    # a point's value does not depend on the points beside it (so an image does not depend on its batch)
    del head.coordinate_planes  # the class default: planes
    with torch.no_grad():
        whole = head.sdf(x)
        assert torch.equal(head.sdf(x[:, 1::3].contiguous()), whole[:, 1::3])
        assert torch.equal(head._compose(Vec3.of(x), full=False).value, whole)


@given(st.integers(0, 10_000))
def test_lipschitz_at_most_one(seed):
    head = SyntheticHead.sample(1, seed)
    x = _box_points(400, seed).requires_grad_(True)
    (g,) = torch.autograd.grad(head.sdf(x).sum(), x)
    assert g.norm(dim=-1).max() <= 1.0 + 1e-4
    y = x.detach() + 0.02 * torch.randn_like(x)
    ratio = (head.sdf(y) - head.sdf(x.detach())).abs() / (y - x.detach()).norm(dim=-1)
    assert ratio.max() <= 1.0 + 1e-4


def test_true_distance_near_the_surface():
    head = SyntheticHead.sample(1, 3)
    mesh = extract_mesh(lambda p: head.sdf(p[None])[0], BOUNDS, 96)
    v, n = mesh.vertices[None], mesh.vertex_normals()[None]
    for offset in (-0.01, 0.005, 0.01):
        err = (head.sdf(v + offset * n) - offset).abs()
        assert err.median() < 1e-3, (offset, err.median())


def test_mirror_symmetry_without_asymmetry():
    ident = P.sample_identity(2, 11)
    ident[:, P.IDENTITY_NAMES.index("asymmetry")] = 0
    expr = P.sample_expression(2, 12)
    head = SyntheticHead(ident, expr)
    x = _box_points(2000, 1).expand(2, -1, -1)
    assert_close(head.sdf(x), head.sdf(x * MIRROR), atol=1e-6)
    ident[:, P.IDENTITY_NAMES.index("asymmetry")] = 1
    assert (SyntheticHead(ident, expr).sdf(x) - SyntheticHead(ident, expr).sdf(x * MIRROR)).abs().max() > 1e-3


def _surface_hits(head, size=64):
    eye = torch.tensor([[0.3, 0.1, 2.6]]).expand(head.batch, 3)
    cam = Camera.look_at(eye, torch.zeros(head.batch, 3), image_size=(size, size))
    with torch.no_grad():
        return render(head.sdf, cam, head.canonical, RenderConfig())


def test_canonical_map_lands_on_the_neutral_head():
    expr = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [0.9, 0.8, 0.6, 0.7, 0.5]])
    head = SyntheticHead(P.sample_identity(1, 4).expand(2, -1), expr)
    out = _surface_hits(head)
    # neutral expression: the canonical point is the point itself
    assert_close(out.canonical[0][out.mask[0]], out.points[0][out.mask[0]], atol=1e-6)
    # posed: valid canonical points lie on the neutral surface, points moved by the expression differ
    valid = out.canonical_valid[1]
    can = out.canonical[1][valid][None]
    dist = head.neutral().sdf(torch.cat([can, can]))[1].abs()
    # in the seam between parts that move differently (jaw and cheeks) the blend lands near, not on it
    assert dist.median() < 1e-3 and (dist < 0.01).float().mean() > 0.9 and dist.max() < 0.05
    moved = (out.canonical[1] - out.points[1]).norm(dim=-1)[valid]
    assert moved.max() > 0.01
    # the open mouth shows cavity walls without a neutral counterpart
    assert bool((out.mask[1] & ~valid).any()) and not bool((out.mask[0] & ~out.canonical_valid[0]).any())


def test_anchors_follow_the_monomphm_order():
    ident = P.sample_identity(2, 21)
    ident[:, P.IDENTITY_NAMES.index("asymmetry")] = 0
    head = SyntheticHead(ident, P.sample_expression(2, 3))
    a = anchors(head)
    assert a.shape == (2, 65, 3) and len(ANCHOR_NAMES) == 65
    assert bool((a[:, 0:60:2, 0] < 0).all()) and bool((a[:, 1:60:2, 0] > 0).all())
    assert_close(a[:, 0:60:2] * MIRROR, a[:, 1:60:2], atol=1e-4)
    assert a[:, 60:, 0].abs().max() < 1e-4
    assert head.neutral().sdf(a).abs().max() < 1e-4
    marks = landmarks(head)
    assert marks.shape == (2, 7, 3) and len(LANDMARK_NAMES) == 7
    assert head.sdf(marks).abs().max() < 1e-4
    assert bool((marks[:, [0, 1, 5], 0] < 0).all()) and bool((marks[:, [2, 3, 6], 0] > 0).all())


@pytest.mark.parametrize("name", ["nose_length", "jaw_width"])
def test_render_gradient_wrt_a_head_parameter_matches_finite_differences(name):
    col = P.IDENTITY_NAMES.index(name)
    base = P.neutral_identity(1).double()
    cam = Camera.look_at(torch.tensor([[0.6, 0.0, 2.4]], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                         image_size=(32, 32))
    with torch.no_grad():
        mask = render(SyntheticHead(base).sdf, cam, differentiable=False).mask
    keep = (torch.nn.functional.max_pool2d(1 - mask.double()[:, None], 3, 1, 1)[:, 0] == 0) & mask
    w = torch.randn(1, 32, 32, 3, dtype=torch.float64)

    def loss(value):
        ident = base.clone()
        ident[:, col] = value
        out = render(SyntheticHead(ident).sdf, cam)
        return ((out.points * w).sum(-1) * keep).sum()

    v = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(v), v)
    with torch.no_grad():
        fd = (loss(torch.tensor(1.0 + 1e-5)) - loss(torch.tensor(1.0 - 1e-5))) / 2e-5
    assert_close(g, fd, atol=1e-4, rtol=3e-3)
    assert g.abs() > 1e-4


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="identity: expected shape"):
        SyntheticHead(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="points: expected shape"):
        SyntheticHead.sample(2, 0).sdf(torch.zeros(1, 4, 3))
