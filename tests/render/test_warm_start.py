"""Warm-started tracing (``render(start_depth=...)``): the same surface as a cold start, for less work."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.render import Camera, RenderConfig, TraceConfig, render
from nphmkit.render.trace import sphere_trace, warm_start
from tests.helpers import assert_close

CONFIG = RenderConfig(bound_center=(0.0, 0.0, 0.0), bound_radius=0.7)
BACKOFF = CONFIG.warm_backoff


def _camera(size, eye):
    return Camera.look_at(torch.tensor([eye]), torch.zeros(1, 3), image_size=(size, size))


def _shape(kind: str, center: torch.Tensor, size: float):
    if kind == "sphere":
        return lambda p: (p - center).norm(dim=-1) - size
    if kind == "torus":  # axis along y: the ray from the front sees a ring
        def torus(p):
            q = p - center
            ring = torch.sqrt(q[..., 0] ** 2 + q[..., 2] ** 2) - size
            return torch.stack([ring, q[..., 1]], -1).norm(dim=-1) - 0.4 * size

        return torus

    def box(p):
        q = (p - center).abs() - torch.tensor([size, 0.8 * size, 0.6 * size])
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    return box


def _steep(cos: torch.Tensor, out) -> torch.Tensor:
    return out.mask & (cos > 0.3)


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["sphere", "torus", "box"]),
    size=st.floats(0.2, 0.35),
    shift=st.lists(st.floats(-0.05, 0.05), min_size=3, max_size=3),
    eye=st.tuples(st.floats(-0.6, 0.6), st.floats(-0.6, 0.6), st.floats(1.8, 2.6)),
    res=st.integers(17, 33),
    jitter=st.floats(0.0, 0.8),
    seed=st.integers(0, 1000),
)
def test_warm_start_finds_the_cold_surface(kind, size, shift, eye, res, jitter, seed):
    f = _shape(kind, torch.tensor(shift), size)
    cam = _camera(res, eye)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cold = render(f, cam, config=CONFIG)
        # a guess off by up to `jitter` backoffs either way; some pixels without a guess
        noise = (torch.rand(cold.depth.shape, generator=g) * 2 - 1) * jitter * BACKOFF
        guess = torch.where(cold.mask, cold.depth + noise, torch.full_like(cold.depth, float("nan")))
        guess = torch.where(torch.rand(guess.shape, generator=g) < 0.2, torch.full_like(guess, float("nan")), guess)
        warm = render(f, cam, config=CONFIG, start_depth=guess.reshape(1, -1))
    assert torch.equal(warm.mask, cold.mask)
    # the depth where the ray meets the surface steeply enough for the tracer's eps to be exact
    _, dirs = cam.rays()
    cos = -(cold.normals.reshape(1, -1, 3) * torch.einsum("bij,bnj->bni", cam.R, dirs)).sum(-1).reshape(cold.mask.shape)
    steep = _steep(cos, cold)
    assert_close(warm.depth[steep], cold.depth[steep], atol=2e-5)
    assert_close(warm.normals[steep], cold.normals[steep], atol=2e-4)
    assert_close(warm.soft_mask, cold.soft_mask, atol=1e-3)


@pytest.mark.parametrize("lipschitz", [1.0, 0.5])
def test_warm_start_saves_evaluations_on_curved_surfaces(lipschitz):
    """A sphere, as an exact distance and as a field with gradient norm 0.5 (a learned SDF's kind of slack)."""
    sphere = _shape("sphere", torch.zeros(3), 0.3)
    cam = _camera(31, (0.3, 0.2, 2.2))
    with torch.no_grad():
        cold = render(lambda p: lipschitz * sphere(p), cam, config=CONFIG)
        guess = torch.where(cold.mask, cold.depth + 0.005, torch.full_like(cold.depth, float("nan")))
        warm = render(lambda p: lipschitz * sphere(p), cam, config=CONFIG, start_depth=guess.reshape(1, -1))
    saved = 1 - warm.n_evals[cold.mask].float().mean() / cold.n_evals[cold.mask].float().mean()
    assert saved > (0.0 if lipschitz == 1.0 else 0.3), float(saved)


def test_wrong_guesses_fall_back_to_marching():
    """A guess far behind the surface (its front sample is inside) or far in front: still the cold hit."""
    f = _shape("sphere", torch.zeros(3), 0.3)
    cam = _camera(25, (0.1, 0.2, 2.2))
    with torch.no_grad():
        cold = render(f, cam, config=CONFIG)
        for offset in (+0.15, -0.15, +10 * BACKOFF):
            guess = torch.where(cold.mask, cold.depth + offset, torch.full_like(cold.depth, float("nan")))
            warm = render(f, cam, config=CONFIG, start_depth=guess.reshape(1, -1))
            assert torch.equal(warm.mask, cold.mask), offset
            assert_close(warm.depth[cold.mask], cold.depth[cold.mask], atol=2e-5)


def test_a_surface_far_in_front_of_the_guess_is_the_documented_limit():
    """Two spheres on the view axis; a guess at the back one's depth keeps the back one (docs: warm_backoff)."""
    front = _shape("sphere", torch.tensor([0.0, 0.0, 0.35]), 0.1)
    back = _shape("sphere", torch.tensor([0.0, 0.0, -0.2]), 0.25)

    def both(p):
        return torch.minimum(front(p), back(p))

    cam = _camera(9, (0.0, 0.0, 2.0))
    centre = torch.tensor([[[4.5, 4.5]]])
    with torch.no_grad():
        cold = render(both, cam, config=CONFIG, pixels=centre)
        alone = render(back, cam, config=CONFIG, pixels=centre)
        warm = render(both, cam, config=CONFIG, pixels=centre, start_depth=alone.depth)
    assert_close(cold.depth, torch.tensor([[2.0 - 0.45]]), atol=1e-5)  # the front sphere
    assert_close(warm.depth, alone.depth, atol=1e-5)  # the guess's surface, not the first one


def test_warm_start_gradients_match_cold():
    radius = torch.tensor(0.3, requires_grad=True)
    cam = _camera(21, (0.2, 0.1, 2.3))

    def f(p):
        return p.norm(dim=-1) - radius

    def grads(start):
        out = render(f, cam, config=CONFIG, start_depth=start)
        loss = (out.depth * out.mask).sum() + out.normals[..., 0].sum() + out.soft_mask.sum()
        (g,) = torch.autograd.grad(loss, radius)
        return g, out

    g_cold, cold = grads(None)
    guess = torch.where(cold.mask, cold.depth.detach() + 0.005, torch.full_like(cold.depth, float("nan")))
    g_warm, _ = grads(guess.reshape(1, -1))
    assert_close(g_warm, g_cold, rtol=1e-4, atol=1e-4)


def test_warm_start_reports_its_rays():
    """The function itself: bracketed guesses start just in front of the surface, the others at ``near``."""
    f = _shape("sphere", torch.zeros(3), 0.3)
    cam = _camera(15, (0.0, 0.0, 2.0))
    origins, dirs = cam.rays()
    near = torch.full(origins.shape[:2], 1.0)
    far = torch.full(origins.shape[:2], 3.0)
    cold = sphere_trace(f, origins, dirs, near, far, TraceConfig())
    guess = torch.where(cold.hit, cold.t + 0.004, torch.full_like(cold.t, float("nan")))
    guess[0, :3] = 2.9  # far behind: no sign change around it
    new_near, evals = warm_start(f, origins, dirs, near, far, guess, BACKOFF)
    moved = new_near > near
    assert bool(moved.any()) and not bool((moved & ~cold.hit).any()) and not bool(moved[0, :3].any())
    assert_close(new_near[moved], guess[moved] - BACKOFF)
    assert bool((new_near[moved] < cold.t[moved]).all())  # still in front of the surface
    assert int(evals[~torch.isfinite(guess)].sum()) == 0 and bool((evals[torch.isfinite(guess)] <= 2).all())


def test_thin_features_keep_the_first_surface():
    """A thin shell (a lid) 5-9 mm in front of a sphere (an eyeball): a guess at the sphere still finds the shell
    (where, along the ray, the shell lies within the backoff in front of the guess)."""
    ball = _shape("sphere", torch.zeros(3), 0.25)

    def lid(p):  # a shell of thickness 0.004 at radius 0.25 + 0.005
        return (p.norm(dim=-1) - 0.255).abs() - 0.002

    def both(p):
        return torch.minimum(ball(p), lid(p))

    cam = _camera(13, (0.0, 0.0, 2.0))
    with torch.no_grad():
        cold = render(both, cam, config=CONFIG)
        behind = render(ball, cam, config=CONFIG)
        guess = torch.where(behind.mask, behind.depth, torch.full_like(behind.depth, float("nan")))
        warm = render(both, cam, config=CONFIG, start_depth=guess.reshape(1, -1))
    # rays meeting the ball at less than 60 deg: the shell is < 0.014 / cos 60 = 0.014 ... 0.02 in front
    normal_z = -behind.normals[..., 2]
    hit = cold.mask & behind.mask & (normal_z > 0.75)
    assert int(hit.sum()) >= 20
    assert bool((cold.depth[hit] < behind.depth[hit] - 0.004).all())  # the cold trace stops at the shell
    assert_close(warm.depth[hit], cold.depth[hit], atol=2e-5)  # so does the warm one, not at the ball


def test_start_depth_shape_is_checked():
    cam = _camera(8, (0.0, 0.0, 2.0))
    with pytest.raises(ValueError, match="start_depth: expected shape"):
        render(_shape("sphere", torch.zeros(3), 0.3), cam, config=CONFIG, start_depth=torch.zeros(1, 10))
