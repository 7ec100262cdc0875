"""Fit a video: one identity, per-frame expression and pose, temporally smooth.

Frames are first fitted one after another, each warm-started from the previous frame's codes
(the first frame from zero codes) with its pose from its own point map (PnP), then refined jointly: all
frames render in one batch with a shared identity code and a smoothness penalty on
frame-to-frame changes of expression codes, rotations and translations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from nphmkit.fitting.image import (
    ImageFitConfig,
    ImageObjective,
    _check_maps,
    _intrinsics,
    fit_image,
    regularizers,
    total_loss,
)
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from nphmkit.losses import temporal_smoothness
from nphmkit.nphm import NPHM


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
    """Same for the translation (NPHM units): 1 mm (0.004) of jitter costs about 0.08."""
    image: ImageFitConfig = field(default_factory=ImageFitConfig)


def fit_video(
    model: NPHM,
    normal_maps: torch.Tensor,
    point_maps: torch.Tensor,
    masks: torch.Tensor,
    camera,
    config: VideoFitConfig = VideoFitConfig(),
    point_valid: torch.Tensor | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit ``T`` frames: maps ``(T, H, W, 3)``, masks ``(T, H, W)``; camera as in :func:`fit_image` (shared K).

    Returns a :class:`FitResult` with ``z_id (T, id_dim)`` (one identity, repeated), ``z_ex (T, E)``,
    ``rotation (T, 3, 3)``, ``translation (T, 3)``.
    """
    from tqdm.auto import tqdm

    _check_maps(normal_maps, point_maps, masks, point_valid)
    n = normal_maps.shape[0]
    K, size = _intrinsics(camera, n, normal_maps.shape[1:3])
    start = time.perf_counter()
    img = config.image

    def frame(i: int):
        pv = None if point_valid is None else point_valid[i : i + 1]
        return normal_maps[i : i + 1], point_maps[i : i + 1], masks[i : i + 1], K[i : i + 1], pv

    # 1. sequential pass with warm starts
    results = []
    bar = tqdm(range(n), desc="fitting frames", disable=not progress)
    for i in bar:
        nm, pm, mk, k, pv = frame(i)
        if i == 0:
            res = fit_image(model, nm, pm, mk, k, config=replace(img, steps=config.first_steps), point_valid=pv)
        else:
            # codes warm-start from the previous frame; the pose comes from this frame's own PnP
            # (chained pose warm starts drift in depth, where single views are weakest)
            prev = results[-1]
            init = FitResult(prev.z_id, prev.z_ex, None, None, prev.scale)
            res = fit_image(model, nm, pm, mk, k, init=init, point_valid=pv,
                            config=replace(img, steps=config.frame_steps, fit_identity=False))
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
    objective = ImageObjective(normal_maps, point_maps, masks, point_valid, K, size, img)
    history, terms_log = [], []
    for _ in tqdm(range(config.joint_steps), desc="joint refinement", disable=not progress):
        R = axis_angle_to_matrix(rot) @ R0
        zi = z_id.expand(n, -1)
        terms = objective.losses(model, zi, z_ex, R, trans, objective.sample())
        aa = matrix_to_axis_angle(R)
        smooth = (
            config.smooth_codes * temporal_smoothness(z_ex, order=2)
            + config.smooth_rotation * temporal_smoothness(aa, order=2)
            + config.smooth_translation * temporal_smoothness(trans, order=2)
        )
        terms["smoothness"] = smooth
        loss = total_loss(terms, img) * n + smooth + regularizers(model, z_id, z_ex, img)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        history.append(float(loss.detach()))
        terms_log.append({k: float(v.detach()) for k, v in terms.items()})
    with torch.no_grad():
        R = axis_angle_to_matrix(rot) @ R0
    return FitResult(z_id.detach().expand(n, -1).clone(), z_ex.detach(), R.detach(), trans.detach().clone(),
                     torch.ones(n, dtype=t.dtype, device=t.device), history, terms_log,
                     time.perf_counter() - start, len(history))
