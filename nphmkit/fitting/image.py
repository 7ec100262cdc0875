"""Fit a head model's codes and the head pose to a normal map (and a canonical point map), per image.

Works with any :class:`nphmkit.protocols.HeadModel`. The head pose ``x_cam = R x_head + t``
(world = camera) starts from ``init``, else from PnP on the point map
(:mod:`nphmkit.fitting.pose`), else from the default crop pose
(:func:`nphmkit.render.default_crop_pose`), and is refined jointly with the codes. Without a
point map, or for a model whose fields have no ``canonical``, the fit uses normals and the
silhouette alone. The objective is a list of weighted terms (:mod:`nphmkit.fitting.terms`).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from nphmkit._progress import progress_bar
from nphmkit.fitting.objective import ImageObjective, check_maps, intrinsics
from nphmkit.fitting.pose import pose_from_point_map
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.terms import LossTerm, anchor_term, check_terms, default_image_terms, evaluate, regularizer_terms
from nphmkit.losses.image import ROBUST
from nphmkit.protocols import CanonicalField, HeadModel, check_head_model
from nphmkit.render import Camera, RenderConfig, TraceConfig, default_crop_pose
from nphmkit.transforms import axis_angle_to_matrix

DEFAULT_REGULARIZERS = {"id_global": 1e-4, "id_local": 1e-4, "ex": 1e-4, "symmetry": 1e-3}
"""Weights of the head model's named code regularizers in the image and video objectives."""


