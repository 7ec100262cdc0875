"""Anchors (65, MonoNPHM order) and the 7 NoW landmarks of synthetic heads.

Each point is placed next to the part it names, then projected onto the surface with a few
Newton steps along the SDF gradient, so it lies on the head (|sdf| < 1e-5).

Anchor order as in MonoNPHM: 30 mirrored pairs (index 2i at x < 0, the subject's right;
2i + 1 at x > 0), then 5 anchors on the mid-plane. :data:`ANCHOR_NAMES` names them.
Landmark order (NoW): right eye outer, right eye inner, left eye inner, left eye outer, nose
tip, right mouth corner, left mouth corner (right = x < 0).
"""

from __future__ import annotations

import torch

from nphmkit.data.synthetic.head import SyntheticHead, _vec
from nphmkit.protocols import NOW_LANDMARKS
from nphmkit.transforms import rotation_about

PAIR_NAMES = (
    "eye_outer", "eye_inner", "upper_lid", "lower_lid", "brow_inner", "brow_outer", "nose_wing", "nose_side",
    "mouth_corner", "upper_lip", "lower_lip", "cheekbone", "cheek", "nasolabial", "infraorbital", "chin_side",
    "jaw_mid", "jaw_angle", "ear_center", "ear_top", "ear_lobe", "behind_ear", "temple", "forehead_side",
    "crown_side", "back_upper", "back_lower", "neck_front", "neck_back", "head_side",
)
MIDDLE_NAMES = ("nose_tip", "chin", "forehead", "upper_lip_center", "back_of_head")
ANCHOR_NAMES = tuple(f"{side}_{n}" for n in PAIR_NAMES for side in ("right", "left")) + MIDDLE_NAMES
LANDMARK_NAMES = NOW_LANDMARKS


def _left_templates(head: SyntheticHead, lay: dict) -> list[torch.Tensor]:
    """Guesses for the 30 left-side (x > 0) points, ``(B, 3)`` each, in PAIR_NAMES order."""
    b = head.batch
    one = lay["one"]
    v = lambda x, y, z: _vec(b, one, x, y, z)  # noqa: E731
    eye, ear = lay["eye"], lay["ear"]
    return [
        eye + v(0.034, 0.0, 0.0),
        eye + v(-0.034, 0.0, 0.005),
        eye + v(0.0, 0.034, 0.012),
        eye + v(0.0, -0.03, 0.015),
        lay["brow_in"],
        lay["brow_out"],
        lay["ala"] + v(0.015, 0.0, 0.0),
        lay["bridge"] + v(0.025, -0.04, 0.0),
        lay["ul_corner"] + v(0.0, -0.004, 0.03),
        v(0.03, -0.128, 0.22),
        v(0.03, -0.158, 0.21),
        lay["cheekbone"] + v(0.03, 0.0, 0.06),
        lay["cheek"] + v(0.0, 0.0, 0.08),
        v(0.07, -0.08, 0.18),
        v(0.08, 0.0, 0.17),
        v(0.05, -0.34, 0.14),
        v(0.13, -0.28, 0.05),
        lay["gonion"] + v(0.06, -0.02, 0.0),
        ear + v(0.03, 0.0, 0.0),
        ear + v(0.02, 0.07, 0.0),
        ear + v(0.02, -0.07, 0.01),
        ear + v(0.0, 0.0, -0.1),
        v(0.25, 0.15, 0.02),
        v(0.12, 0.3, 0.15),
        v(0.15, 0.42, -0.1),
        v(0.15, 0.3, -0.45),
        v(0.15, 0.0, -0.45),
        v(0.1, -0.4, -0.05),
        v(0.1, -0.4, -0.25),
        v(0.3, 0.15, -0.2),
    ]


def project_to_surface(sdf_fn, points: torch.Tensor, steps: int = 12, max_step: float = 0.01) -> torch.Tensor:
    """Damped Newton steps ``x <- x - f(x) grad f / |grad f|^2`` on points ``(B, N, 3)`` (no graph kept).

    Each step moves at most ``max_step`` so a point stays near the part it was placed by.
    """
    x = points.detach()
    for _ in range(steps):
        with torch.enable_grad():
            xg = x.requires_grad_(True)
            f = sdf_fn(xg)
            (g,) = torch.autograd.grad(f.sum(), xg)
        step = (f / (g * g).sum(-1).clamp_min(1e-8))[..., None] * g
        length = step.norm(dim=-1, keepdim=True)
        x = (x - step * (max_step / length.clamp_min(max_step))).detach()
    return x


def anchors(head: SyntheticHead) -> torch.Tensor:
    """The 65 anchors ``(B, 65, 3)`` on the neutral surface, MonoNPHM order (see module doc)."""
    neutral = head.neutral()
    lay = neutral._layout()
    mirror = lay["one"].new_tensor([-1.0, 1.0, 1.0])
    left = _left_templates(neutral, lay)
    pairs = [q for p in left for q in (p * mirror, p)]
    b, one = head.batch, lay["one"]
    v = lambda x, y, z: _vec(b, one, x, y, z)  # noqa: E731
    middle = [
        lay["tip"] + v(0.0, 0.0, 0.03),
        lay["chin"] + v(0.0, -0.01, 0.06),
        v(0.0, 0.28, 0.2),
        v(0.0, -0.12, 0.24),
        v(0.0, 0.15, -0.55),
    ]
    guess = torch.stack(pairs + middle, dim=1)
    return project_to_surface(neutral.sdf, guess)


def landmarks(head: SyntheticHead, differentiable: bool = False) -> torch.Tensor:
    """The 7 NoW landmarks ``(B, 7, 3)`` on the posed surface (mouth corners follow the expression).

    ``differentiable``: keep a graph to the head's parameters (first order: the placement of each
    guess, then one Newton step along the surface normal with the gradient held fixed).
    """
    guess = _landmark_guess(head)
    x = project_to_surface(head.sdf, guess)
    if not differentiable:
        return x
    x = guess + (x - guess).detach()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(head.sdf(xg).sum(), xg)
    return x - head.sdf(x)[..., None] * g / (g * g).sum(-1, keepdim=True).clamp_min(1e-12)


def _landmark_guess(head: SyntheticHead) -> torch.Tensor:
    """Where the landmarks sit before projection onto the surface, ``(B, 7, 3)``."""
    lay = head._layout()
    one = lay["one"]
    mirror = one.new_tensor([-1.0, 1.0, 1.0])
    eye = lay["eye"]
    b = head.batch
    v = lambda x, y, z: _vec(b, one, x, y, z)  # noqa: E731
    outer, inner = eye + v(0.034, 0.0, 0.0), eye + v(-0.034, 0.0, 0.005)
    corners = []
    for s in (-1.0, 1.0):
        m = (lambda x: x) if s > 0 else (lambda x: x * mirror)
        turn = rotation_about(one.new_tensor([0.0, 0.0, 1.0]), s * lay["corner_angle"])
        joint = m(lay["ul_c"])
        corner = torch.einsum("bij,bj->bi", turn, m(lay["ul_corner"]) - joint) + joint + lay["push"]
        corners.append(corner + v(0.0, -0.004, 0.03))
    return torch.stack([outer * mirror, inner * mirror, inner, outer, lay["tip"] + v(0.0, 0.0, 0.03), *corners], dim=1)
