"""Fit NPHM codes and head pose to a normal map and a canonical point map (one image or a batch).

The head pose ``x_cam = R x_nphm + t`` (API.md, world = camera) is initialized by PnP on the
point map (:mod:`nphmkit.fitting.pose`) and refined jointly with the codes. The head stays
in NPHM space and the pose acts as the camera's extrinsics, so the renderer's implicit
differentiation carries gradients to the pose. Each step renders a random subset of pixels:
target foreground, a band around the silhouette and some background.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from nphmkit._checks import check_tensor
from nphmkit.fitting.pose import pose_from_point_map
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.rotation import axis_angle_to_matrix
from nphmkit.losses import (
    CodeLayout,
    code_norms,
    expression_norm,
    normal_map_loss,
    point_map_loss,
    silhouette_loss,
    symmetry_loss,
)
from nphmkit.nphm import NPHM
from nphmkit.render import Camera, RenderConfig, TraceConfig, render


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
    reg_id: float = 1e-4
    reg_ex: float = 1e-4
    symmetry: float = 1e-3
    fit_pose: bool = True
    pose_warmup: float = 0.4
    """Fraction of the steps during which the pose stays at its initial value while the codes adapt
    (from the mean head, a wrong head size would otherwise be absorbed by the depth)."""
    fit_identity: bool = True
    patience: int = 40
    """Stop when the smoothed loss has not improved by 0.5 % for this many steps."""
    seed: int = 0
    render: RenderConfig = field(default_factory=lambda: RenderConfig(trace=TraceConfig(max_steps=40)))
    """Renderer settings; fewer march steps than for pictures: the few rays that crawl along a silhouette
    end as misses (the silhouette loss covers them) instead of costing a full SDF call each."""


def _check_maps(normal_map, point_map, mask, point_valid):
    check_tensor("normal_map", normal_map, ("B", "H", "W", 3))
    shape = tuple(normal_map.shape)
    check_tensor("point_map", point_map, shape)
    check_tensor("mask", mask, shape[:3], floating=False)
    if point_valid is not None:
        check_tensor("point_valid", point_valid, shape[:3], floating=False)


def _intrinsics(camera, batch: int, image_size) -> tuple[torch.Tensor, tuple[int, int]]:
    if isinstance(camera, Camera):
        if tuple(camera.image_size) != tuple(image_size):
            raise ValueError(f"camera: expected image size {tuple(image_size)} (the maps'), got {camera.image_size}")
        K = camera.K
    else:
        K = torch.as_tensor(camera)
        if K.dim() == 2:
            K = K.expand(batch, 3, 3)
    if K.shape != (batch, 3, 3):
        raise ValueError(f"camera: expected intrinsics (B={batch}, 3, 3), got {tuple(K.shape)}")
    return K, (int(image_size[0]), int(image_size[1]))


class ImageObjective:
    """Samples pixels and evaluates the image losses for a batch of targets (shared by image and video fits)."""

    def __init__(self, normal_map, point_map, mask, point_valid, K, image_size, config: ImageFitConfig):
        self.normal_map, self.point_map, self.mask = normal_map, point_map, mask
        self.point_valid = mask if point_valid is None else point_valid & mask
        self.K, self.size, self.cfg = K, image_size, config
        m = mask.float()[:, None]
        dil = torch.nn.functional.max_pool2d(m, 7, 1, 3)[:, 0] > 0
        ero = -torch.nn.functional.max_pool2d(-m, 7, 1, 3)[:, 0] > 0
        self.band = dil & ~ero
        self.generator = torch.Generator().manual_seed(config.seed)

    def _pick(self, region: torch.Tensor, n: int) -> torch.Tensor:
        """``(B, n)`` flat pixel indices drawn from ``region (B, H, W)`` (uniform if empty)."""
        b = region.shape[0]
        w = region.reshape(b, -1).float() + 1e-6
        return torch.multinomial(w, n, replacement=True, generator=self.generator)

    def sample(self) -> torch.Tensor:
        n = self.cfg.pixels_per_step
        n_fg, n_band = int(n * 0.7), int(n * 0.2)
        idx = torch.cat(
            [self._pick(self.mask, n_fg), self._pick(self.band, n_band),
             self._pick(torch.ones_like(self.mask), n - n_fg - n_band)],
            dim=1,
        )
        return idx

    def losses(self, model: NPHM, z_id, z_ex, R, t, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = self.size
        pix = torch.stack([idx % w, idx // w], dim=-1).to(self.K.dtype) + 0.5
        cam = Camera(self.K, R, t, self.size)
        field = model.field(z_id, z_ex)
        out = render(field, cam, field.canonical, config=self.cfg.render, pixels=pix)

        def at(x):
            flat = x.reshape(x.shape[0], h * w, *x.shape[3:])
            return flat.gather(1, idx[..., None].expand(-1, -1, *flat.shape[2:]) if flat.dim() == 3 else idx)

        tgt_mask = at(self.mask)
        both = out.mask & tgt_mask
        cfg = self.cfg
        return {
            "normals": normal_map_loss(out.normals, at(self.normal_map), both, cfg.robust),
            "points": point_map_loss(out.canonical, at(self.point_map), both & at(self.point_valid), cfg.robust),
            "silhouette": silhouette_loss(out.soft_mask, tgt_mask),
        }


def total_loss(terms: dict[str, torch.Tensor], cfg: ImageFitConfig) -> torch.Tensor:
    return cfg.w_normals * terms["normals"] + cfg.w_points * terms["points"] + cfg.w_silhouette * terms["silhouette"]


def regularizers(model: NPHM, z_id, z_ex, cfg: ImageFitConfig) -> torch.Tensor:
    layout = CodeLayout.of(model.config)
    glob, local = code_norms(z_id, layout)
    return cfg.reg_id * (glob + local) + cfg.reg_ex * expression_norm(z_ex) + cfg.symmetry * symmetry_loss(z_id, layout)


def initial_pose(point_map, mask, point_valid, K, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """PnP pose ``R (B, 3, 3)``, ``t (B, 3)`` of each target from its canonical point map."""
    valid = mask if point_valid is None else mask & point_valid
    Rs, ts = [], []
    for i in range(point_map.shape[0]):
        est = pose_from_point_map(point_map[i], valid[i], K[i], seed=seed)
        Rs.append(est.R)
        ts.append(est.t)
    return torch.stack(Rs), torch.stack(ts)


def fit_image(
    model: NPHM,
    normal_map: torch.Tensor,
    point_map: torch.Tensor,
    mask: torch.Tensor,
    camera,
    init: FitResult | None = None,
    config: ImageFitConfig = ImageFitConfig(),
    point_valid: torch.Tensor | None = None,
    progress: bool = False,
) -> FitResult:
    """Fit codes and pose to target maps (one image per batch element).

    Args:
        model: the NPHM (its weights stay fixed).
        normal_map: ``(B, H, W, 3)`` unit normals in the camera frame (towards the camera).
        point_map: ``(B, H, W, 3)`` canonical coordinates (NPHM units).
        mask: ``(B, H, W)`` bool, the head's pixels.
        camera: a :class:`Camera` (its ``K`` and image size are used; the pose is fitted) or ``K (B, 3, 3)``.
        init: start codes/pose (e.g. a regressor's prediction); default: zero codes, PnP pose.
        config: schedule and loss weights.
        point_valid: ``(B, H, W)`` bool where the point map is trustworthy (default: the mask).

    Returns:
        :class:`FitResult` with ``history`` (total loss per step) and ``terms`` (per-term values).
    """
    from tqdm.auto import tqdm

    _check_maps(normal_map, point_map, mask, point_valid)
    b = normal_map.shape[0]
    K, size = _intrinsics(camera, b, normal_map.shape[1:3])
    mc = model.config
    dev, dt = normal_map.device, normal_map.dtype
    start = time.perf_counter()
    if init is not None and init.rotation is not None:
        R0, t0 = init.rotation.clone(), init.translation.clone()
    else:
        R0, t0 = initial_pose(point_map, mask, point_valid, K, config.seed)
    z_id = (init.z_id.clone() if init else torch.zeros(b, mc.id_dim, device=dev, dtype=dt)).requires_grad_(True)
    z_ex = (init.z_ex.clone() if init else torch.zeros(b, mc.lat_dim_ex, device=dev, dtype=dt)).requires_grad_(True)
    rot = torch.zeros(b, 3, device=dev, dtype=dt, requires_grad=True)
    trans = t0.clone().requires_grad_(True)
    groups = [{"params": [z_ex], "lr": config.lr_codes}]
    if config.fit_identity:
        groups.append({"params": [z_id], "lr": config.lr_codes})
    if config.fit_pose:
        groups.append({"params": [rot, trans], "lr": config.lr_pose})
    optim = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, [int(config.steps * config.decay_at)], gamma=0.2)
    objective = ImageObjective(normal_map, point_map, mask, point_valid, K, size, config)
    history, terms_log = [], []
    best, since, smooth = float("inf"), 0, None
    warmup = int(config.steps * config.pose_warmup) if init is None or init.rotation is None else 0
    for step in tqdm(range(config.steps), desc="fitting image", disable=not progress):
        R = axis_angle_to_matrix(rot) @ R0
        terms = objective.losses(model, z_id, z_ex, R, trans, objective.sample())
        loss = total_loss(terms, config) + regularizers(model, z_id, z_ex, config)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if step < warmup:
            rot.grad = trans.grad = None  # pose frozen while the codes catch up
        optim.step()
        sched.step()
        value = float(loss.detach())
        history.append(value)
        terms_log.append({k: float(v.detach()) for k, v in terms.items()})
        smooth = value if smooth is None else 0.9 * smooth + 0.1 * value
        if step < warmup or smooth < best * 0.995:
            best, since = smooth, 0
        else:
            since += 1
            if since >= config.patience:
                break
    with torch.no_grad():
        R = axis_angle_to_matrix(rot) @ R0
    return FitResult(z_id.detach(), z_ex.detach(), R.detach(), trans.detach().clone(), torch.ones(b, dtype=dt, device=dev),
                     history, terms_log, time.perf_counter() - start, len(history))
