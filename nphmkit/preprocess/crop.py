"""Square face crops as Pixel3DMM frames them, and the crop's camera.

A face box ``[x0, y0, x1, y1]`` (pixels of the original image, continuous coordinates: pixel
``(i, j)`` covers ``[j, j + 1] x [i, i + 1]``) becomes a square box around its centre, ``enlarge``
(x1.42) times its longer side; the crop resamples that box to ``size x size`` pixels. A pixel
``x`` of the original maps to ``(x - (bx0, by0)) * size / side`` in the crop, so the crop's
intrinsics are the original's scaled by ``size / side`` with the principal point shifted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nphmkit._checks import check_tensor

ENLARGE = 1.42
"""Pixel3DMM's enlargement of the face box (docs/contracts.md "Crops")."""


@dataclass(frozen=True)
class Crop:
    """Square crops of a batch of images.

    Attributes:
        images: ``(B, size, size, C)`` the crops (zeros where the box leaves the image).
        box: ``(B, 4)`` the square boxes ``[x0, y0, x1, y1]`` in original pixels.
        transform: ``(B, 3, 3)`` original pixel -> crop pixel (homogeneous, a scale and a shift).
        K: ``(B, 3, 3)`` intrinsics of the crop, or None if the original's were not given.
        image_size: ``(H, W)`` of the originals.
    """

    images: torch.Tensor
    box: torch.Tensor
    transform: torch.Tensor
    K: torch.Tensor | None
    image_size: tuple[int, int]


def square_box(box: torch.Tensor, enlarge: float = ENLARGE) -> torch.Tensor:
    """Face boxes ``(B, 4)`` ``[x0, y0, x1, y1]`` -> square boxes ``(B, 4)``, same centre, side ``enlarge x`` the longer side."""
    check_tensor("box", box, ("B", 4))
    if not enlarge > 0:
        raise ValueError(f"enlarge: expected a positive factor, got {enlarge}")
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    if bool((w <= 0).any() or (h <= 0).any()):
        raise ValueError(f"box: expected x1 > x0 and y1 > y0 in every row, got {box.tolist()}")
    cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    half = torch.maximum(w, h) * enlarge / 2
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)


def crop_transform(box: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, 3)`` original pixel -> crop pixel for square boxes ``(B, 4)`` resampled to ``size`` pixels."""
    scale = size / (box[:, 2] - box[:, 0])
    T = torch.zeros(box.shape[0], 3, 3, dtype=box.dtype, device=box.device)
    T[:, 0, 0] = T[:, 1, 1] = scale
    T[:, 0, 2] = -box[:, 0] * scale
    T[:, 1, 2] = -box[:, 1] * scale
    T[:, 2, 2] = 1
    return T


def crop(
    images: torch.Tensor, box: torch.Tensor, size: int, K: torch.Tensor | None = None, square: bool = True,
    enlarge: float = ENLARGE,
) -> Crop:
    """Crop ``images (B, H, W, C)`` (float, channels-last) to ``size x size`` around face boxes ``(B, 4)``.

    Args:
        images: ``(B, H, W, C)`` float images.
        box: ``(B, 4)`` face boxes ``[x0, y0, x1, y1]`` in pixels; with ``square=True`` (default) made
            square and enlarged by ``enlarge`` first (:func:`square_box`), else used as given (square).
        size: output width and height in pixels.
        K: ``(B, 3, 3)`` or ``(3, 3)`` intrinsics of the originals, for the crop's; or None.

    Downscaling averages ``k x k`` bilinear samples per output pixel (``k = ceil(side / size)``, at
    most 8), so large boxes do not alias.
    """
    check_tensor("images", images, ("B", "H", "W", "C"))
    b, h, w, _ = images.shape
    check_tensor("box", box, (b, 4))
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected a positive int (pixels), got {size!r}")
    box = box.to(images.dtype)
    sq = square_box(box, enlarge) if square else box
    if not square and not torch.allclose(sq[:, 2] - sq[:, 0], sq[:, 3] - sq[:, 1]):
        raise ValueError(f"box: with square=False the boxes must be square, got {box.tolist()}")
    side = sq[:, 2] - sq[:, 0]
    k = int(min(8, max(1, math.ceil(float(side.max()) / size))))
    n = size * k
    steps = (torch.arange(n, dtype=images.dtype, device=images.device) + 0.5) / n  # (n,) fractions of the side
    xs = sq[:, 0:1] + steps[None] * side[:, None]  # (B, n) original x of each sample
    ys = sq[:, 1:2] + steps[None] * side[:, None]
    grid = torch.stack([(2 * xs / w - 1)[:, None, :].expand(b, n, n), (2 * ys / h - 1)[:, :, None].expand(b, n, n)], -1)
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if k > 1:
        out = F.avg_pool2d(out, k)
    T = crop_transform(sq, size)
    K_crop = None
    if K is not None:
        K = K.to(images.dtype).expand(b, 3, 3) if K.dim() == 2 else K.to(images.dtype)
        check_tensor("K", K, (b, 3, 3))
        K_crop = T @ K
    return Crop(out.permute(0, 2, 3, 1), sq, T, K_crop, (h, w))
