"""Pictures of a reconstruction: its render pasted back onto the full photo, and a turntable strip.

Images are channels-last float in [0, 1]: ``(H, W, 3)`` for one picture.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nphmkit.render import Camera, RenderConfig, TraceConfig, default_intrinsics, render
from nphmkit.render.shading import lambert, normal_map_rgb

PICTURE_RENDER = RenderConfig(trace=TraceConfig(max_steps=40), min_step_px=0.5)
"""Renderer settings for pictures: rays grazing a silhouette leave after a few half-pixel steps (about 2x
fewer SDF evaluations than the exact default; features thinner than half a pixel may be missed)."""


def paste(photo: torch.Tensor, crop_rgb: torch.Tensor, crop_mask: torch.Tensor, box, alpha: float = 0.7) -> torch.Tensor:
    """Blend a crop's picture back onto the photo it was cut from.

    Args:
        photo: ``(H, W, 3)`` float, the full photo.
        crop_rgb: ``(n, n, 3)`` float, a picture in the crop's pixels (e.g. the rendered head).
        crop_mask: ``(n, n)`` bool, where ``crop_rgb`` shows something.
        box: the crop's square box ``[x0, y0, x1, y1]`` in photo pixels (``crop.json``'s ``box``).
        alpha: opacity of the crop's picture.

    Returns:
        ``(H, W, 3)`` float: the photo with the picture blended in where the mask is set.
    """
    h, w = photo.shape[:2]
    n = crop_rgb.shape[0]
    x0, y0, x1, y1 = (float(v) for v in box)
    side = x1 - x0
    ys = (torch.arange(h, dtype=photo.dtype) + 0.5 - y0) / side * 2 - 1  # photo pixel centres in the crop's [-1, 1]
    xs = (torch.arange(w, dtype=photo.dtype) + 0.5 - x0) / side * 2 - 1
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)[None]
    src = torch.cat([crop_rgb, crop_mask[..., None].to(photo.dtype)], dim=-1).permute(2, 0, 1)[None]
    if side / n < 1:  # the crop is finer than the photo: average it down first
        src = F.interpolate(src, size=(max(1, round(side)),) * 2, mode="area")
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].permute(1, 2, 0)
    a = alpha * out[..., 3:].clamp(0, 1)
    return photo * (1 - a) + out[..., :3] * a


def head_views(model, z_id: torch.Tensor, z_ex: torch.Tensor | None, views: int = 5, size: int = 96,
               spread: float = 120.0) -> torch.Tensor:
    """A turntable strip of one head in its own space: ``views`` shaded renders from yaw ``-spread/2`` to
    ``+spread/2`` degrees, side by side, ``(size, views * size, 3)`` float (white background).

    ``z_id (1, id_dim)``, ``z_ex (1, ex_dim)`` or None (the neutral head).
    """
    if views < 1 or size < 8:
        raise ValueError(f"views, size: expected at least 1 view of 8 pixels, got {views}, {size}")
    yaws = torch.linspace(-spread / 2, spread / 2, views) if views > 1 else torch.zeros(1)
    rad = torch.deg2rad(yaws)
    target = torch.tensor([0.0, 0.08, 0.0]).expand(views, 3)  # the middle of a head with its neck
    distance = 2.7  # NPHM units: a 1.35-unit wide view at the default focal length, the whole head
    eye = target + distance * torch.stack([torch.sin(rad), torch.zeros_like(rad), torch.cos(rad)], -1)
    K = default_intrinsics((size, size), batch=views)
    camera = Camera.look_at(eye, target, K=K, image_size=(size, size))
    field = model.field(z_id.expand(views, -1), None if z_ex is None else z_ex.expand(views, -1))
    with torch.no_grad():
        out = render(field, camera, config=PICTURE_RENDER, differentiable=False)
    shaded = lambert(out.normals, out.mask, albedo=0.85)
    return torch.cat(list(shaded), dim=1)


def normals_picture(normals: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(H, W, 3)`` camera-frame normals and ``(H, W)`` mask -> ``(H, W, 3)`` the usual normal-map colours."""
    return normal_map_rgb(normals[None], mask[None])[0]


def thumbnail(image: torch.Tensor, longest: int = 256) -> torch.Tensor:
    """``(H, W, 3)`` -> downscaled so the longer side is at most ``longest`` (area averaging)."""
    h, w = image.shape[:2]
    if max(h, w) <= longest:
        return image
    f = longest / max(h, w)
    size = (max(1, math.floor(h * f)), max(1, math.floor(w * f)))
    return F.interpolate(image.permute(2, 0, 1)[None], size=size, mode="area")[0].permute(1, 2, 0)