@dataclass(frozen=True)
class ImageFitConfig:
    """Schedule and weights of :func:`fit_image`."""

    steps: int = 150
    lr_codes: float = 5e-3
    lr_pose: float = 1e-3
    decay_at: float = 0.7
    """Fraction of the steps after which the learning rates are divided by 5."""
    pixels_per_step: int = 1500
    w_normals: float = 1.0
    w_points: float = 30.0
    w_silhouette: float = 0.02
    robust: str = "huber"
    normal_delta: float = 0.1
    """Scale of the robust penalty of the normal term, in units of ``|n - n_target|`` (unit normals; 0.1 is
    about 5.7 degrees): residuals above it count less than quadratically (``robust`` ``"huber"`` and ``"cauchy"``;
    ``"l1"`` and ``"l2"`` have no scale)."""
    normal_frame: str = "camera"
    """The target normals' frame: ``"camera"``, or ``"head"`` (official Pixel3DMM normals, FLAME-aligned: the
    rendered normals are rotated into the head frame by the current pose before comparing)."""
    regularizers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REGULARIZERS))
    """Weight of each named code regularizer of the head model (``model.code_regularizers``); names not
    listed count 0."""
    anchor: float = 0.0
    """Weight of the prior that keeps the codes near their start (:func:`~nphmkit.fitting.terms.anchor_term`;
    with a regressor's codes as the start it limits how far noisy predicted maps pull them)."""
    fit_pose: bool = True
    pose_warmup: float = 0.4
    """Fraction of the steps during which the pose stays at its initial value while the codes adapt
    (from the mean head, a wrong head size would otherwise be absorbed by the depth)."""
    fit_identity: bool = True
    average_from: float | None = None
    """Fraction of the steps after which the iterates (codes and pose) are averaged; the fit returns their
    mean instead of the last step's (iterate averaging: it cancels much of the step-to-step noise of the
    random pixel subsets). None: the last step's."""
    patience: int = 40
    """Stop when the smoothed loss has not improved by 0.5 % for this many steps."""
    seed: int = 0
    warm_start: bool = False
    """Start each pixel's sphere trace ``render.warm_backoff`` in front of the depth it had when last
    rendered (:func:`nphmkit.render.render`'s ``start_depth``): ~0.8x the SDF evaluations of a cold
    start on a head, the same surface unless it moves by more than the backoff between two visits of
    a pixel. Off by default: a fit from the mean head moves the surface by centimetres early on (on a
    held-out synthetic head it ended at 0.14 mm against 0.07 mm cold); the pipeline's refinement from
    a regressor's codes (``REFINE``) turns it on."""
    render: RenderConfig = field(default_factory=lambda: RenderConfig(trace=TraceConfig(max_steps=40)))
    """Renderer settings; fewer march steps than for pictures: the few rays that crawl along a silhouette
    end as misses (the silhouette loss covers them) instead of costing a full SDF call each."""

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("pixels_per_step", 1), ("patience", 1)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        for name in ("lr_codes", "lr_pose"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a learning rate >= 0, got {getattr(self, name)!r}")
        if self.normal_frame not in ("camera", "head"):
            raise ValueError(f"normal_frame: expected 'camera' or 'head', got {self.normal_frame!r}")
        if self.robust not in ROBUST:
            raise ValueError(f"robust: expected one of {ROBUST}, got {self.robust!r}")
        if not self.normal_delta > 0:
            raise ValueError(f"normal_delta: expected a positive scale, got {self.normal_delta!r}")
        if self.average_from is not None and not 0.0 <= self.average_from < 1.0:
            raise ValueError(f"average_from: expected a fraction of the steps in [0, 1) or None, got {self.average_from!r}")

    def default_terms(self) -> list[LossTerm]:
        """The built-in objective: data terms and the weighted code regularizers."""
        anchor = [LossTerm("anchor", self.anchor, anchor_term)] if self.anchor else []
        return [*default_image_terms(self), *regularizer_terms(self.regularizers), *anchor]


class IterateMean:
    """Running mean of a fit's iterates from step ``int(steps * start)`` on (``start=None``: off)."""

    def __init__(self, steps: int, start: float | None) -> None:
        self.first = None if start is None else int(steps * start)
        self.count = 0
        self.mean: list[torch.Tensor] | None = None

    def add(self, step: int, *tensors: torch.Tensor) -> None:
        if self.first is None or step < self.first:
            return
        self.count += 1
        now = [t.detach() for t in tensors]
        if self.mean is None:
            self.mean = [t.clone() for t in now]
        else:
            for m, t in zip(self.mean, now):
                m.add_(t - m, alpha=1.0 / self.count)

    def result(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """The mean, or (off, or stopped before averaging began) detached copies of ``tensors``."""
        return self.mean if self.mean is not None else [t.detach().clone() for t in tensors]


def initial_pose(point_map, mask, point_valid, K, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """PnP pose ``R (B, 3, 3)``, ``t (B, 3)`` of each target from its canonical point map."""
    valid = mask if point_valid is None else mask & point_valid
    Rs, ts = [], []
    for i in range(point_map.shape[0]):
        est = pose_from_point_map(point_map[i], valid[i], K[i], seed=seed)
        Rs.append(est.R)
        ts.append(est.t)
    return torch.stack(Rs), torch.stack(ts)


def start_pose(model: HeadModel, init, point_map, mask, point_valid, K, seed) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``R0``, ``t0`` and whether they came from ``init`` (else PnP on the point map, else the default crop pose)."""
    if init is not None and init.rotation is not None:
        return init.rotation.clone(), init.translation.clone(), True
    b = mask.shape[0]
    if point_map is not None and isinstance(model.field(*model.initial_codes(1, mask.device, K.dtype)), CanonicalField):
        R0, t0 = initial_pose(point_map, mask, point_valid, K, seed)
        return R0, t0, False
    focal = float(K[0, 0, 0]) / mask.shape[2]
    R0, t0 = default_crop_pose(b, focal=focal, dtype=K.dtype, device=K.device)
    return R0, t0, False


def fit_image(
    model: HeadModel,
    normal_map: torch.Tensor,
    point_map: torch.Tensor | None,
    mask: torch.Tensor,
    camera: Camera | torch.Tensor | None = None,
    init: FitResult | None = None,
    config: ImageFitConfig = ImageFitConfig(),
    point_valid: torch.Tensor | None = None,
    progress: bool | None = None,
    terms: Sequence[LossTerm] | None = None,
    confidence: torch.Tensor | None = None,
) -> FitResult:
    """Fit codes and pose to target maps (one image per batch element).

    Args:
        model: any head model (:class:`nphmkit.protocols.HeadModel`); its weights stay fixed.
        normal_map: ``(B, H, W, 3)`` unit normals in the camera frame (towards the camera).
        point_map: ``(B, H, W, 3)`` canonical coordinates (head units), or None: normals and silhouette only.
        mask: ``(B, H, W)`` bool, the head's pixels.
        camera: a :class:`~nphmkit.render.Camera` (its ``K`` and image size are used; the pose is fitted),
            ``K (B, 3, 3)`` or ``(3, 3)``, or None for the default crop intrinsics.
        init: start codes/pose (e.g. a regressor's prediction); default: ``model.initial_codes``, pose
            by PnP on the point map, else the default crop pose.
        config: schedule, loss weights and regularizer weights.
        point_valid: ``(B, H, W)`` bool where the point map is trustworthy (default: the mask).
        progress: a progress bar (None: on an interactive terminal).
        terms: the objective (default: ``config.default_terms()``), see :mod:`nphmkit.fitting.terms`.
        confidence: ``(B, H, W)`` float per-pixel weights of the normal and point terms (e.g. a
            predictor's confidence), or None.

    Returns:
        :class:`FitResult` with ``history`` (total loss per step) and ``terms`` (each term's
        unweighted value per step).
    """
    model = check_head_model(model)
    check_maps(normal_map, point_map, mask, point_valid, confidence)
    terms = check_terms(config.default_terms() if terms is None else terms)
    b = normal_map.shape[0]
    dev, dt = normal_map.device, normal_map.dtype
    K, size = intrinsics(camera, b, normal_map.shape[1:3], dt, dev)
    start = time.perf_counter()
    R0, t0, from_init = start_pose(model, init, point_map, mask, point_valid, K, config.seed)
    z_id0, z_ex0 = (init.z_id, init.z_ex) if init is not None else model.initial_codes(b, dev, dt)
    z_id = z_id0.detach().clone().requires_grad_(True)
    z_ex = z_ex0.detach().clone().requires_grad_(True)
    rot = torch.zeros(b, 3, device=dev, dtype=dt, requires_grad=True)
    trans = t0.clone().requires_grad_(True)
    groups = [{"params": [z_ex], "lr": config.lr_codes}]
    if config.fit_identity:
        groups.append({"params": [z_id], "lr": config.lr_codes})
    if config.fit_pose:
        groups.append({"params": [rot, trans], "lr": config.lr_pose})
    optim = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, [int(config.steps * config.decay_at)], gamma=0.2)
    objective = ImageObjective(normal_map, point_map, mask, point_valid, confidence, K, size, config,
                               start=(z_id0.detach().clone(), z_ex0.detach().clone()))
    frames = torch.arange(b, device=dev)
    history, terms_log = [], []
    best, since, smooth = float("inf"), 0, None
    warmup = 0 if from_init else int(config.steps * config.pose_warmup)
    average = IterateMean(config.steps, config.average_from)
    bar = progress_bar(range(config.steps), progress=progress, desc="fitting image", unit="step")
    for step in bar:
        R = axis_angle_to_matrix(rot) @ R0
        ctx = objective.context(model, z_id, z_ex, R, trans, objective.sample(), frames, step)
        loss, values = evaluate(terms, ctx)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if step < warmup:
            rot.grad = trans.grad = None  # pose frozen while the codes catch up
        optim.step()
        sched.step()
        average.add(step, z_id, z_ex, rot, trans)
        value = float(loss.detach())
        bar.set_postfix(loss=f"{value:.4g}", refresh=False)
        history.append(value)
        terms_log.append(values)
        smooth = value if smooth is None else 0.9 * smooth + 0.1 * value
        if step < warmup or smooth < best * 0.995:
            best, since = smooth, 0
        else:
            since += 1
            if since >= config.patience:
                bar.set_postfix(loss=f"{value:.4g}", stopped="converged")
                break
    bar.close()
    z_id_out, z_ex_out, rot_out, trans_out = average.result(z_id, z_ex, rot, trans)
    with torch.no_grad():
        R = axis_angle_to_matrix(rot_out) @ R0
    return FitResult(z_id_out, z_ex_out, R.detach(), trans_out, torch.ones(b, dtype=dt, device=dev),
                     history, terms_log, time.perf_counter() - start, len(history))
