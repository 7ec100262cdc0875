"""2D augmentations for training image -> geometry networks, on channels-first tensors.

Everything is drawn from one ``torch.Generator`` per item, so a run that resumes or shards draws
the same augmentations. Geometry targets follow the image where it moves (the horizontal flip
mirrors the maps and negates canonical x and normal x); photometric changes (background, colour,
blur, noise, JPEG) touch the image only.

:func:`jpeg` is JPEG's lossy core in torch (YCbCr, 4:2:0 chroma subsampling, 8x8 DCT, the standard
quantization tables scaled by quality), so the network sees blocking and ringing without an image
library in the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Augment:
    """Probabilities and strengths of the augmentations (:func:`augment_item`)."""

    flip: float = 0.5
    """Probability of a horizontal flip."""
    colour: float = 0.3
    """Strength of brightness / contrast / saturation jitter (0: none)."""
    background: float = 0.8
    """Probability of replacing the background (a random colour, or coloured noise half the time)."""
    blur: float = 0.3
    """Probability of a small Gaussian blur (sigma up to 1.2 px)."""
    noise: float = 0.02
    """Standard deviation of the pixel noise, at most."""
    jpeg: float = 0.3
    """Probability of JPEG compression at a quality drawn from ``jpeg_quality``."""
    jpeg_quality: tuple[int, int] = (30, 90)


# JPEG's example quantization tables (ITU-T T.81, Annex K), row-major over (vertical, horizontal) frequency
_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA = (17, 18, 24, 47) + (99,) * 4 + (18, 21, 26, 66) + (99,) * 4 + (24, 26, 56) + (99,) * 5 + (47, 66) + (99,) * 38


def _tables(quality: int) -> torch.Tensor:
    """``(3, 8, 8)`` quantization steps (Y, Cb, Cr) at ``quality`` 1..100, the libjpeg scaling."""
    q = min(max(int(quality), 1), 100)
    s = 5000 / q if q < 50 else 200 - 2 * q
    t = torch.tensor([_LUMA, _CHROMA, _CHROMA], dtype=torch.float32).view(3, 8, 8)
    return torch.floor((t * s + 50) / 100).clamp_min(1)


def _dct_matrix() -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32)[:, None]
    n = torch.arange(8, dtype=torch.float32)[None]
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] = math.sqrt(1 / 8)
    return d  # orthonormal: d @ d.T = I


_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """``img (3, H, W)`` in [0, 1] after a JPEG round trip at ``quality`` (1..100), ``(3, H, W)`` in [0, 1]."""
    c, h, w = img.shape
    if c != 3:
        raise ValueError(f"img: expected (3, H, W), got {tuple(img.shape)}")
    ph, pw = -h % 16, -w % 16
    x = F.pad(img[None].float(), (0, pw, 0, ph), mode="replicate")[0]
    ycc = torch.einsum("ij,jhw->ihw", _YCBCR, x) * 255
    ycc[0] -= 128
    chroma = F.avg_pool2d(ycc[None, 1:], 2)[0]  # 4:2:0
    d, tables = _dct_matrix(), _tables(quality)
    planes = []
    for i, plane in enumerate([ycc[0], chroma[0], chroma[1]]):
        hh, ww = plane.shape
        blocks = plane.reshape(hh // 8, 8, ww // 8, 8).permute(0, 2, 1, 3)  # (by, bx, 8, 8)
        coef = d @ blocks @ d.T
        coef = torch.round(coef / tables[i]) * tables[i]
        planes.append((d.T @ coef @ d).permute(0, 2, 1, 3).reshape(hh, ww))
    up = F.interpolate(torch.stack(planes[1:])[None], scale_factor=2, mode="bilinear", align_corners=False)[0]
    ycc = torch.cat([planes[0][None] + 128, up]) / 255
    rgb = torch.einsum("ij,jhw->ihw", torch.linalg.inv(_YCBCR), ycc)
    return rgb[:, :h, :w].clamp(0, 1).to(img.dtype)


def _gaussian_taps(sigma: float, dtype: torch.dtype) -> torch.Tensor:
    """The ``2r + 1`` normalised taps of a Gaussian of ``sigma`` pixels, ``r = ceil(2 sigma)`` (at least 1)."""
    r = max(1, math.ceil(2 * sigma))
    x = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_reference(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(3, H, W)`` blurred by a separable Gaussian of ``sigma`` pixels: two depthwise convolutions (replicated
    edges). The reference of :func:`_blur`."""
    k = _gaussian_taps(sigma, img.dtype)
    r, c = k.numel() // 2, img.shape[0]
    out = F.conv2d(F.pad(img[None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out[0]


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(3, H, W)`` blurred as :func:`_blur_reference`, by shifted slices of the padded image summed with the taps'
    weights (a depthwise convolution with a 3-7 tap kernel costs several times more on the CPU)."""
    taps = _gaussian_taps(sigma, img.dtype).tolist()
    r = len(taps) // 2
    h, w = img.shape[-2:]
    padded = F.pad(img[None], (r, r, r, r), mode="replicate")[0]  # (C, H + 2r, W + 2r)
    rows = padded[..., 0:w] * taps[0]  # along x first, as the reference
    for i in range(1, 2 * r + 1):
        rows.add_(padded[..., i : i + w], alpha=taps[i])
    out = rows[..., 0:h, :] * taps[0]
    for i in range(1, 2 * r + 1):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def augment_item(rgb, normals, canonical, mask, cfg: Augment, g: torch.Generator):
    """Augment one channels-first item: ``rgb (3, H, W)``, ``normals``, ``canonical (3, H, W)``, ``mask (H, W)``."""
    u = lambda: float(torch.rand((), generator=g))  # noqa: E731
    if u() < cfg.flip:
        rgb, normals, canonical, mask = rgb.flip(-1), normals.flip(-1), canonical.flip(-1), mask.flip(-1)
        sign = torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        normals, canonical = normals * sign, canonical * sign
    if u() < cfg.background:
        if u() < 0.5:
            bg = torch.rand(3, 1, 1, generator=g).expand_as(rgb)
        else:  # coloured noise at a random scale: clutter
            s = int(4 + 28 * u())
            bg = F.interpolate(torch.rand(1, 3, s, s, generator=g), size=rgb.shape[-2:], mode="bilinear",
                               align_corners=False)[0]
        rgb = torch.where(mask[None], rgb, bg)
    if cfg.colour > 0:
        a = cfg.colour
        gray = rgb.mean(0, keepdim=True)
        rgb = torch.lerp(gray, rgb, 1 + a * (2 * u() - 1))  # saturation
        rgb = (rgb - rgb.mean()) * (1 + a * (2 * u() - 1)) + rgb.mean()  # contrast
        rgb = rgb * (1 + a * (2 * u() - 1)) + 0.1 * a * (2 * torch.rand(3, 1, 1, generator=g) - 1)  # brightness, tint
    if u() < cfg.blur:
        rgb = _blur(rgb, 0.3 + 0.9 * u())
    if cfg.noise > 0:
        rgb = rgb + cfg.noise * u() * torch.randn(rgb.shape, generator=g)
    rgb = rgb.clamp(0, 1)
    if u() < cfg.jpeg:
        lo, hi = cfg.jpeg_quality
        rgb = jpeg(rgb, round(lo + (hi - lo) * u()))
    return rgb, normals, canonical, mask
