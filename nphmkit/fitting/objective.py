"""The per-step work of image fits: pick pixels, render the head there, gather the targets.

Shared by :func:`~nphmkit.fitting.fit_image` and :func:`~nphmkit.fitting.fit_video`. Each step
renders a random subset of pixels: 70 % on the target's head, 20 % in a band around its
silhouette, 10 % anywhere. With ``config.warm_start`` a pixel's ray starts marching just in front
of the depth it had when last rendered (the surface moves little between steps). The head stays in its
own space and the pose acts as the camera's extrinsics, so the renderer's implicit differentiation
carries gradients to the pose.
"""

from __future__ import annotations

import torch

from nphmkit._checks import check_tensor
from nphmkit.fitting.terms import FitContext, PixelTargets
from nphmkit.protocols import CanonicalField, HeadModel
from nphmkit.render import Camera, default_intrinsics, render


def check_maps(normal_map, point_map, mask, point_valid, confidence) -> None:
    """Shapes of the image-fit targets (see :func:`~nphmkit.fitting.fit_image`)."""
    check_tensor("normal_map", normal_map, ("B", "H", "W", 3))
    shape = tuple(normal_map.shape)
    if point_map is not None:
        check_tensor("point_map", point_map, shape)
    check_tensor("mask", mask, shape[:3], floating=False)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected a bool tensor, got dtype {mask.dtype}")
    if point_valid is not None:
        check_tensor("point_valid", point_valid, shape[:3], floating=False)
    if confidence is not None:
        check_tensor("confidence", confidence, shape[:3])
    # the targets are read only where the mask (and point_valid) says so: NaN elsewhere is allowed
    if not bool(torch.isfinite(normal_map[mask]).all()):
        raise ValueError("normal_map: expected finite values inside the mask, got NaN or inf")
    if point_map is not None:
        valid = mask if point_valid is None else mask & point_valid
        if not bool(torch.isfinite(point_map[valid]).all()):
            raise ValueError("point_map: expected finite values where mask (and point_valid) is set, got NaN or inf")
    if confidence is not None:
        inside = confidence[mask]
        if not bool(torch.isfinite(inside).all()) or bool((inside < 0).any()):
            raise ValueError("confidence: expected finite weights >= 0 inside the mask")


def intrinsics(camera, batch: int, image_size, dtype=torch.float32, device=None) -> tuple[torch.Tensor, tuple[int, int]]:
    """``K (batch, 3, 3)`` and ``(H, W)`` from a :class:`Camera`, a ``K`` ``(3, 3)``/``(B, 3, 3)`` or None (default crop)."""
    size = (int(image_size[0]), int(image_size[1]))
    if camera is None:
        return default_intrinsics(size, batch=batch, dtype=dtype, device=device), size
    if isinstance(camera, Camera):
        if tuple(camera.image_size) != size:
            raise ValueError(f"camera: expected image size {size} (the maps'), got {camera.image_size}")
        K = camera.K
    else:
        K = torch.as_tensor(camera)
        if K.dim() == 2:
            K = K.expand(batch, 3, 3)
    if K.shape != (batch, 3, 3):
        raise ValueError(f"camera: expected intrinsics (B={batch}, 3, 3), got {tuple(K.shape)}")
    if not bool(torch.isfinite(K).all()) or not bool((K[:, 0, 0] > 0).all() and (K[:, 1, 1] > 0).all()):
        raise ValueError("camera: expected finite intrinsics with positive focal lengths (pixels)")
    return K, size


class ImageObjective:
    """Samples pixels of a batch of target maps and builds each step's :class:`FitContext`."""

    def __init__(self, normal_map, point_map, mask, point_valid, confidence, K, image_size, config,
                 use_points: bool = True, start=None):
        self.normal_map, self.point_map, self.mask, self.confidence = normal_map, point_map, mask, confidence
        self.point_valid = mask if point_valid is None else point_valid & mask
        self.K, self.size, self.cfg = K, image_size, config
        self.use_points = use_points and point_map is not None
        m = mask.float()[:, None]
        dil = torch.nn.functional.max_pool2d(m, 7, 1, 3)[:, 0] > 0
        ero = -torch.nn.functional.max_pool2d(-m, 7, 1, 3)[:, 0] > 0
        self.band = dil & ~ero
        self.generator = torch.Generator().manual_seed(config.seed)
        self.start = start  # the codes the fit started from (FitContext.start)
        # each pixel's depth at its last render (NaN: not hit yet), where tracing resumes (warm start)
        self.depth_cache = (torch.full(mask.shape[:1] + (mask.shape[1] * mask.shape[2],), float("nan"),
                                       dtype=K.dtype, device=mask.device)
                            if getattr(config, "warm_start", False) else None)

    def _pick(self, region: torch.Tensor, n: int) -> torch.Tensor:
        """``(B, n)`` flat pixel indices drawn from ``region (B, H, W)`` (uniform if empty)."""
        b = region.shape[0]
        w = region.reshape(b, -1).float() + 1e-6
        return torch.multinomial(w, n, replacement=True, generator=self.generator)

    def sample(self) -> torch.Tensor:
        """``(B, M)`` flat pixel indices for one step."""
        n = self.cfg.pixels_per_step
        n_fg, n_band = int(n * 0.7), int(n * 0.2)
        return torch.cat(
            [self._pick(self.mask, n_fg), self._pick(self.band, n_band),
             self._pick(torch.ones_like(self.mask), n - n_fg - n_band)],
            dim=1,
        ).to(self.mask.device)

    def _at(self, x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
        if x is None:
            return None
        h, w = self.size
        flat = x.reshape(x.shape[0], h * w, *x.shape[3:])
        return flat.gather(1, idx[..., None].expand(-1, -1, *flat.shape[2:]) if flat.dim() == 3 else idx)

    def context(self, model: HeadModel, z_id, z_ex, R, t, idx: torch.Tensor, frames: torch.Tensor,
                step: int) -> FitContext:
        """Render the head with codes ``z_id``, ``z_ex`` and pose ``R``, ``t`` at pixels ``idx (B, M)``."""
        w = self.size[1]
        pix = torch.stack([idx % w, idx // w], dim=-1).to(self.K.dtype) + 0.5
        cam = Camera(self.K, R, t, self.size)
        field = model.field(z_id, z_ex)
        canonical = field.canonical if self.use_points and isinstance(field, CanonicalField) else None
        start = None if self.depth_cache is None else self.depth_cache.gather(1, idx)
        out = render(field, cam, canonical, config=self.cfg.render, pixels=pix, start_depth=start)
        if self.depth_cache is not None:
            seen = torch.where(out.mask, out.depth.detach(), torch.full_like(out.depth, float("nan")))
            self.depth_cache.scatter_(1, idx, seen.to(self.depth_cache.dtype))
        targets = PixelTargets(
            normals=self._at(self.normal_map, idx),
            points=self._at(self.point_map, idx) if self.use_points else None,
            mask=self._at(self.mask, idx),
            point_valid=self._at(self.point_valid, idx),
            confidence=self._at(self.confidence, idx),
        )
        return FitContext(model=model, z_id=z_id, z_ex=z_ex, rotation=R, translation=t,
                          scale=torch.ones_like(t[:, 0]), field=field, regularizers=model.code_regularizers(z_id, z_ex),
                          frames=frames, step=step, camera=cam, pixels=pix, render=out, targets=targets,
                          start=self.start)

