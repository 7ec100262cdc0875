"""nphmkit: neural parametric head models and Pix2NPHM, in composable PyTorch parts.

``import nphmkit`` needs only the required dependencies (torch, numpy, scikit-image,
safetensors, einops, tqdm); optional extras are imported on first use.
"""

from nphmkit._backend import set_default_backend
from nphmkit.nphm import NPHM, NPHMConfig

__version__ = "0.1.0"
__all__ = ["NPHM", "NPHMConfig", "__version__", "set_default_backend"]
