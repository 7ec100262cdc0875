"""Fit a video: one identity, per-frame expression and pose, temporally smooth.

Frames are first fitted one after another, each warm-started from the previous frame's codes
(the first frame from ``model.initial_codes``) with its pose from its own point map (PnP; the
default crop pose without one), then refined jointly: all frames render in one batch with a
shared identity code and smoothness terms on frame-to-frame changes of expression codes,
rotations and translations. Works with any :class:`nphmkit.protocols.HeadModel`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from nphmkit._progress import progress_bar
from nphmkit.fitting.image import ImageFitConfig, fit_image
from nphmkit.fitting.objective import ImageObjective, check_maps, intrinsics
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.terms import LossTerm, check_terms, evaluate, temporal_terms
from nphmkit.protocols import HeadModel, check_head_model
from nphmkit.render import Camera
from nphmkit.transforms import axis_angle_to_matrix


@dataclass(frozen=True)
class VideoFitConfig:
    """Schedule of :func:`fit_video`; ``image`` configures the per-frame losses."""

    first_steps: int = 120
    """Steps on the first frame (identity, expression and pose)."""
    frame_steps: int = 40
    """Steps per later frame in the sequential pass (expression and pose; identity fixed)."""
    joint_steps: int = 80
    """Steps of the joint refinement over all frames."""
    smooth_codes: float = 1.0
    """Weight of the squared second differences (accelerations) of the expression codes over time."""
    smooth_rotation: float = 500.0
    """Same for the rotation (axis-angle, radians): 1 degree of jitter costs about 0.15."""
    smooth_translation: float = 5000.0
    """Same for the translation (head units): 1 mm (0.004 NPHM units) of jitter costs about 0.08."""
    image: ImageFitConfig = field(default_factory=ImageFitConfig)

    def default_terms(self) -> list[LossTerm]:
        """The built-in objective: the image objective of ``image`` plus the temporal smoothness terms."""
        return [*self.image.default_terms(), *temporal_terms(self)]


def fit_video(
    model: HeadModel,
    normal_maps: torch.Tensor,
    point_maps: torch.Tensor | None,
    masks: torch.Tensor,
    camera: Camera | torch.Tensor | None = None,
    config: VideoFitConfig = VideoFitConfig(),
    point_valid: torch.Tensor | None = None,
    progress: bool | None = None,
    terms: Sequence[LossTerm] | None = None,
    confidence: torch.Tensor | None = None,
    init: FitResult | None = None,
) -> FitResult:
    """Fit ``T`` frames: maps ``(T, H, W, 3)`` (point maps may be None), masks ``(T, H, W)``; camera as in
    :func:`fit_image` (shared K). ``terms`` (default: ``config.default_terms()``) serve both passes; a
    term sees the frames of its batch in ``ctx.frames``, and temporal terms are 0 on a single frame.
    ``init``: per-frame starts (e.g. a regressor's, ``z_id (T, id_dim)``, ``z_ex (T, ex_dim)``, pose or
    None): the first frame starts from the mean identity and its own expression and pose; every later
    frame from the identity so far, its own expression and pose (else the previous frame's codes and PnP).

    Returns a :class:`FitResult` with ``z_id (T, id_dim)`` (one identity, repeated), ``z_ex (T, ex_dim)``,
    ``rotation (T, 3, 3)``, ``translation (T, 3)``.
    """
    model = check_head_model(model)
    check_maps(normal_maps, point_maps, masks, point_valid, confidence)
    terms = check_terms(config.default_terms() if terms is None else terms)
    n = normal_maps.shape[0]
    K, size = intrinsics(camera, n, normal_maps.shape[1:3], normal_maps.dtype, normal_maps.device)
    start = time.perf_counter()
    img = config.image

    def frame(i: int):
        def pick(x):
            return None if x is None else x[i : i + 1]

        return normal_maps[i : i + 1], pick(point_maps), masks[i : i + 1], K[i : i + 1], pick(point_valid), pick(confidence)

    def shifted(i: int) -> list[LossTerm]:
        """The terms as frame ``i`` alone sees them: ``ctx.frames`` says ``[i]``."""
        return [replace(t, fn=_InFrame(t.fn, i)) for t in terms]

    # 1. sequential pass with warm starts
    results = []
    for i in progress_bar(range(n), progress=progress, desc="fitting frames"):
        nm, pm, mk, k, pv, cf = frame(i)
        own = None if init is None else _own_start(init, i)
        if i == 0:
            start0 = None if own is None else replace(own, z_id=init.z_id.mean(0, keepdim=True))
            res = fit_image(model, nm, pm, mk, k, init=start0, config=replace(img, steps=config.first_steps),
                            point_valid=pv, terms=shifted(i), confidence=cf, progress=False)
        else:
            # codes warm-start from the previous frame (or the frame's own start); the pose comes from this
            # frame's own start or PnP (chained pose warm starts drift in depth, where single views are weakest)
            prev = results[-1]
            warm = FitResult(prev.z_id, prev.z_ex, None, None, prev.scale) if own is None else \
                replace(own, z_id=prev.z_id)
            res = fit_image(model, nm, pm, mk, k, init=warm, point_valid=pv, terms=shifted(i), confidence=cf,
                            config=replace(img, steps=config.frame_steps, fit_identity=False), progress=False)
        results.append(res)
    z_id = results[0].z_id.clone()
    z_ex = torch.cat([r.z_ex for r in results])
    R0 = torch.cat([r.rotation for r in results])
    t = torch.cat([r.translation for r in results])

    # 2. joint refinement with temporal smoothness
    z_id = z_id.requires_grad_(True)
    z_ex = z_ex.clone().requires_grad_(True)
    rot = torch.zeros(n, 3, dtype=t.dtype, device=t.device, requires_grad=True)
    trans = t.clone().requires_grad_(True)
    optim = torch.optim.Adam(
        [{"params": [z_id, z_ex], "lr": img.lr_codes * 0.5}, {"params": [rot, trans], "lr": img.lr_pose * 0.5}]
    )
    objective = ImageObjective(normal_maps, point_maps, masks, point_valid, confidence, K, size, img)
    frames = torch.arange(n, device=t.device)
    history, terms_log = [], []
    bar = progress_bar(range(config.joint_steps), progress=progress, desc="joint refinement", unit="step")
    for step in bar:
        R = axis_angle_to_matrix(rot) @ R0
        ctx = objective.context(model, z_id.expand(n, -1), z_ex, R, trans, objective.sample(), frames, step)
        loss, values = evaluate(terms, ctx, data_scale=n)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
        terms_log.append(values)
    with torch.no_grad():
        R = axis_angle_to_matrix(rot) @ R0
    return FitResult(z_id.detach().expand(n, -1).clone(), z_ex.detach(), R.detach(), trans.detach().clone(),
                     torch.ones(n, dtype=t.dtype, device=t.device), history, terms_log,
                     time.perf_counter() - start, len(history))


class _InFrame:
    """A term's function with ``ctx.frames`` set to the one frame being fitted alone."""

    def __init__(self, fn, index: int) -> None:
        self.fn, self.index = fn, index

    def __call__(self, ctx):
        return self.fn(replace(ctx, frames=torch.full_like(ctx.frames, self.index)))


def _own_start(init: FitResult, i: int) -> FitResult:
    """Frame ``i``'s row of per-frame starts (identity, expression, pose; scale 1)."""
    pick = lambda x: None if x is None else x[i : i + 1]  # noqa: E731
    return FitResult(pick(init.z_id), pick(init.z_ex), pick(init.rotation), pick(init.translation),
                     torch.ones(1, dtype=init.z_ex.dtype, device=init.z_ex.device))
