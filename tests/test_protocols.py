"""The head-model and field contracts (nphmkit.protocols) and the wrappers of nphmkit.fields."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nphmkit
from nphmkit.data.synthetic import SyntheticHeadModel
from nphmkit.fields import canonical_of, posed_field, sdf_and_gradient, unbatched
from nphmkit.fitting import PointFitConfig, fit_image, fit_points, fit_video
from nphmkit.mesh import extract_mesh
from nphmkit.protocols import CanonicalField, GradientField, HeadModel, check_head_model
from nphmkit.transforms import axis_angle_to_matrix
from tests.helpers import assert_close
from tests.nphm.cases import make_inputs, make_model


class _NoLandmarks:
    """A model missing ``landmarks`` and ``code_regularizers``."""

    id_dim, ex_dim = 2, 1

    def field(self, z_id, z_ex=None):
        return lambda p: p.norm(dim=-1) - 0.5

    def initial_codes(self, batch, device=None, dtype=None):
        return torch.zeros(batch, 2), torch.zeros(batch, 1)


def _sphere(p):
    return p.norm(dim=-1) - 0.4


def test_top_level_exports():
    assert nphmkit.HeadModel is HeadModel and nphmkit.Field is nphmkit.protocols.Field


def test_models_satisfy_the_contract():
    assert isinstance(make_model(), HeadModel)
    assert isinstance(SyntheticHeadModel(), HeadModel)
    assert not isinstance(_NoLandmarks(), HeadModel)


def test_bad_model_gets_a_type_error_naming_missing_members():
    with pytest.raises(TypeError, match="landmarks") as err:
        check_head_model(_NoLandmarks())
    assert "code_regularizers" in str(err.value) and "_NoLandmarks" in str(err.value)


@pytest.mark.parametrize("entry", ["points", "image", "video"])
def test_fit_entries_refuse_a_bad_model_before_any_work(entry):
    bad = _NoLandmarks()
    maps = torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3), torch.ones(1, 8, 8, dtype=torch.bool)
    with pytest.raises(TypeError, match="missing code_regularizers, landmarks"):
        if entry == "points":
            fit_points(bad, torch.zeros(1, 10, 3), config=PointFitConfig(steps=1))
        elif entry == "image":
            fit_image(bad, *maps)
        else:
            fit_video(bad, *maps)


def test_code_size_must_be_an_int():
    model = SyntheticHeadModel()
    model.id_dim = 16.0
    with pytest.raises(TypeError, match=r"model\.id_dim: expected a non-negative int"):
        check_head_model(model)


def test_wrong_code_shape_names_the_argument():
    model = SyntheticHeadModel()
    with pytest.raises(ValueError, match="z_id"):
        model.field(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="z_ex"):
        model.field(torch.zeros(2, 16), torch.zeros(1, 5))


def _pose(rotvec, t, s):
    R = axis_angle_to_matrix(torch.tensor([rotvec], dtype=torch.float64))
    return R, torch.tensor([t], dtype=torch.float64), torch.tensor([s], dtype=torch.float64)


_vec = st.tuples(*[st.floats(-1.0, 1.0)] * 3)


@settings(max_examples=15, deadline=None)
@given(rotvec=_vec, t=_vec, s=st.floats(0.5, 2.0), n=st.integers(1, 37))
def test_posed_gradient_capability_matches_autograd(rotvec, t, s, n):
    model = make_model(dtype=torch.float64)
    _, z_id, z_ex = make_inputs(model, 1, 1, dtype=torch.float64)
    field = model.field(z_id, z_ex)
    R, tt, ss = _pose(rotvec, t, s)
    posed = posed_field(field, R, tt, ss)
    assert isinstance(posed, GradientField) and isinstance(posed, CanonicalField)
    points = tt[:, None] + ss * (torch.rand(1, n, 3, dtype=torch.float64) - 0.5) @ R.transpose(1, 2)
    value, grad = posed.sdf_and_gradient(points)
    assert value.shape == (1, n) and grad.shape == (1, n, 3) and not grad.requires_grad

    x = points.clone().requires_grad_(True)
    ref = posed(x)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    assert_close(value, ref, atol=1e-10)
    assert_close(grad, ref_grad, atol=1e-8)
    # canonical of the posed field = canonical of the head-space points
    head = (points - tt[:, None]) @ R / ss
    assert_close(canonical_of(posed, points)[0], canonical_of(field, head)[0], atol=1e-10)


@settings(max_examples=10, deadline=None)
@given(rotvec=_vec, n=st.integers(1, 20))
def test_wrappers_keep_exactly_what_they_wrap(rotvec, n):
    R, t, s = _pose(rotvec, (0.0, 0.1, 0.0), 1.0)
    synthetic = SyntheticHeadModel().field(*SyntheticHeadModel().initial_codes(1, dtype=torch.float64))
    for base, grad_cap, canon_cap in [(_sphere, False, False), (synthetic, False, True)]:
        for wrapped in (posed_field(base, R, t, s), unbatched(base)):
            assert isinstance(wrapped, GradientField) == grad_cap
            assert isinstance(wrapped, CanonicalField) == canon_cap
    # the helper falls back to autograd for plain fields, without a graph by default
    points = torch.randn(1, n, 3, dtype=torch.float64)
    value, grad = sdf_and_gradient(posed_field(_sphere, R, t, s), points)
    assert not value.requires_grad and not grad.requires_grad
    assert_close(grad.norm(dim=-1), torch.ones(1, n, dtype=torch.float64), atol=1e-10)


def test_canonical_of_refuses_a_plain_field():
    with pytest.raises(TypeError, match="canonical field"):
        canonical_of(_sphere, torch.zeros(1, 3, 3))


def test_sdf_and_gradient_graph_only_when_asked():
    model = make_model(dtype=torch.float64)
    points, z_id, z_ex = make_inputs(model, 2, 13, dtype=torch.float64)
    z_id.requires_grad_(True)
    _, grad = model.sdf_and_gradient(points, z_id, z_ex)
    assert not grad.requires_grad  # freshly made model: weights require grad, still no graph by default
    _, grad = model.sdf_and_gradient(points, z_id, z_ex, create_graph=True)
    assert grad.requires_grad
    (g,) = torch.autograd.grad(grad.square().sum(), z_id)  # double backward reaches the codes
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # the field's capability agrees and follows the same rule
    f = model.field(z_id, z_ex)
    value, grad2 = f.sdf_and_gradient(points)
    assert value.shape == (2, 13) and not grad2.requires_grad
    assert_close(grad2, grad.detach(), atol=1e-10)


def test_nphm_landmarks_need_a_mapping():
    model = make_model()
    z_id, z_ex = model.initial_codes(1)
    with pytest.raises(NotImplementedError, match="landmark_anchors"):
        model.landmarks(z_id, z_ex)
    with pytest.raises(ValueError, match="landmark_anchors: expected 7 anchor indices"):
        model.landmark_anchors = [0, 1, 2]
    with pytest.raises(ValueError, match="landmark_anchors"):
        model.landmark_anchors = [0, 1, 2, 3, 4, 5, 10_000]
    model.landmark_anchors = [0, 2, 3, 1, 4, 5, 6]
    assert model.landmark_anchors == (0, 2, 3, 1, 4, 5, 6)
    model.landmark_anchors = None
    assert model.landmark_anchors is None


def test_extract_mesh_takes_batched_and_unbatched_fields():
    head = SyntheticHeadModel()
    field = head.field(*head.initial_codes(1))
    bounds = ((-0.6, -0.7, -0.6), (0.6, 0.7, 0.7))
    batched = extract_mesh(field, bounds=bounds, resolution=24, progress=False)
    plain = extract_mesh(unbatched(field), bounds=bounds, resolution=24, progress=False)
    assert batched.n_vertices > 100
    assert_close(batched.vertices, plain.vertices, atol=1e-6)
    assert torch.equal(batched.faces, plain.faces)
