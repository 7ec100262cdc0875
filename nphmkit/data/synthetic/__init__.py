"""The synthetic head family: analytic head SDFs with identity and expression parameters.

``SyntheticHead`` is a batch of heads (a field with ``canonical``); ``SyntheticHeadModel`` is the
family as a :class:`nphmkit.protocols.HeadModel` (codes = centred, scaled parameters).
"""

from nphmkit.data.synthetic import params
from nphmkit.data.synthetic.head import BOUNDS, SyntheticHead
from nphmkit.data.synthetic.model import SyntheticHeadModel

__all__ = ["BOUNDS", "SyntheticHead", "SyntheticHeadModel", "params"]
