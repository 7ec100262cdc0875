"""Sphere tracing of a batched SDF along rays (no autograd): where each ray first meets the surface.

Marching steps by the SDF (plain sphere tracing by default). With ``relax > 1`` steps are
over-relaxed (``relax * sdf``) and fall back to plain steps whenever a relaxed step lands inside
the surface or the unbounding spheres stop overlapping (safe for fields with Lipschitz constant
<= 1). A ray ends when its SDF drops below ``eps`` (hit), a plain step crosses the surface
(bracketed hit), it leaves its ``[near, far]`` range (miss) or ``max_steps`` run out. Hits are
refined by regula falsi (Illinois) on a bracket, so the surface point is accurate to far below
``eps``. Only live rays are evaluated: each step gathers them per batch element.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TraceConfig:
    """Sphere-tracing settings (distances in the field's units)."""

    max_steps: int = 64
    """March steps per ray (each is one SDF evaluation)."""
    relax: float = 1.0
    """Over-relaxation of the step (1 = plain sphere tracing). On heads, 1.6 saved no evaluations:
    the retried steps cost as much as the longer ones gain (benchmarks/bench_render.py)."""
    eps: float = 5e-4
    """A ray whose SDF falls below this has hit."""
    refine_steps: int = 4
    """Regula-falsi iterations on a hit's bracket."""
    refine_tol: float = 1e-6
    """Stop refining when |sdf| at the estimate is below this."""
    min_step: float = 0.0
    """Smallest step, as a fraction of the distance travelled ``t`` (``RenderConfig.min_step_px`` sets it
    in pixels). Rays grazing a silhouette then leave in a few steps instead of crawling along it; a step
    that crosses the surface is caught by the bracket. Features thinner than a step can be missed."""


@dataclass(frozen=True)
class TraceResult:
    """Per ray ``(B, N)``: ``t`` (hit distance), ``hit``, ``n_evals``, and the closest approach of misses."""

    t: torch.Tensor
    hit: torch.Tensor
    n_evals: torch.Tensor
    closest_t: torch.Tensor
    closest_sdf: torch.Tensor


def eval_rays(sdf_fn: Callable, origins, dirs, t, mask, n_evals) -> torch.Tensor:
    """SDF at ``origins + t * dirs`` for rays in ``mask (B, N)``; other entries are NaN."""
    out = torch.full_like(t, float("nan"))
    counts = mask.sum(1)
    m = int(counts.max())
    if m == 0:
        return out
    idx = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :m]  # live rays first
    valid = torch.arange(m, device=t.device)[None, :] < counts[:, None]
    tt = torch.where(valid, t.gather(1, idx), torch.zeros_like(t[:, :1]))  # padding: finite dummy points
    pts = origins.gather(1, idx[..., None].expand(-1, -1, 3)) + tt[..., None] * dirs.gather(1, idx[..., None].expand(-1, -1, 3))
    vals = sdf_fn(pts)
    if vals.shape != idx.shape:
        raise ValueError(
            f"sdf_fn: expected output shape {tuple(idx.shape)} for points {tuple(pts.shape)}, got {tuple(vals.shape)}"
        )
    vals = vals.detach().to(t.dtype)
    out.scatter_(1, idx, torch.where(valid, vals, out.gather(1, idx)))
    n_evals += mask.to(n_evals.dtype)
    return out


@torch.no_grad()
def regula_falsi(sdf_fn, origins, dirs, lo_t, lo_s, hi_t, hi_s, rays, t, cfg: TraceConfig, n_evals) -> torch.Tensor:
    """Root of the SDF on brackets ``[lo_t, hi_t]`` (``lo_s > 0 >= hi_s``) of ``rays (B, N)`` by Illinois steps.

    At most ``cfg.refine_steps`` evaluations per ray, stopping at ``|sdf| < cfg.refine_tol``. Returns
    ``t (B, N)``: the estimates on ``rays``, the given ``t`` elsewhere. Counts evaluations in ``n_evals``.
    """
    lo_t, lo_s, hi_t, hi_s = lo_t.clone(), lo_s.clone(), hi_t.clone(), hi_s.clone()
    rf = rays & (hi_t > lo_t)
    t_est = torch.where(rf, lo_t - lo_s * (hi_t - lo_t) / (hi_s - lo_s), t)
    side = torch.zeros_like(t, dtype=torch.int8)
    for _ in range(cfg.refine_steps):
        if not bool(rf.any()):
            break
        s_est = eval_rays(sdf_fn, origins, dirs, t_est, rf, n_evals)
        done = rf & (s_est.abs() < cfg.refine_tol)
        pos = rf & ~done & (s_est > 0)
        neg = rf & ~done & (s_est <= 0)
        lo_t, lo_s = torch.where(pos, t_est, lo_t), torch.where(pos, s_est, lo_s)
        hi_t, hi_s = torch.where(neg, t_est, hi_t), torch.where(neg, s_est, hi_s)
        # Illinois: halve the stale end's value when the same side moves twice
        hi_s = torch.where(pos & (side == 1), hi_s / 2, hi_s)
        lo_s = torch.where(neg & (side == -1), lo_s / 2, lo_s)
        side = torch.where(pos, torch.ones_like(side), torch.where(neg, -torch.ones_like(side), side))
        rf = rf & ~done
        t_est = torch.where(rf, lo_t - lo_s * (hi_t - lo_t) / (hi_s - lo_s), t_est)
    return torch.where(rays, t_est, t)


