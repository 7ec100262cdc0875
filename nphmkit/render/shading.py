"""Pictures from render maps: Lambertian shading, normal- and canonical-map colours, overlays.

All images are channels-last ``(B, H, W, 3)`` float in [0, 1].
"""

from __future__ import annotations

import torch


def _bcast(value, like: torch.Tensor) -> torch.Tensor:
    """A colour given as a float, ``(3,)``, ``(B, 3)`` or ``(B, H, W, 3)`` -> broadcastable to ``like``."""
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        v = v.expand(3)
    if v.dim() == 1:
        return v.view(1, 1, 1, -1)
    if v.dim() == 2:
        return v[:, None, None, :]
    return v


def lambert(
    normals: torch.Tensor,
    mask: torch.Tensor,
    albedo=0.8,
    light_dir=(0.3, -0.5, -1.0),
    ambient: float = 0.3,
    background=1.0,
) -> torch.Tensor:
    """Lambertian shading of camera-frame ``normals (B, H, W, 3)``.

    ``light_dir``: direction towards the light in the camera frame (``(3,)`` or ``(B, 3)``; the
    default is above-left of the camera). ``albedo``/``background``: a float, ``(3,)``, ``(B, 3)``
    or ``(B, H, W, 3)``.
    """
    light = torch.nn.functional.normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device), dim=-1)
    light = light.view(1, 1, 1, 3) if light.dim() == 1 else light[:, None, None, :]
    diffuse = (normals * light).sum(-1, keepdim=True).clamp_min(0.0)
    shade = _bcast(albedo, normals) * (ambient + (1.0 - ambient) * diffuse)
    return torch.where(mask[..., None], shade.clamp(0, 1), _bcast(background, normals).expand_as(shade))


def normal_map_rgb(normals: torch.Tensor, mask: torch.Tensor, background=1.0) -> torch.Tensor:
    """The usual normal-map colours: ``rgb = (n_x, -n_y, -n_z) / 2 + 1/2`` (camera frame; frontal = blue)."""
    rgb = (normals * normals.new_tensor([1.0, -1.0, -1.0]) + 1.0) / 2.0
    return torch.where(mask[..., None], rgb.clamp(0, 1), _bcast(background, normals).expand_as(rgb))


def canonical_map_rgb(canonical: torch.Tensor, mask: torch.Tensor, bounds=((-0.45, -0.5, -0.62), (0.45, 0.62, 0.42)),
                      background=1.0) -> torch.Tensor:
    """Canonical coordinates ``(B, H, W, 3)`` mapped from ``bounds`` (min, max xyz) to RGB."""
    lo = canonical.new_tensor(bounds[0])
    hi = canonical.new_tensor(bounds[1])
    rgb = ((canonical - lo) / (hi - lo)).clamp(0, 1)
    return torch.where(mask[..., None], rgb, _bcast(background, canonical).expand_as(rgb))


def overlay(image: torch.Tensor, render_rgb: torch.Tensor, mask: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """Blend ``render_rgb`` over ``image`` where ``mask`` is set (all ``(B, H, W, 3)``)."""
    blend = (1 - alpha) * image + alpha * render_rgb
    return torch.where(mask[..., None], blend, image)
