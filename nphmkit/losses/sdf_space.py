"""SDF-space loss between two code sets (the 3D supervision of Pix2NPHM), and its point sampler.

``sdf(x; z_pred)`` is compared with ``sdf(x; z_gt)`` at points near the ground-truth surface and
in space, truncated at ``truncation`` (far values carry no shape information) and weighted up
near the surface. Fields are callables ``(B, N, 3) -> (B, N)``, so the two code sets may belong
to any model; pass canonical (identity) fields to compare in canonical space.
"""

from __future__ import annotations

import torch

from nphmkit._checks import check_tensor
from nphmkit.protocols import Field


def sample_sdf_space_points(
    surface_points: torch.Tensor,
    n_near: int,
    n_space: int,
    sigma: float = 0.01,
    bounds=((-0.55, -0.5, -0.95), (0.55, 0.75, 0.4)),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Points ``(B, n_near + n_space, 3)``: surface points jittered by ``N(0, sigma^2)`` plus uniform box points.

    ``surface_points (B, M, 3)`` of the ground-truth surface (e.g. mesh samples); NPHM units.
    """
    check_tensor("surface_points", surface_points, ("B", "M", 3))
    if n_near < 0 or n_space < 0 or (n_near > 0 and surface_points.shape[1] == 0):
        raise ValueError(f"n_near, n_space: expected non-negative counts (and surface points for n_near > 0), "
                         f"got n_near={n_near}, n_space={n_space} with {surface_points.shape[1]} surface points")
    b, m, _ = surface_points.shape
    idx = torch.randint(0, m, (b, n_near), generator=generator, device="cpu").to(surface_points.device)
    near = surface_points.gather(1, idx[..., None].expand(-1, -1, 3))
    near = near + sigma * torch.randn(near.shape, generator=generator, device="cpu").to(near)
    lo = torch.tensor(bounds[0], dtype=near.dtype, device=near.device)
    hi = torch.tensor(bounds[1], dtype=near.dtype, device=near.device)
    space = lo + (hi - lo) * torch.rand(b, n_space, 3, generator=generator, device="cpu").to(near)
    return torch.cat([near, space], dim=1)


def sdf_space_loss(
    field_pred: Field,
    field_gt: Field,
    points: torch.Tensor,
    truncation: float = 0.05,
    near_weight: float = 4.0,
    near_sigma: float = 0.01,
    gt_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Truncated, surface-weighted L1 between two fields at ``points (B, N, 3)``.

    ``loss = mean w * |clip(f_pred) - clip(f_gt)|`` with ``clip`` to ``[-truncation, truncation]``
    and ``w = 1 + near_weight * exp(-|f_gt| / near_sigma)``. ``gt_values (B, N)`` may be passed
    to reuse ground-truth values (the ground-truth field is then not called). Gradients flow
    into ``field_pred`` only.
    """
    check_tensor("points", points, ("B", "N", 3))
    if gt_values is not None:
        check_tensor("gt_values", gt_values, tuple(points.shape[:2]))
    with torch.no_grad():
        gt = field_gt(points) if gt_values is None else gt_values
    pred = field_pred(points)
    if pred.shape != points.shape[:2]:
        raise ValueError(f"field_pred: expected values of shape {tuple(points.shape[:2])} (a field returns (B, N)), "
                         f"got {tuple(pred.shape)}")
    w = 1.0 + near_weight * torch.exp(-gt.abs() / near_sigma)
    diff = (pred.clamp(-truncation, truncation) - gt.clamp(-truncation, truncation)).abs()
    return (w * diff).sum() / w.sum()
