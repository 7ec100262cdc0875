"""Optional dependencies: looked up without importing, imported on first use.

``available(name)`` says whether a module could be imported (``importlib.util.find_spec``,
nothing is executed); ``require(name)`` imports it or raises an ImportError that names the
pip extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# module name -> nphmkit extra that provides it
EXTRAS = {
    "triton": "triton",
    "xformers": "xformers",
    "trimesh": "mesh",
    "pytorch3d": "pytorch3d",
    "PIL": "image",
    "hypothesis": "dev",
    "omegaconf": "train",
    "torch.utils.tensorboard": "tensorboard",
    "tensorboard": "tensorboard",
    "matplotlib": "plot",
    "av": "video",
    "cv2": "opencv",
}


def available(name: str) -> bool:
    """True when module ``name`` is installed (it is not imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, purpose: str = "") -> ModuleType:
    """Import optional module ``name`` or raise an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        extra = EXTRAS.get(name)
        hint = f"pip install 'nphmkit[{extra}]'" if extra else f"pip install {name}"
        what = f" for {purpose}" if purpose else ""
        raise ImportError(f"nphmkit needs the optional package '{name}'{what}; install it with: {hint}") from err