@torch.no_grad()
def sphere_trace(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    config: TraceConfig = TraceConfig(),
) -> TraceResult:
    """Trace rays ``origins + t * dirs`` (``(B, N, 3)`` each, unit ``dirs``) over ``t`` in ``[near, far]`` ``(B, N)``."""
    cfg = config
    live = near < far
    t = torch.where(live, near, far)
    n_evals = torch.zeros_like(t, dtype=torch.int32)
    s = eval_rays(sdf_fn, origins, dirs, t, live, n_evals)
    omega = torch.full_like(t, cfg.relax)
    hit = live & (s < cfg.eps)
    crossed = live & (s < 0)  # started inside: treat the entry point as a hit
    lo_t, lo_s = t.clone(), s.clone()
    hi_t, hi_s = t.clone(), s.clone()
    closest_t, closest_s = t.clone(), torch.where(live, s, torch.full_like(s, float("inf")))
    active = live & ~hit
    prev_t, prev_s = t.clone(), s.clone()
    for _ in range(cfg.max_steps):
        if not bool(active.any()):
            break
        step = torch.maximum(omega * s, cfg.min_step * t)
        t_new = t + step
        s_new = eval_rays(sdf_fn, origins, dirs, t_new, active, n_evals)
        relaxed = (omega > 1.0) & (omega * s >= cfg.min_step * t)
        # a relaxed step that lands inside, or whose spheres do not overlap, is retried plainly;
        # a plain step that lands inside (a field steeper than 1) brackets the surface
        cross = active & (s_new < 0) & ~relaxed
        overlap = (s + s_new.abs() >= step) & (s_new >= 0)
        accept = active & ~cross & (overlap | ~relaxed)
        reject = active & relaxed & ~overlap
        # a crossing brackets the surface between t and t_new
        lo_t = torch.where(cross, t, lo_t)
        lo_s = torch.where(cross, s, lo_s)
        hi_t = torch.where(cross, t_new, hi_t)
        hi_s = torch.where(cross, s_new, hi_s)
        crossed |= cross
        # accepted steps move on; rejected relaxed steps retry with a plain step
        prev_t = torch.where(accept, t, prev_t)
        prev_s = torch.where(accept, s, prev_s)
        t = torch.where(accept, t_new, t)
        s = torch.where(accept, s_new, s)
        omega = torch.where(reject, torch.ones_like(omega), omega)
        closer = accept & (s < closest_s)
        closest_t = torch.where(closer, t, closest_t)
        closest_s = torch.where(closer, s, closest_s)
        hit |= cross | (accept & (s < cfg.eps))
        active = active & ~hit & (t <= far)
    # a converged ray without a bracket gets one from a probe just past the root of the line
    # through its last two samples (accurate for grazing rays, where steps shrink slowly)
    near_only = hit & ~crossed
    if bool(near_only.any()):
        slope = (prev_s - s) / (t - prev_t).clamp_min(1e-12)  # -d sdf / dt along the ray
        ahead = torch.where(slope > 1e-6, s / slope.clamp_min(1e-6), s).clamp(min=s, max=20 * s + 2 * cfg.eps)
        probe_t = t + 1.25 * ahead + 10 * cfg.refine_tol
        probe_s = eval_rays(sdf_fn, origins, dirs, probe_t, near_only, n_evals)
        got = near_only & (probe_s < 0)
        lo_t, lo_s = torch.where(got, t, lo_t), torch.where(got, s, lo_s)
        hi_t, hi_s = torch.where(got, probe_t, hi_t), torch.where(got, probe_s, hi_s)
        crossed |= got
        t = torch.where(near_only & ~got, probe_t, t)  # no sign change: the probe is closer still
    t = regula_falsi(sdf_fn, origins, dirs, lo_t, lo_s, hi_t, hi_s, crossed, t, cfg, n_evals)
    return TraceResult(t=t, hit=hit, n_evals=n_evals, closest_t=closest_t, closest_sdf=closest_s)


@torch.no_grad()
def warm_start(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    t_guess: torch.Tensor,
    backoff: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where rays with an expected hit distance ``t_guess (B, N)`` (NaN: none) may start marching.

    The SDF is evaluated at ``t_guess -/+ backoff`` (one call for both). A sign change (outside,
    then inside) shows a surface there: the ray marches from ``t_guess - backoff`` and so finds the
    first surface after that point, thin features included (a root-finder on the bracket could land
    on a later one). Every other ray (no guess, or no sign change: the surface moved by more than
    ``backoff``, or the ray now misses) marches from ``near``. The hit is the cold trace's unless a
    surface lies more than ``backoff`` in front of a bracketed guess.

    Returns:
        The new ``near (B, N)`` for :func:`sphere_trace` and ``n_evals (B, N)`` int32 spent here.
    """
    n = near.shape[1]
    t_a, t_b = t_guess - backoff, t_guess + backoff
    cand = torch.isfinite(t_guess) & (t_a > near) & (t_b < far)
    evals2 = torch.zeros(near.shape[0], 2 * n, dtype=torch.int32, device=near.device)
    s2 = eval_rays(sdf_fn, torch.cat([origins, origins], 1), torch.cat([dirs, dirs], 1),
                   torch.cat([torch.where(cand, t_a, near), torch.where(cand, t_b, near)], 1),
                   torch.cat([cand, cand], 1), evals2)
    bracket = cand & (s2[:, :n] > 0) & (s2[:, n:] <= 0)
    return torch.where(bracket, t_a, near), evals2[:, :n] + evals2[:, n:]
