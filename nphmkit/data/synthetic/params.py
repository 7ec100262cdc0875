"""Identity and expression parameters of the synthetic head family, their ranges and sampling.

Parameters are plain tensors: identity ``(B, n_identity)``, expression ``(B, n_expression)``,
columns in the order of ``IDENTITY`` / ``EXPRESSION``. Sampling is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Param:
    name: str
    neutral: float
    low: float
    high: float
    doc: str


IDENTITY: tuple[Param, ...] = (
    Param("head_width", 1.0, 0.88, 1.12, "cranium width (temporal spheres' spacing and size)"),
    Param("head_length", 1.0, 0.88, 1.12, "cranium depth front to back"),
    Param("head_height", 1.0, 0.9, 1.1, "crown height"),
    Param("nose_length", 1.0, 0.7, 1.35, "how far the nose tip stands out"),
    Param("nose_width", 1.0, 0.75, 1.3, "width of the nose wings"),
    Param("nose_bridge", 1.0, 0.7, 1.3, "thickness of the nose bridge"),
    Param("jaw_width", 1.0, 0.85, 1.15, "spacing of the jaw angles"),
    Param("chin", 1.0, 0.75, 1.3, "chin size and protrusion"),
    Param("cheeks", 1.0, 0.6, 1.4, "cheek fullness"),
    Param("ear_size", 1.0, 0.8, 1.2, "ear radius"),
    Param("ear_angle", 0.0, -0.35, 0.35, "how far the ears stand out (radians)"),
    Param("brow", 1.0, 0.6, 1.4, "brow-ridge prominence"),
    Param("eye_spacing", 1.0, 0.9, 1.1, "distance between the eyes"),
    Param("lips", 1.0, 0.7, 1.3, "lip fullness"),
    Param("neck", 1.0, 0.85, 1.15, "neck thickness"),
    Param("asymmetry", 0.0, -1.0, 1.0, "a small left-right asymmetry (nose tip, one ear, one brow)"),
)

EXPRESSION: tuple[Param, ...] = (
    Param("jaw_open", 0.0, 0.0, 1.0, "jaw rotation, 0 closed .. 1 wide open (0.32 rad)"),
    Param("smile", 0.0, -0.4, 1.0, "mouth corners up (negative: down) and cheeks raised"),
    Param("brow_raise", 0.0, -0.3, 1.0, "brows up (negative: frown)"),
    Param("eye_closure", 0.0, 0.0, 1.0, "upper eyelids, 0 open .. 1 closed"),
    Param("pucker", 0.0, 0.0, 1.0, "lips pushed forward"),
)

IDENTITY_NAMES = tuple(p.name for p in IDENTITY)
EXPRESSION_NAMES = tuple(p.name for p in EXPRESSION)


def _table(params: tuple[Param, ...], field: str) -> torch.Tensor:
    return torch.tensor([getattr(p, field) for p in params], dtype=torch.float32)


def neutral_identity(batch: int = 1) -> torch.Tensor:
    """The average head, ``(batch, n_identity)``."""
    return _table(IDENTITY, "neutral").expand(batch, -1).clone()


def neutral_expression(batch: int = 1) -> torch.Tensor:
    """The closed-mouth neutral expression, ``(batch, n_expression)``."""
    return _table(EXPRESSION, "neutral").expand(batch, -1).clone()


def sample_identity(batch: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    """Random identities ``(batch, n_identity)``, uniform in the ranges (shrunk towards neutral by ``spread``)."""
    return _sample(IDENTITY, batch, seed, spread)


def sample_expression(batch: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    """Random expressions ``(batch, n_expression)``; each is active with probability 0.6."""
    g = torch.Generator().manual_seed(seed + 7919)
    values = _sample(EXPRESSION, batch, seed, spread)
    active = torch.rand(batch, len(EXPRESSION), generator=g) < 0.6
    return torch.where(active, values, neutral_expression(batch))


def _sample(params: tuple[Param, ...], batch: int, seed: int, spread: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, len(params), generator=g)
    low, high, mid = _table(params, "low"), _table(params, "high"), _table(params, "neutral")
    values = low + u * (high - low)
    return mid + spread * (values - mid)
