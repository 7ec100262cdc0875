"""Fit codes (and optionally a similarity) to a 3D point cloud: the registration of scans into codes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from nphmkit._checks import check_tensor
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.rotation import axis_angle_to_matrix
from nphmkit.losses import CodeLayout, code_norms, expression_norm, normal_loss, symmetry_loss
from nphmkit.nphm import NPHM
from nphmkit.render.camera import world_to_nphm


@dataclass(frozen=True)
class PointFitConfig:
    steps: int = 300
    lr: float = 1e-2
    lr_pose: float = 3e-3
    normal_weight: float = 0.1
    reg_id: float = 1e-4
    reg_ex: float = 1e-4
    symmetry: float = 1e-3
    pose_only: float = 0.4
    """With ``similarity=True``: fraction of the steps that fit the similarity alone (codes frozen at
    their start) before the joint fit; free codes would otherwise absorb part of the rotation."""
    batch_points: int = 4000
    """Points per step (a random subset of the cloud)."""
    patience: int = 60
    """Stop when the loss has not improved by 0.5 % for this many steps."""
    seed: int = 0


def fit_points(
    model: NPHM,
    points: torch.Tensor,
    normals: torch.Tensor | None = None,
    config: PointFitConfig = PointFitConfig(),
    init: FitResult | None = None,
    similarity: bool = False,
) -> FitResult:
    """Codes whose surface passes through ``points (B, N, 3)`` (and has ``normals (B, N, 3)``).

    With ``similarity=True`` a rotation, translation and scale (NPHM -> points' frame) are
    fitted too; otherwise the points are taken to be in NPHM space. Deterministic for a seed.
    """
    check_tensor("points", points, ("B", "N", 3), finite=True)
    if normals is not None:
        check_tensor("normals", normals, tuple(points.shape), finite=True)
    b = points.shape[0]
    mc = model.config
    layout = CodeLayout.of(mc)
    dev, dt = points.device, points.dtype
    z_id = (init.z_id.clone() if init else torch.zeros(b, mc.id_dim, device=dev, dtype=dt)).requires_grad_(True)
    z_ex = (init.z_ex.clone() if init else torch.zeros(b, mc.lat_dim_ex, device=dev, dtype=dt)).requires_grad_(True)
    rot = torch.zeros(b, 3, device=dev, dtype=dt, requires_grad=True)
    trans = (init.translation.clone() if init else torch.zeros(b, 3, device=dev, dtype=dt)).requires_grad_(True)
    log_s = torch.zeros(b, device=dev, dtype=dt, requires_grad=True)
    base_R = init.rotation.clone() if init else torch.eye(3, device=dev, dtype=dt).expand(b, 3, 3)
    groups = [{"params": [z_id, z_ex], "lr": config.lr}]
    if similarity:
        groups.append({"params": [rot, trans, log_s], "lr": config.lr_pose})
    optim = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    best, since = float("inf"), 0
    start = time.perf_counter()
    pose_only = int(config.steps * config.pose_only) if similarity else 0
    for step in range(config.steps):
        idx = torch.randint(0, points.shape[1], (min(config.batch_points, points.shape[1]),), generator=g).to(dev)
        x = points[:, idx]
        R = axis_angle_to_matrix(rot) @ base_R
        s = torch.exp(log_s)
        q = world_to_nphm(x, R, trans, s) if similarity else x
        need_normals = normals is not None and config.normal_weight > 0
        if need_normals:
            sdf, grad = model.sdf_and_gradient(q, z_id, z_ex, create_graph=True)
            n_nphm = torch.einsum("bji,bnj->bni", R, normals[:, idx]) if similarity else normals[:, idx]
        else:
            sdf = model.sdf(q, z_id, z_ex)
        dist = sdf[..., 0].abs() * (s[:, None] if similarity else 1.0)
        loss = dist.mean()
        if need_normals:
            loss = loss + config.normal_weight * normal_loss(grad, n_nphm)
        glob, local = code_norms(z_id, layout)
        loss = loss + config.reg_id * (glob + local) + config.reg_ex * expression_norm(z_ex)
        loss = loss + config.symmetry * symmetry_loss(z_id, layout)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if step < pose_only:
            z_id.grad = z_ex.grad = None
        optim.step()
        value = float(loss.detach())
        history.append(value)
        if step < pose_only or value < best * 0.995:
            best, since = value, 0
        else:
            since += 1
            if since >= config.patience:
                break
    with torch.no_grad():
        R = axis_angle_to_matrix(rot) @ base_R
        t, s = trans.detach().clone(), torch.exp(log_s).detach()
    return FitResult(z_id.detach(), z_ex.detach(), R.detach(), t, s, history, seconds=time.perf_counter() - start,
                     steps=len(history))


def surface_distance(model: NPHM, result: FitResult, points: torch.Tensor, similarity: bool = False) -> torch.Tensor:
    """``|sdf|`` of the fitted surface at ``points (B, N, 3)``, in the points' units ``(B, N)``."""
    with torch.no_grad():
        q = world_to_nphm(points, result.rotation, result.translation, result.scale) if similarity else points
        scale = result.scale[:, None] if similarity else 1.0
        return model.sdf(q, result.z_id, result.z_ex)[..., 0].abs() * scale
