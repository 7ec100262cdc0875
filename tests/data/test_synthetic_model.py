"""The synthetic family as a head model: codes <-> parameters, the mean, the neutral expression, landmarks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.data.synthetic import SyntheticHead, SyntheticHeadModel
from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.landmarks import landmarks as head_landmarks
from tests.helpers import assert_close

MODEL = SyntheticHeadModel()


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_codes_round_trip_and_span_about_unit_range(batch, seed):
    ident, expr = P.sample_identity(batch, seed), P.sample_expression(batch, seed)
    z_id, z_ex = MODEL.to_codes(ident, expr)
    assert z_id.shape == (batch, 16) and z_ex.shape == (batch, 5)
    assert z_id.abs().max() <= 1 + 1e-5 and z_ex.abs().max() <= 2 + 1e-5
    back_id, back_ex = MODEL.to_params(z_id, z_ex)
    assert_close(back_id, ident, atol=1e-5)
    assert_close(back_ex, expr, atol=1e-5)


def test_initial_codes_are_the_family_mean():
    z_id, z_ex = MODEL.initial_codes(2, dtype=torch.float64)
    assert z_id.dtype == torch.float64 and z_id.shape == (2, 16) and z_ex.shape == (2, 5)
    ident, expr = MODEL.to_params(z_id, z_ex)
    many_id, many_ex = P.sample_identity(20_000, 3), P.sample_expression(20_000, 3)
    spread_id = torch.tensor([p.high - p.low for p in P.IDENTITY])
    spread_ex = torch.tensor([p.high - p.low for p in P.EXPRESSION])
    # the sample means agree with the analytic ones within a few standard errors
    assert ((ident[0].float() - many_id.mean(0)).abs() / spread_id).max() < 0.01
    assert ((expr[0].float() - many_ex.mean(0)).abs() / spread_ex).max() < 0.01


def test_none_expression_is_neutral_not_mean():
    z_id = torch.randn(3, 16) * 0.3
    _, expr = MODEL.to_params(z_id, None)
    assert_close(expr, P.neutral_expression(3))
    field = MODEL.field(z_id)
    reference = SyntheticHead(MODEL.to_params(z_id)[0], P.neutral_expression(3))
    points = torch.rand(3, 50, 3) - 0.5
    assert_close(field(points), reference(points))


def test_regularizers_are_named_and_zero_at_the_mean():
    z_id, z_ex = MODEL.initial_codes(2)
    regs = MODEL.code_regularizers(z_id, z_ex)
    assert set(regs) == {"id_global", "ex", "symmetry"}
    assert all(float(v) == 0 for v in regs.values())
    regs = MODEL.code_regularizers(z_id + 1, z_ex + 1)
    assert float(regs["id_global"]) == 16 and float(regs["ex"]) == 5 and float(regs["symmetry"]) == 1


def test_landmarks_sit_on_the_surface_and_follow_the_codes():
    z_id = torch.zeros(1, 16, requires_grad=True)
    z_ex = torch.zeros(1, 5)
    marks = MODEL.landmarks(z_id, z_ex)
    assert marks.shape == (1, 7, 3)
    field = MODEL.field(z_id.detach(), z_ex)
    assert field(marks.detach()).abs().max() < 2e-4
    assert_close(marks.detach(), head_landmarks(field), atol=1e-5)
    # right eye outer has x < 0 (the subject's right), the mirror of left eye outer
    assert marks[0, 0, 0] < 0 < marks[0, 3, 0]
    # differentiable: the eye width grows with the eye-spacing code, and autograd agrees with differences
    spread = (marks[:, 3, 0] - marks[:, 0, 0]).sum()
    (grad,) = torch.autograd.grad(spread, z_id)
    k = P.IDENTITY_NAMES.index("eye_spacing")
    step = torch.zeros(1, 16)
    step[0, k] = 0.05
    with torch.no_grad():
        plus, minus = MODEL.landmarks(step, z_ex), MODEL.landmarks(-step, z_ex)
    numeric = ((plus[:, 3, 0] - plus[:, 0, 0]) - (minus[:, 3, 0] - minus[:, 0, 0])).sum() / 0.1
    assert numeric > 0 and abs(float(grad[0, k]) - float(numeric)) < 0.1 * float(numeric)


def test_fields_run_on_points_by_default_and_on_planes_when_asked(monkeypatch):
    """A fit renders ~1,500 pixels a step, where the (B, N, 3) layout is the faster one, so the head model's
    fields use it unless asked otherwise; derived heads (neutral, another expression) keep the layout, and
    both layouts give the same values and canonical points."""
    from nphmkit.data.synthetic.head import BOUNDS
    from nphmkit.data.synthetic.primitives import Vec3

    z_id, z_ex = MODEL.to_codes(P.sample_identity(2, 17), P.sample_expression(2, 17))
    lo, hi = torch.tensor(BOUNDS[0]), torch.tensor(BOUNDS[1])
    pts = lo + (hi - lo) * torch.rand(2, 37, 3, generator=torch.Generator().manual_seed(0))
    as_planes = []
    of = Vec3.of.__func__
    monkeypatch.setattr(Vec3, "of", classmethod(lambda cls, v: as_planes.append(v.dim() == 3) or of(cls, v)))

    def evaluate(model):
        head = model.field(z_id, z_ex)
        heads = (head, head.neutral(), head.with_expression(P.sample_expression(2, 3)))
        del as_planes[:]
        out = [(h.sdf(pts), h.canonical(pts)) for h in heads]
        return out, [h.coordinate_planes for h in heads], any(as_planes)

    points, flags, used = evaluate(MODEL)
    assert flags == [False] * 3 and not used
    planes, flags, used = evaluate(SyntheticHeadModel(coordinate_planes=True))
    assert flags == [True] * 3 and used
    for (sdf_a, can_a), (sdf_b, can_b) in zip(points, planes):
        assert_close(sdf_a, sdf_b, atol=1e-6)
        assert_close(can_a[0], can_b[0], atol=2e-6)
        assert torch.equal(can_a[1], can_b[1])
    assert SyntheticHead(P.sample_identity(1, 0)).coordinate_planes  # the class default (data rendering)
    with pytest.raises(TypeError, match="coordinate_planes: expected a bool, got str"):
        SyntheticHeadModel(coordinate_planes="yes")
