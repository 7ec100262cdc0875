"""Differentiable rendering of implicit surfaces: mask, depth, points, normals, canonical map.

The surface point of a ray is found by sphere tracing without autograd, then re-expressed with
a differentiable SDF evaluation (implicit differentiation, as in IDR):
``x = x0 - d * f(x0) / (grad f(x0) . d)``, a Newton step along the ray (its value is ``x0`` up to
the tracing tolerance) whose gradient reaches
everything ``f`` depends on (codes, weights, head pose) and the camera, without
backpropagating through the march. Normals are the normalized SDF gradient at ``x``, taken by a
second evaluation there so that they also follow where the ray lands (a loss on them needs
double backward through the SDF). Without a graph, one evaluation serves both. The renderer takes the field as a callable,
so it never imports a head model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from nphmkit._checks import check_tensor
from nphmkit.protocols import Field, GradientField
from nphmkit.render.camera import Camera
from nphmkit.render.trace import TraceConfig, TraceResult, sphere_trace, warm_start


@dataclass(frozen=True)
class RenderConfig:
    """Settings of :func:`render` (distances in world units)."""

    bound_center: tuple[float, float, float] = (0.0, 0.05, -0.1)
    """Centre of the bounding sphere that holds the surface (default: a head in NPHM space)."""
    bound_radius: float = 0.8
    trace: TraceConfig = field(default_factory=TraceConfig)
    soft_mask_tau: float = 0.004
    """Temperature of the soft silhouette ``sigmoid(-sdf / tau)`` (world units)."""
    soft_mask_depth: float = 0.02
    """How far behind a hit the soft silhouette samples the inside of the surface."""
    chunk: int = 1 << 17
    """Rays per tracing chunk (per batch element)."""
    min_step_px: float = 0.0
    """Smallest sphere-tracing step in pixels at the distance travelled (0, the default: none; see
    TraceConfig.min_step; it trades exactness at thin features for fewer steps)."""
    warm_backoff: float = 0.02
    """With ``render(start_depth=...)``: how far (world units along the ray) in front of and behind its
    expected surface a ray is first tested. A surface that moved by less since the estimate is marched
    to from just in front of it (others from the bounding sphere); a surface further in front of a
    sign change at the guess is not seen."""


@dataclass(frozen=True)
class RenderOutput:
    """Maps of a render (docs/contracts.md). Shapes per batch ``B`` and image ``(H, W)``.

    Attributes:
        mask: ``(B, H, W)`` bool, the ray hit the surface.
        depth: ``(B, H, W)`` z in the camera frame (0 where not hit).
        points: ``(B, H, W, 3)`` surface points in world coordinates (0 where not hit).
        normals: ``(B, H, W, 3)`` unit normals in the camera frame, towards the camera (0 where not hit).
        canonical: ``(B, H, W, 3)`` canonical coordinates, or None without a canonical field.
        canonical_valid: ``(B, H, W)`` bool where the canonical field says valid (and hit), or None.
        soft_mask: ``(B, H, W)`` float in [0, 1], a differentiable silhouette.
        n_evals: ``(B, H, W)`` int32, SDF evaluations spent on each pixel (tracing and refinement).
    """

    mask: torch.Tensor
    depth: torch.Tensor
    points: torch.Tensor
    normals: torch.Tensor
    canonical: torch.Tensor | None
    canonical_valid: torch.Tensor | None
    soft_mask: torch.Tensor
    n_evals: torch.Tensor

    def evals_per_pixel(self) -> tuple[float, float]:
        """Mean SDF evaluations per pixel: (foreground, all pixels)."""
        fg = self.n_evals[self.mask].float().mean().item() if bool(self.mask.any()) else 0.0
        return fg, self.n_evals.float().mean().item()


def _sphere_range(origins, dirs, center, radius):
    oc = origins - center
    b = (oc * dirs).sum(-1)
    c = (oc * oc).sum(-1) - radius * radius
    disc = b * b - c
    root = disc.clamp_min(0).sqrt()
    near = (-b - root).clamp_min(0)
    far = -b + root
    miss = disc <= 0
    return torch.where(miss, far.new_ones(()), near), torch.where(miss, far.new_zeros(()), far)


def _trace_chunk(sdf_fn, origins, dirs, near, far, t_guess, backoff, cfg) -> TraceResult:
    """Sphere tracing of one chunk of rays, first resolving those with a distance guess (:func:`warm_start`)."""
    if t_guess is None:
        return sphere_trace(sdf_fn, origins, dirs, near, far, cfg)
    near, evals_w = warm_start(sdf_fn, origins, dirs, near, far, t_guess, backoff)
    res = sphere_trace(sdf_fn, origins, dirs, near, far, cfg)
    return TraceResult(t=res.t, hit=res.hit, n_evals=res.n_evals + evals_w, closest_t=res.closest_t,
                       closest_sdf=res.closest_sdf)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1])) if x.dim() == 3 else x.gather(1, idx)


def _scatter(values: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """Place per-hit ``values (B, M, ...)`` at ray indices ``idx (B, M)``; padded entries are dropped."""
    b = values.shape[0]
    slot = torch.where(valid, idx, torch.full_like(idx, n))  # padding goes to a spare column
    if values.dim() == 2:
        out = values.new_zeros(b, n + 1).scatter(1, slot, values)
    else:
        out = values.new_zeros(b, n + 1, values.shape[-1]).scatter(1, slot[..., None].expand_as(values), values)
    return out[:, :n]


def render(
    sdf_fn: Field,
    camera: Camera,
    canonical_fn: Callable | None = None,
    config: RenderConfig = RenderConfig(),
    differentiable: bool | None = None,
    pixels: torch.Tensor | None = None,
    start_depth: torch.Tensor | None = None,
) -> RenderOutput:
    """Render the zero level set of ``sdf_fn`` from ``camera``.

    Args:
        sdf_fn: batched field ``points (B, N, 3) -> (B, N)`` in world coordinates (B = camera batch,
            :class:`nphmkit.protocols.Field`). A :class:`~nphmkit.protocols.GradientField` gives
            the normals itself when no graph is needed (e.g. the NPHM field's explicit backward).
        camera: the cameras; image size from ``camera.image_size``.
        canonical_fn: optional ``points (B, N, 3) -> (B, N, 3)`` or ``-> ((B, N, 3), valid (B, N))``.
        config: bounding sphere, tracing and silhouette settings.
        differentiable: keep an autograd graph from the outputs to the field and camera
            (default: when grad mode is on). Normals then carry a double-backward graph.
        pixels: optional continuous pixel coordinates ``(B, M, 2)`` or ``(M, 2)`` (x, y; centres
            at +0.5) to render instead of the whole image; the outputs are then ``(B, M, ...)``
            (what an optimizer uses to render a random subset of pixels per step).
        start_depth: optional ``(B, N)`` expected camera-frame depth of each ray's surface (``N`` rays:
            the pixels, or ``H * W``), NaN where unknown: e.g. the depth of the same pixel in the
            previous step of a fit. Such a ray is first tested ``config.warm_backoff`` before and behind
            that depth: with a sign change it marches from the front sample
            (:func:`~nphmkit.render.trace.warm_start`), else from the bounding sphere like the others.
            The hit is the same as without a guess unless a surface lies more than the backoff in
            front of a bracketed guess.

    Returns:
        A :class:`RenderOutput`; maps are channels-last.
    """
    if differentiable is None:
        differentiable = torch.is_grad_enabled()
    b = camera.batch
    h, w = camera.image_size
    if pixels is not None and pixels.dim() == 2:
        pixels = pixels.expand(b, -1, -1)
    n = h * w if pixels is None else pixels.shape[1]
    with torch.no_grad():
        origins, dirs = camera.rays(pixels)
        center = origins.new_tensor(config.bound_center)
        near, far = _sphere_range(origins, dirs, center, config.bound_radius)
        t_guess = None
        if start_depth is not None:  # camera-frame depth -> distance along each ray
            check_tensor("start_depth", start_depth, (b, n))
            dz = torch.einsum("bij,bnj->bni", camera.R, dirs)[..., 2]
            t_guess = start_depth.to(near.dtype) / dz.clamp_min(1e-6)
        trace_cfg = config.trace
        if config.min_step_px > 0:  # a quarter pixel at the distance travelled
            focal = float(camera.K[:, 0, 0].min())
            trace_cfg = replace(trace_cfg, min_step=max(trace_cfg.min_step, config.min_step_px / focal))
        ts, hits, evals, closest_t, closest_s = [], [], [], [], []
        for start in range(0, n, config.chunk):
            sl = slice(start, start + config.chunk)
            res = _trace_chunk(sdf_fn, origins[:, sl], dirs[:, sl], near[:, sl], far[:, sl],
                               None if t_guess is None else t_guess[:, sl], config.warm_backoff, trace_cfg)
            ts.append(res.t)
            hits.append(res.hit)
            evals.append(res.n_evals)
            closest_t.append(res.closest_t)
            closest_s.append(res.closest_sdf)
        t0, hit, n_evals = torch.cat(ts, 1), torch.cat(hits, 1), torch.cat(evals, 1)
        c_t, c_s = torch.cat(closest_t, 1), torch.cat(closest_s, 1)

    # differentiable re-expression of the hit points (only hit rays are evaluated)
    with torch.set_grad_enabled(differentiable):
        origins_g, dirs_g = camera.rays(pixels) if differentiable else (origins, dirs)
    counts = hit.sum(1)
    m = max(int(counts.max()), 1)
    idx = torch.argsort((~hit).to(torch.int8), dim=1, stable=True)[:, :m]
    valid = torch.arange(m, device=idx.device)[None, :] < counts[:, None]
    o, d = _gather(origins_g, idx), _gather(dirs_g, idx)
    t = torch.where(valid, _gather(t0, idx), torch.zeros_like(t0[:, :1]))  # padding: finite dummy points
    with torch.set_grad_enabled(differentiable):
        x0 = o + t[..., None] * d
        if differentiable:
            with torch.enable_grad():
                xs = x0 if x0.requires_grad else x0.detach().requires_grad_(True)
                f = sdf_fn(xs)
                (grad0,) = torch.autograd.grad(f.sum(), xs, retain_graph=True)
                denom = (grad0 * d.detach()).sum(-1)
                denom = torch.where(denom.abs() < 1e-6, torch.full_like(denom, -1e-6), denom)
                x = x0 - d * (f / denom)[..., None]
                # normals at the differentiable point, so they also follow where the ray lands
                if not x.requires_grad:
                    x = x.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(sdf_fn(x).sum(), x, create_graph=True)
        else:
            if isinstance(sdf_fn, GradientField):
                f, grad = sdf_fn.sdf_and_gradient(x0, create_graph=False)
            else:
                with torch.enable_grad():
                    xs = x0.detach().requires_grad_(True)
                    f = sdf_fn(xs)
                    (grad,) = torch.autograd.grad(f.sum(), xs)
                f = f.detach()
            denom = (grad * d).sum(-1)
            denom = torch.where(denom.abs() < 1e-6, torch.full_like(denom, -1e-6), denom)
            x = x0 - d * (f / denom)[..., None]  # the same Newton step along the ray, without a graph
        normals_world = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        normals_cam = torch.einsum("bij,bnj->bni", camera.R, normals_world)
        depth = (torch.einsum("bij,bnj->bni", camera.R, x) + camera.t[:, None, :])[..., 2]
        mask_valid = valid.to(x.dtype)
        points_map = _scatter(x * mask_valid[..., None], idx, valid, n)
        normals_map = _scatter(normals_cam * mask_valid[..., None], idx, valid, n)
        depth_map = _scatter(depth * mask_valid, idx, valid, n)
        canonical_map = canonical_valid = None
        if canonical_fn is not None:
            out = canonical_fn(x)
            can, ok = out if isinstance(out, tuple) else (out, None)
            canonical_map = _scatter(can * mask_valid[..., None], idx, valid, n)
            if ok is not None:
                canonical_valid = _scatter((ok & valid).to(x.dtype), idx, valid, n) > 0.5
            else:
                canonical_valid = hit.clone()
        soft = _soft_mask(sdf_fn, origins_g, dirs_g, t0, hit, c_t, c_s, idx, valid, n, config, differentiable)

    def img(x: torch.Tensor) -> torch.Tensor:
        return x if pixels is not None else x.reshape(b, h, w, *x.shape[2:])

    return RenderOutput(
        mask=img(hit),
        depth=img(depth_map),
        points=img(points_map),
        normals=img(normals_map),
        canonical=None if canonical_map is None else img(canonical_map),
        canonical_valid=None if canonical_valid is None else img(canonical_valid),
        soft_mask=img(soft),
        n_evals=img(n_evals),
    )


def _soft_mask(sdf_fn, origins, dirs, t0, hit, c_t, c_s, idx, valid, n, config, differentiable) -> torch.Tensor:
    """``sigmoid(-sdf / tau)`` at the closest approach of misses and just behind the surface of hits."""
    tau = config.soft_mask_tau
    if not differentiable:
        behind = torch.sigmoid(torch.full_like(t0, config.soft_mask_depth / tau))
        miss_val = torch.sigmoid(-torch.nan_to_num(c_s, nan=1.0, posinf=1.0) / tau)
        return torch.where(hit, behind, miss_val)
    # differentiable: one SDF evaluation per ray near the silhouette band (and behind every hit)
    probe_t = torch.where(hit, t0 + config.soft_mask_depth, c_t)
    near_band = hit | (torch.nan_to_num(c_s, posinf=1e9) < 10 * tau)
    counts = near_band.sum(1)
    m = max(int(counts.max()), 1)
    pidx = torch.argsort((~near_band).to(torch.int8), dim=1, stable=True)[:, :m]
    pvalid = torch.arange(m, device=pidx.device)[None, :] < counts[:, None]
    probe = torch.where(pvalid, _gather(probe_t, pidx), torch.zeros_like(probe_t[:, :1]))
    pts = _gather(origins, pidx) + probe[..., None] * _gather(dirs, pidx)
    s = sdf_fn(pts)
    soft_band = _scatter(torch.sigmoid(-s / tau) * pvalid.to(s.dtype), pidx, pvalid, n)
    far_val = torch.sigmoid(-torch.nan_to_num(c_s, nan=1.0, posinf=1.0) / tau).to(soft_band.dtype)
    return torch.where(near_band, soft_band, far_val)
