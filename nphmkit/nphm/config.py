"""Sizes of an NPHM decoder (MonoNPHM geometry: identity ensemble + backward deformation)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NPHMConfig:
    """Every size of the decoder; code reads sizes from here, never from literals.

    The latent-code layout (``z_id = [global | (n_anchors + 1) x local]``, ``z_ex``) is the
    same for every preset unless a field here changes it; presets shrink MLP widths/depths.
    """

    n_anchors: int = 65
    """Anchors predicted from the global code (MonoNPHM: 65)."""
    n_symmetric_pairs: int = 30
    """Mirrored anchor pairs at the start of the anchor list (2i at x < 0, 2i + 1 at x > 0)."""
    lat_dim_glob: int = 64
    """Global identity code size."""
    lat_dim_loc: int = 32
    """Local identity code size per anchor (and for the anchor-free background MLP)."""
    lat_dim_ex: int = 100
    """Expression code size."""
    n_neighbors: int = 12
    """Nearest anchors blended per query point (the background MLP is always added)."""
    sigma_neighbor: int = 8
    """The Gaussian width is the distance to this nearest anchor divided by ``blend_std``."""
    blend_std: float = 3.75
    background_distance: float = 0.75
    """Fixed distance used for the background MLP's blending weight (NPHM units)."""
    id_hidden: int = 200
    """Width of every hidden layer of the local identity MLPs."""
    id_layers: int = 4
    """Number of hidden layers of a local identity MLP (Linear + Softplus each)."""
    pos_mlp_hidden: int = 64
    """Width of the anchor-offset MLP (global code -> anchor offsets)."""
    ex_hidden: int = 400
    """Width of the expression (deformation) MLP."""
    ex_layers: int = 6
    """Hidden layers of the expression MLP; the input is concatenated again before layer ex_layers // 2."""
    ex_compress_dim: int = 16
    """Size of the per-sample identity summary fed to the expression MLP."""
    n_hyper: int = 2
    """Hyper (ambient) coordinates predicted by the deformation and fed to the identity SDF."""
    softplus_beta: float = 100.0
    chunk_size: int = 4096
    """Points per chunk in queries that keep no autograd graph (bounds memory)."""

    # ---- derived sizes -------------------------------------------------------------
    @property
    def id_dim(self) -> int:
        """Length of ``z_id``: global + (n_anchors + 1) local codes (2176 for MonoNPHM)."""
        return self.lat_dim_glob + (self.n_anchors + 1) * self.lat_dim_loc

    @property
    def n_types(self) -> int:
        """Distinct local MLPs: one per pair, one per middle anchor, one background (36)."""
        return self.n_anchors - self.n_symmetric_pairs + 1

    @property
    def query_dim(self) -> int:
        """Canonical query size: xyz + hyper coordinates (5)."""
        return 3 + self.n_hyper

    @property
    def id_in(self) -> int:
        """Input size of a local identity MLP: global + local + query offset (101)."""
        return self.lat_dim_glob + self.lat_dim_loc + self.query_dim

    @property
    def ex_in(self) -> int:
        """Input size of the expression MLP: xyz + compressed identity + z_ex (119)."""
        return 3 + self.ex_compress_dim + self.lat_dim_ex

    @property
    def ex_out(self) -> int:
        """Output size of the expression MLP: offset xyz + hyper coordinates (5)."""
        return 3 + self.n_hyper

    @property
    def ex_skip(self) -> int:
        """Index of the expression layer whose input is ``cat(hidden, input) / sqrt(2)``."""
        return self.ex_layers // 2

    @property
    def compressor_in(self) -> int:
        """Input size of the identity compressor: z_id + flattened anchors (2371)."""
        return self.id_dim + 3 * self.n_anchors

    def flops_per_point(self) -> dict[str, float]:
        """FLOPs per query point as the official model counts them (1 MAC = 2 FLOP).

        Returns a dict with ``identity``, ``expression`` and ``total`` (about 3.65, 1.79 and
        5.4 MFLOP at the official sizes).
        """
        h = self.id_hidden
        per_mlp = self.id_in * h + (self.id_layers - 1) * h * h + h
        identity = 2.0 * (self.n_neighbors + 1) * per_mlp
        e = self.ex_hidden
        ex = self.ex_in * e + (self.ex_layers - 2) * e * e + (e + self.ex_in) * e + e * self.ex_out
        expression = 2.0 * ex
        return {"identity": identity, "expression": expression, "total": identity + expression}

    # ---- presets ---------------------------------------------------------------------
    @classmethod
    def mononphm(cls) -> "NPHMConfig":
        """The official MonoNPHM sizes (checkpoint ``checkpoint_epoch_2500.tar``)."""
        return cls()

    @classmethod
    def small(cls) -> "NPHMConfig":
        """A CPU-trainable preset: same code layout and anchors, narrower and shallower MLPs."""
        return cls(id_hidden=64, id_layers=3, ex_hidden=128, ex_layers=4)

    @classmethod
    def tiny(cls) -> "NPHMConfig":
        """The smallest preset, for unit tests."""
        return cls(id_hidden=16, id_layers=2, pos_mlp_hidden=16, ex_hidden=24, ex_layers=4)

    # ---- (de)serialization -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NPHMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"NPHMConfig: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def __post_init__(self) -> None:
        if self.n_anchors < 2 * self.n_symmetric_pairs:
            raise ValueError(
                f"NPHMConfig: n_anchors={self.n_anchors} must be >= 2 * n_symmetric_pairs="
                f"{2 * self.n_symmetric_pairs}"
            )
        if not 1 <= self.sigma_neighbor <= self.n_neighbors <= self.n_anchors:
            raise ValueError(
                "NPHMConfig: need 1 <= sigma_neighbor <= n_neighbors <= n_anchors, got "
                f"{self.sigma_neighbor}, {self.n_neighbors}, {self.n_anchors}"
            )
        if self.id_layers < 1 or self.ex_layers < 2:
            raise ValueError(
                f"NPHMConfig: need id_layers >= 1 and ex_layers >= 2, got {self.id_layers}, {self.ex_layers}"
            )
        if self.chunk_size < 1:
            raise ValueError(f"NPHMConfig: chunk_size must be >= 1, got {self.chunk_size}")
