"""Neural parametric head model: MonoNPHM's identity SDF and expression deformation.

``NPHM`` is a :class:`nphmkit.protocols.HeadModel`. Load official weights with
:func:`load_mononphm`, nphmkit's weight folders with ``NPHM.load(dir)``, the shipped small
model (synthetic family only) with :func:`load_small_nphm`.
"""

from nphmkit.nphm.anchors import default_mean_anchors
from nphmkit.nphm.checkpoint import load_mononphm
from nphmkit.nphm.config import NPHMConfig
from nphmkit.nphm.field import NPHMField
from nphmkit.nphm.layout import mirror_id_code, split_id_code
from nphmkit.nphm.model import NPHM
from nphmkit.pretrained import load_small_nphm

__all__ = [
    "NPHM", "NPHMConfig", "NPHMField", "default_mean_anchors", "load_mononphm", "load_small_nphm", "mirror_id_code",
    "split_id_code",
]
