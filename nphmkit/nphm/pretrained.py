"""nphmkit's shipped weights (package data): the small NPHM trained on the synthetic head family.

These weights know only nphmkit's synthetic heads (analytic shapes, not real people); real
photos need real checkpoints (``nphmkit.nphm.checkpoint.load_mononphm``).
"""

from __future__ import annotations

from pathlib import Path

from nphmkit.nphm.model import NPHM

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SMALL_NPHM = ASSETS / "small_nphm"


def load_small_nphm(map_location: str = "cpu") -> NPHM:
    """The shipped small NPHM (synthetic family only), in eval mode with frozen weights."""
    if not (SMALL_NPHM / "weights.safetensors").is_file():
        raise FileNotFoundError(
            f"the shipped small NPHM is missing from {SMALL_NPHM}; recreate it with: python examples/train_small_nphm.py"
        )
    return NPHM.load(SMALL_NPHM, map_location).eval().requires_grad_(False)
