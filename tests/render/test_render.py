"""Rendering analytic shapes: exact depth/normals, masks, efficiency; gradients match finite differences."""

from __future__ import annotations

import pytest
import torch

from nphmkit.render import Camera, RenderConfig, TraceConfig, render
from tests.helpers import assert_close

CONFIG = RenderConfig(bound_center=(0.0, 0.0, 0.0), bound_radius=0.6)


def _camera(size=48, eye=(0.0, 0.0, 2.5), batch=1):
    return Camera.look_at(torch.tensor([eye] * batch), torch.zeros(batch, 3), image_size=(size, size))


def _sphere(center, radius):
    def sdf(p):
        return (p - center).norm(dim=-1) - radius

    return sdf


def _analytic_sphere_hit(cam: Camera, center: torch.Tensor, radius: float):
    origins, dirs = (x.double() for x in cam.to(dtype=torch.float64).rays())  # float64: no cancellation
    oc = origins - center.double()
    b = (oc * dirs).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius**2)
    t = -b - disc.clamp_min(0).sqrt()
    return disc > 0, (origins + t[..., None] * dirs).to(cam.K.dtype)


@pytest.mark.parametrize("radius", [0.2, 0.45])
def test_sphere_depth_and_normals_are_exact(radius):
    center = torch.tensor([0.05, -0.03, 0.02])
    cam = _camera(eye=(0.3, 0.2, 2.5))
    with torch.no_grad():
        out = render(_sphere(center, radius), cam, config=CONFIG)
    hit, points = _analytic_sphere_hit(cam, center, radius)
    interior = hit.reshape(out.mask.shape)
    # away from the rim (grazing rays), every analytic hit is a hit and vice versa
    assert bool((out.mask == interior).float().mean() > 0.99)
    origins, dirs = cam.rays()
    cos = (torch.nn.functional.normalize(points - center, dim=-1) * dirs).sum(-1).abs().reshape(out.mask.shape)
    both = out.mask & interior & (cos > 0.2)  # grazing rays stop within eps of the surface, not on it
    expected_depth = cam.world_to_camera(points)[..., 2].reshape(out.depth.shape)
    assert_close(out.depth[both], expected_depth[both], atol=1e-5)
    normals_world = torch.nn.functional.normalize(points - center, dim=-1)
    normals_cam = torch.einsum("bij,bnj->bni", cam.R, normals_world).reshape(out.normals.shape)
    assert_close(out.normals[both], normals_cam[both], atol=1e-4)
    assert bool((out.normals[both][:, 2] < 0).all())  # towards the camera
    assert bool((out.depth[~out.mask] == 0).all()) and out.soft_mask[out.mask].min() > 0.99
    fg, _ = out.evals_per_pixel()
    assert fg <= 16


def _box(half):
    def sdf(p):
        q = p.abs() - half
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    return sdf


def _torus(major, minor):
    def sdf(p):
        q = torch.stack([torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - major, p[..., 2]], dim=-1)
        return q.norm(dim=-1) - minor

    return sdf


def test_box_and_torus_front_faces():
    cam = _camera(size=40)
    with torch.no_grad():
        box = render(_box(torch.tensor([0.2, 0.15, 0.1])), cam, config=CONFIG)
        torus = render(_torus(0.3, 0.1), cam, config=CONFIG)
    # the box's front face is the plane z = 0.1: depth 2.4 along the axis, normal (0, 0, -1)
    center = box.mask[0, 18:22, 18:22]
    assert bool(center.all())
    assert_close(box.depth[0, 18:22, 18:22], torch.full((4, 4), 2.4), atol=1e-5)
    assert_close(box.normals[0, 18:22, 18:22], torch.tensor([0.0, 0.0, -1.0]).expand(4, 4, 3), atol=1e-4)
    # the torus (axis along the view) has a hole in the middle
    assert not bool(torus.mask[0, 19:21, 19:21].any()) and bool(torus.mask.any())
    pts = torus.points[torus.mask]
    assert_close(_torus(0.3, 0.1)(pts), torch.zeros(pts.shape[0]), atol=1e-5)


def test_relaxation_and_eps_keep_results():
    cam = _camera(size=32)
    f = _sphere(torch.zeros(3), 0.3)
    with torch.no_grad():
        a = render(f, cam, config=CONFIG)
        b = render(f, cam, config=RenderConfig(bound_center=(0, 0, 0), bound_radius=0.6, trace=TraceConfig(relax=1.6)))
    assert torch.equal(a.mask, b.mask)
    assert_close(a.depth, b.depth, atol=1e-5)


def _fd(loss_fn, param: torch.Tensor, eps: float) -> torch.Tensor:
    grads = torch.zeros_like(param)
    flat = param.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        plus = loss_fn().item()
        flat[i] = old - eps
        minus = loss_fn().item()
        flat[i] = old
        grads.view(-1)[i] = (plus - minus) / (2 * eps)
    return grads


