"""Moved to :mod:`nphmkit.pretrained` (one module for all shipped weights); these names keep working."""

from nphmkit.pretrained import ASSETS, SMALL_NPHM, load_small_nphm

__all__ = ["ASSETS", "SMALL_NPHM", "load_small_nphm"]
