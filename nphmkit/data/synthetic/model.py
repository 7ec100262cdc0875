"""The synthetic head family as a :class:`nphmkit.protocols.HeadModel`.

Its codes are its parameters (16 identity, 5 expression; :mod:`nphmkit.data.synthetic.params`),
centred on the family mean and divided by half their range, so that every code runs over about
``[-1, 1]`` and zero codes (:meth:`initial_codes`) are the family mean: the mean of the uniform
identity ranges, and for each expression parameter the mean of what ``sample_expression`` draws
(active with probability 0.6). ``z_ex=None`` is the neutral expression (closed mouth), not the
mean one. Fitting these codes recovers the parameters of a head; no network is involved.
"""

from __future__ import annotations

import torch

from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.head import SyntheticHead
from nphmkit.data.synthetic.landmarks import landmarks as _landmarks
from nphmkit.protocols import check_codes

ACTIVE_PROBABILITY = 0.6
"""Probability that ``sample_expression`` moves an expression parameter away from neutral."""


def _table(params, name: str) -> torch.Tensor:
    return torch.tensor([getattr(p, name) for p in params], dtype=torch.float64)


class SyntheticHeadModel:
    """The synthetic family seen through centred, scaled codes (see the module notes).

    ``id_dim = 16``, ``ex_dim = 5``; fields are :class:`SyntheticHead` batches (with ``canonical``).

    Args:
        coordinate_planes: the fields' layout (:attr:`SyntheticHead.coordinate_planes`). Off by default: a fit
            renders ~1,500 pixels per step, where the ``(B, N, 3)`` points run a fit step faster than the
            planes do (``python benchmarks/bench_fit.py --synthetic``); the planes pay from some thousands
            of points per head up (meshes, dense renders).
    """

    id_dim = SyntheticHead.n_identity
    ex_dim = SyntheticHead.n_expression

    def __init__(self, coordinate_planes: bool = False) -> None:
        if not isinstance(coordinate_planes, bool):
            raise TypeError(f"coordinate_planes: expected a bool, got {type(coordinate_planes).__name__}")
        self.coordinate_planes = coordinate_planes
        lo, hi = _table(P.IDENTITY, "low"), _table(P.IDENTITY, "high")
        self._id_mean, self._id_scale = ((lo + hi) / 2).float(), ((hi - lo) / 2).float()
        lo, hi, neutral = _table(P.EXPRESSION, "low"), _table(P.EXPRESSION, "high"), _table(P.EXPRESSION, "neutral")
        p = ACTIVE_PROBABILITY
        self._ex_mean = ((1 - p) * neutral + p * (lo + hi) / 2).float()
        self._ex_scale = ((hi - lo) / 2).float()

    # ------------------------------------------------------------------ codes <-> parameters
    def to_params(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters ``identity (B, 16)``, ``expression (B, 5)`` of codes (``z_ex=None``: neutral expression)."""
        b = check_codes(self, z_id, z_ex)
        ref = z_id
        identity = self._id_mean.to(ref) + self._id_scale.to(ref) * z_id
        if z_ex is None:
            expression = P.neutral_expression(b).to(ref)
        else:
            expression = self._ex_mean.to(ref) + self._ex_scale.to(ref) * z_ex
        return identity, expression

    def to_codes(self, identity: torch.Tensor, expression: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``z_id (B, 16)``, ``z_ex (B, 5)`` of parameters (``expression=None``: neutral)."""
        if expression is None:
            expression = P.neutral_expression(identity.shape[0]).to(identity)
        z_id = (identity - self._id_mean.to(identity)) / self._id_scale.to(identity)
        z_ex = (expression - self._ex_mean.to(expression)) / self._ex_scale.to(expression)
        return z_id, z_ex

    # ------------------------------------------------------------------ HeadModel
    def field(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None) -> SyntheticHead:
        """The heads of these codes: a field ``(B, N, 3) -> (B, N)`` with ``canonical``; differentiable in the codes."""
        return SyntheticHead(*self.to_params(z_id, z_ex), coordinate_planes=self.coordinate_planes)

    def initial_codes(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero codes: the family mean, ``(batch, 16)`` and ``(batch, 5)``."""
        dtype = dtype or torch.float32
        return (torch.zeros(batch, self.id_dim, device=device, dtype=dtype),
                torch.zeros(batch, self.ex_dim, device=device, dtype=dtype))

    def code_regularizers(self, z_id: torch.Tensor, z_ex: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``id_global``, ``ex``: mean squared norms of the codes; ``symmetry``: mean squared asymmetry code."""
        asym = z_id[:, P.IDENTITY_NAMES.index("asymmetry")]
        return {
            "id_global": (z_id * z_id).sum(-1).mean(),
            "ex": z_id.new_zeros(()) if z_ex is None else (z_ex * z_ex).sum(-1).mean(),
            "symmetry": (asym * asym).mean(),
        }

    def landmarks(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None) -> torch.Tensor:
        """The 7 NoW landmarks ``(B, 7, 3)`` on the surface (NPHM units), differentiable in the codes (first order)."""
        return _landmarks(self.field(z_id, z_ex), differentiable=True)
