"""The synthetic head family: analytic head SDFs with identity and expression parameters."""

from nphmkit.data.synthetic import params
from nphmkit.data.synthetic.head import BOUNDS, SyntheticHead

__all__ = ["BOUNDS", "SyntheticHead", "params"]