def _interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 8 neighbours are also hit (stable under small perturbations)."""
    m = mask.float()[:, None]
    return (torch.nn.functional.max_pool2d(1 - m, 3, 1, 1)[:, 0] == 0) & mask


def test_gradients_match_finite_differences_sphere_radius_and_camera():
    cam = _camera(size=24, eye=(0.2, 0.1, 2.0))
    radius = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    center = torch.tensor([0.02, 0.01, 0.0], dtype=torch.float64)
    cam64 = cam.to(dtype=torch.float64)
    with torch.no_grad():
        keep = _interior(render(_sphere(center, 0.3), cam64, config=CONFIG).mask)
    w_n = torch.randn(*keep.shape, 3, dtype=torch.float64)
    w_d = torch.randn(*keep.shape, dtype=torch.float64)

    def loss():
        out = render(_sphere(center, radius), cam64, config=CONFIG)
        return ((out.normals * w_n).sum(-1) * keep).sum() + (out.depth * w_d * keep).sum() + (out.points[keep] ** 2).sum()

    value = loss()
    (g,) = torch.autograd.grad(value, radius)
    with torch.no_grad():
        fd = _fd(loss, radius.detach(), 1e-6)
    assert_close(g, fd, atol=1e-4, rtol=1e-4)

    # the camera: translation of the extrinsics
    t = cam64.t.clone().requires_grad_(True)

    def loss_cam():
        moved = Camera(cam64.K, cam64.R, t, cam64.image_size)
        out = render(_sphere(center, 0.3), moved, config=CONFIG)
        return ((out.normals * w_n).sum(-1) * keep).sum() + (out.depth * w_d * keep).sum()

    (g_t,) = torch.autograd.grad(loss_cam(), t)
    with torch.no_grad():
        fd_t = _fd(loss_cam, t.detach(), 1e-6)
    assert_close(g_t, fd_t, atol=1e-4, rtol=1e-4)


def test_gradients_match_finite_differences_mlp_weights():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Softplus(beta=10), torch.nn.Linear(8, 1)).double()
    with torch.no_grad():
        mlp[2].weight.mul_(0.05)

    def sdf(p):
        return p.norm(dim=-1) - 0.3 + mlp(p)[..., 0]

    cam = _camera(size=20).to(dtype=torch.float64)
    with torch.no_grad():
        keep = _interior(render(sdf, cam, config=CONFIG).mask)
    w = torch.randn(*keep.shape, 3, dtype=torch.float64)

    def loss():
        out = render(sdf, cam, config=CONFIG)
        return ((out.normals * w).sum(-1) * keep).sum() + (out.points.sum(-1) * keep).sum()

    value = loss()
    grads = torch.autograd.grad(value, [mlp[0].weight, mlp[2].weight])
    with torch.no_grad():
        fd0 = _fd(loss, mlp[0].weight.data, 1e-6)
        fd2 = _fd(loss, mlp[2].weight.data, 1e-6)
    assert_close(grads[0], fd0, atol=2e-4, rtol=1e-3)
    assert_close(grads[1], fd2, atol=2e-4, rtol=1e-3)


def test_soft_mask_gradient_pulls_the_silhouette():
    radius = torch.tensor(0.25, requires_grad=True)
    cam = _camera(size=32)
    out = render(_sphere(torch.zeros(3), radius), cam, config=CONFIG)
    assert out.soft_mask.min() >= 0 and out.soft_mask.max() <= 1
    # a target silhouette larger than the sphere: growing the radius lowers the loss
    loss = ((out.soft_mask - 1.0) ** 2).mean()
    loss.backward()
    assert radius.grad < 0


def test_bad_field_output_is_named():
    with pytest.raises(ValueError, match="sdf_fn: expected output shape"):
        render(lambda p: p, _camera(size=8), config=CONFIG)


def test_pixel_subsets_match_the_full_image():
    cam = _camera(size=30, eye=(0.2, 0.3, 2.2))
    f = _sphere(torch.tensor([0.0, 0.02, 0.0]), 0.3)
    with torch.no_grad():
        full = render(f, cam, config=CONFIG)
        ys, xs = torch.meshgrid(torch.arange(30), torch.arange(30), indexing="ij")
        pick = torch.randperm(900)[:101]
        pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)[pick].float() + 0.5
        sub = render(f, cam, config=CONFIG, pixels=pix)
    assert sub.mask.shape == (1, 101) and sub.normals.shape == (1, 101, 3)
    assert torch.equal(sub.mask[0], full.mask.reshape(1, -1)[0, pick])
    assert_close(sub.depth[0], full.depth.reshape(1, -1)[0, pick], atol=1e-5)
