"""The code layout the regularizers need, without importing any head model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeLayout:
    """How an identity code splits: ``[global (glob) | (n_local) x local (loc)]``.

    The first ``2 * n_pairs`` local slots are mirrored pairs (even index at x < 0). Build it
    from any config that has these sizes, e.g. ``CodeLayout.of(NPHMConfig.mononphm())``; a new
    head model supplies its own.
    """

    glob: int
    loc: int
    n_local: int
    n_pairs: int = 0

    @classmethod
    def of(cls, config) -> "CodeLayout":
        """From an object with ``lat_dim_glob``, ``lat_dim_loc``, ``n_anchors``, ``n_symmetric_pairs``."""
        return cls(config.lat_dim_glob, config.lat_dim_loc, config.n_anchors + 1, config.n_symmetric_pairs)

    @property
    def id_dim(self) -> int:
        return self.glob + self.n_local * self.loc
