"""Neural parametric head model: MonoNPHM's identity SDF and expression deformation."""

from nphmkit.nphm.anchors import default_mean_anchors
from nphmkit.nphm.config import NPHMConfig
from nphmkit.nphm.layout import mirror_id_code, split_id_code
from nphmkit.nphm.model import NPHM

__all__ = ["NPHM", "NPHMConfig", "default_mean_anchors", "mirror_id_code", "split_id_code"]
