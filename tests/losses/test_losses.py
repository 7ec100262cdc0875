"""Every loss is zero at the truth, positive away from it, and its gradient points back to the truth."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nphmkit.losses import (
    CodeLayout,
    code_norms,
    eikonal_loss,
    expression_norm,
    free_space_loss,
    normal_loss,
    normal_map_loss,
    point_map_loss,
    robust,
    sample_sdf_space_points,
    sdf_space_loss,
    silhouette_loss,
    surface_sdf_loss,
    symmetry_loss,
    temporal_smoothness,
)

shapes = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 11), st.integers(0, 999))


def _sphere(radius):
    return lambda p: p.norm(dim=-1) - radius


def _descends(loss_fn, param: torch.Tensor) -> bool:
    """One small gradient step lowers the loss."""
    p = param.clone().requires_grad_(True)
    value = loss_fn(p)
    (g,) = torch.autograd.grad(value, p)
    with torch.no_grad():
        return bool(loss_fn(p - 1e-3 * g / g.norm().clamp_min(1e-12)) < value)


@given(shapes, st.sampled_from(["l1", "huber", "cauchy", "l2"]))
def test_image_losses(case, kind):
    b, h, w, seed = case
    g = torch.Generator().manual_seed(seed)
    n = torch.nn.functional.normalize(torch.randn(b, h, w, 3, generator=g), dim=-1)
    p = torch.randn(b, h, w, 3, generator=g)
    mask = torch.rand(b, h, w, generator=g) > 0.3
    mask[0, 0, 0] = True
    assert normal_map_loss(n, n, mask, kind) == 0 and point_map_loss(p, p, mask, kind) == 0
    other = torch.nn.functional.normalize(n + 0.3 * torch.randn(b, h, w, 3, generator=g), dim=-1)
    assert normal_map_loss(other, n, mask, kind) > 0
    assert _descends(lambda x: point_map_loss(x, p, mask, kind), p + 0.05)
    # outside the mask nothing counts
    assert point_map_loss(torch.where(mask[..., None], p, p + 5), p, mask, kind) == 0


def test_robust_penalties_grow_slower_than_squares():
    r = torch.tensor([0.0, 0.05, 1.0, 10.0])
    assert torch.equal(robust(r, "l1"), r)
    huber, cauchy = robust(r, "huber", 0.1), robust(r, "cauchy", 0.1)
    assert huber[0] == 0 and cauchy[0] == 0 and bool((huber[1:] > 0).all())
    assert huber[3] < robust(r, "l2")[3] and cauchy[3] < huber[3]
    with pytest.raises(ValueError, match="kind"):
        robust(r, "tukey")


def test_silhouette_loss_prefers_the_target():
    target = torch.rand(2, 8, 8) > 0.5
    good, bad = target.float() * 0.98 + 0.01, 1 - (target.float() * 0.98 + 0.01)
    assert silhouette_loss(good, target) < 0.05 < silhouette_loss(bad, target)
    assert _descends(lambda x: silhouette_loss(torch.sigmoid(x), target), torch.zeros(2, 8, 8))


@given(st.integers(1, 3), st.integers(5, 200), st.floats(0.2, 0.4), st.integers(0, 99))
def test_surface_losses_vanish_on_a_true_sphere(b, n, radius, seed):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(b, n, 3, generator=g), dim=-1)
    pts = (radius * dirs).requires_grad_(True)
    f = _sphere(radius)(pts)
    (grad,) = torch.autograd.grad(f.sum(), pts)
    assert surface_sdf_loss(f) < 1e-6 and eikonal_loss(grad) < 1e-6 and normal_loss(grad, dirs) < 1e-5
    assert normal_loss(grad, -dirs) > 1.9
    assert surface_sdf_loss(_sphere(radius + 0.05)(pts.detach())) > 0.04
    assert eikonal_loss(2 * grad) > 0.9
    assert free_space_loss(torch.full((b, n), 1.0)) < free_space_loss(torch.full((b, n), 0.01))


def test_sdf_space_loss_zero_at_truth_and_pulls_the_radius():
    g = torch.Generator().manual_seed(0)
    surface = 0.3 * torch.nn.functional.normalize(torch.randn(2, 500, 3, generator=g), dim=-1)
    pts = sample_sdf_space_points(surface, 400, 100, generator=g)
    assert pts.shape == (2, 500, 3)
    gt = _sphere(0.3)
    assert sdf_space_loss(gt, gt, pts) == 0
    radius = torch.tensor(0.33, requires_grad=True)
    loss = sdf_space_loss(lambda p: p.norm(dim=-1) - radius, gt, pts)
    loss.backward()
    assert loss > 0 and radius.grad > 0  # descending the gradient shrinks the radius back towards 0.3
    # precomputed ground truth values give the same loss
    assert torch.allclose(sdf_space_loss(_sphere(0.33), gt, pts, gt_values=gt(pts)), loss.detach())


def test_regularizers():
    layout = CodeLayout(glob=4, loc=3, n_local=5, n_pairs=2)
    z = torch.randn(2, layout.id_dim)
    glob, local = code_norms(z, layout)
    assert glob > 0 and local > 0 and code_norms(torch.zeros(2, layout.id_dim), layout)[0] == 0
    local_codes = z[:, 4:].reshape(2, 5, 3).clone()
    local_codes[:, 1] = local_codes[:, 0]
    local_codes[:, 3] = local_codes[:, 2]
    symmetric = torch.cat([z[:, :4], local_codes.reshape(2, -1)], dim=1)
    assert symmetry_loss(symmetric, layout) == 0 and symmetry_loss(z, layout) > 0
    assert expression_norm(torch.zeros(3, 7)) == 0
    ramp = torch.arange(6.0)[:, None] * torch.ones(6, 4)
    assert temporal_smoothness(torch.ones(6, 4)) == 0 and temporal_smoothness(ramp, order=2) == 0
    assert temporal_smoothness(ramp) > 0 and _descends(lambda x: temporal_smoothness(x), torch.randn(5, 3))
    with pytest.raises(ValueError, match="order"):
        temporal_smoothness(ramp, order=3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: normal_map_loss(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 5, 3), torch.ones(1, 4, 4, dtype=torch.bool)),
         "target: expected shape"),
        (lambda: normal_map_loss(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 3, dtype=torch.bool)),
         "mask: expected shape"),
        (lambda: point_map_loss(torch.zeros(1, 4, 4, 2), torch.zeros(1, 4, 4, 2), torch.ones(1, 4, 4, dtype=torch.bool)),
         "points: expected shape"),
        (lambda: silhouette_loss(torch.zeros(1, 4, 4), torch.ones(1, 4, 5, dtype=torch.bool)), "target_mask: expected shape"),
        (lambda: surface_sdf_loss(torch.zeros(2, 3, 1)), "values: expected shape"),
        (lambda: eikonal_loss(torch.zeros(2, 3)), "gradients: expected shape"),
        (lambda: normal_loss(torch.zeros(2, 3, 3), torch.zeros(2, 4, 3)), "normals: expected shape"),
        (lambda: code_norms(torch.zeros(1, 7), CodeLayout(4, 2, 2, 0)), "z_id: expected shape"),
        (lambda: temporal_smoothness(torch.zeros(())), "sequence"),
        (lambda: robust(torch.zeros(3), "cubic"), "kind"),
        (lambda: sdf_space_loss(_sphere(0.3), _sphere(0.4), torch.zeros(1, 5, 2)), "points: expected shape"),
    ],
)
def test_losses_name_the_argument_they_refuse(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_masks_are_bool_or_float_weights():
    normals = torch.nn.functional.normalize(torch.randn(1, 4, 4, 3), dim=-1)
    target = torch.nn.functional.normalize(torch.randn(1, 4, 4, 3), dim=-1)
    as_bool = normal_map_loss(normals, target, torch.ones(1, 4, 4, dtype=torch.bool))
    as_float = normal_map_loss(normals, target, torch.ones(1, 4, 4))
    assert torch.allclose(as_bool, as_float)
    with pytest.raises(TypeError, match="mask: expected a bool mask or float weights"):
        normal_map_loss(normals, target, torch.ones(1, 4, 4, dtype=torch.int64))
