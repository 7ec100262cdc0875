"""Fit a head model's codes (and optionally a similarity) to a 3D point cloud: registering scans into codes."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from nphmkit._checks import check_tensor
from nphmkit._progress import progress_bar
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.terms import FitContext, LossTerm, check_terms, default_point_terms, evaluate, regularizer_terms
from nphmkit.protocols import HeadModel, check_head_model
from nphmkit.transforms import axis_angle_to_matrix, rotate_vectors, world_to_nphm


@dataclass(frozen=True)
class PointFitConfig:
    steps: int = 300
    lr: float = 1e-2
    lr_pose: float = 3e-3
    surface_weight: float = 1.0
    """Weight of the mean ``|sdf|`` at the points."""
    normal_weight: float = 0.1
    """Weight of the normal term (used when normals are given)."""
    regularizers: Mapping[str, float] = field(
        default_factory=lambda: {"id_global": 1e-4, "id_local": 1e-4, "ex": 1e-4, "symmetry": 1e-3})
    """Weight of each named code regularizer of the head model; names not listed count 0."""
    pose_only: float = 0.4
    """With ``similarity=True``: fraction of the steps that fit the similarity alone (codes frozen at
    their start) before the joint fit; free codes would otherwise absorb part of the rotation."""
    batch_points: int = 4000
    """Points per step (a random subset of the cloud)."""
    patience: int = 60
    """Stop when the loss has not improved by 0.5 % for this many steps."""
    seed: int = 0

    def default_terms(self) -> list[LossTerm]:
        """The built-in objective: ``surface``, ``normals`` and the weighted code regularizers."""
        return [*default_point_terms(self), *regularizer_terms(self.regularizers)]


def fit_points(
    model: HeadModel,
    points: torch.Tensor,
    normals: torch.Tensor | None = None,
    config: PointFitConfig = PointFitConfig(),
    init: FitResult | None = None,
    similarity: bool = False,
    terms: Sequence[LossTerm] | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Codes whose surface passes through ``points (B, N, 3)`` (and has unit ``normals (B, N, 3)``).

    Works with any :class:`nphmkit.protocols.HeadModel`. With ``similarity=True`` a rotation,
    translation and scale (head -> points' frame) are fitted too; otherwise the points are taken to
    be in head space. The objective is a list of weighted terms (default: ``config.default_terms()``;
    a term sees the step's points in head space, their normals and the SDF there, with gradients on
    demand, see :class:`~nphmkit.fitting.terms.FitContext`). Deterministic for a seed.
    """
    model = check_head_model(model)
    check_tensor("points", points, ("B", "N", 3), finite=True)
    if normals is not None:
        check_tensor("normals", normals, tuple(points.shape), finite=True)
    terms = check_terms(config.default_terms() if terms is None else terms)
    b = points.shape[0]
    dev, dt = points.device, points.dtype
    z_id0, z_ex0 = (init.z_id, init.z_ex) if init is not None else model.initial_codes(b, dev, dt)
    z_id = z_id0.detach().clone().requires_grad_(True)
    z_ex = z_ex0.detach().clone().requires_grad_(True)
    rot = torch.zeros(b, 3, device=dev, dtype=dt, requires_grad=True)
    trans = (init.translation.clone() if init else torch.zeros(b, 3, device=dev, dtype=dt)).requires_grad_(True)
    log_s = torch.zeros(b, device=dev, dtype=dt, requires_grad=True)
    base_R = init.rotation.clone() if init else torch.eye(3, device=dev, dtype=dt).expand(b, 3, 3)
    groups = [{"params": [z_id, z_ex], "lr": config.lr}]
    if similarity:
        groups.append({"params": [rot, trans, log_s], "lr": config.lr_pose})
    optim = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(config.seed)
    frames = torch.arange(b, device=dev)
    history: list[float] = []
    terms_log: list[dict] = []
    best, since = float("inf"), 0
    start = time.perf_counter()
    pose_only = int(config.steps * config.pose_only) if similarity else 0
    bar = progress_bar(range(config.steps), progress=progress, desc="fitting points", unit="step")
    for step in bar:
        idx = torch.randint(0, points.shape[1], (min(config.batch_points, points.shape[1]),), generator=g).to(dev)
        x = points[:, idx]
        R = axis_angle_to_matrix(rot) @ base_R
        s = torch.exp(log_s)
        if similarity:
            q = world_to_nphm(x, R, trans, s)
        else:  # a leaf that requires grad when the built-in normal term will ask for SDF gradients
            q = x.detach().requires_grad_(normals is not None)
        target_normals = None
        if normals is not None:
            target_normals = rotate_vectors(R.transpose(1, 2), normals[:, idx]) if similarity else normals[:, idx]
        field_ = model.field(z_id, z_ex)
        ctx = FitContext(model=model, z_id=z_id, z_ex=z_ex, rotation=R, translation=trans,
                         scale=s if similarity else torch.ones_like(s), field=field_,
                         regularizers=model.code_regularizers(z_id, z_ex), frames=frames, step=step,
                         points=q, target_normals=target_normals, sdf=field_(q))
        loss, values = evaluate(terms, ctx)
        bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if step < pose_only:
            z_id.grad = z_ex.grad = None
        optim.step()
        value = float(loss.detach())
        history.append(value)
        terms_log.append(values)
        if step < pose_only or value < best * 0.995:
            best, since = value, 0
        else:
            since += 1
            if since >= config.patience:
                break
    with torch.no_grad():
        R = axis_angle_to_matrix(rot) @ base_R
        t, s = trans.detach().clone(), torch.exp(log_s).detach()
    return FitResult(z_id.detach(), z_ex.detach(), R.detach(), t, s, history, terms_log,
                     seconds=time.perf_counter() - start, steps=len(history))


def surface_distance(model: HeadModel, result: FitResult, points: torch.Tensor, similarity: bool = False) -> torch.Tensor:
    """``|sdf|`` ``(B, N)`` of the fitted surface at ``points (B, N, 3)``, in the points' units."""
    model = check_head_model(model)
    check_tensor("points", points, ("B", "N", 3), finite=True)
    with torch.no_grad():
        q = world_to_nphm(points, result.rotation, result.translation, result.scale) if similarity else points
        scale = result.scale[:, None] if similarity else 1.0
        return model.field(result.z_id, result.z_ex)(q).abs() * scale
