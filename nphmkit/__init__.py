"""nphmkit: neural parametric head models and Pix2NPHM, in composable PyTorch parts.

``import nphmkit`` needs only the required dependencies (torch, numpy, scikit-image,
safetensors, einops, tqdm); optional extras are imported on first use. The contracts every part
is written against (fields, head models) are in :mod:`nphmkit.protocols`.
"""

from nphmkit._backend import set_default_backend
from nphmkit.nphm import NPHM, NPHMConfig
from nphmkit.protocols import CanonicalField, Field, GradientField, HeadModel

__version__ = "0.1.0"
__all__ = [
    "NPHM", "CanonicalField", "Field", "GradientField", "HeadModel", "NPHMConfig", "__version__", "set_default_backend",
]
