"""nphmkit's shipped weights, by name: ``small`` is the small NPHM trained on the synthetic head family,
``small_predictor`` the small dense predictor trained on its renders, ``small_regressor`` the small
Pix2NPHM regressor reading that predictor (when it has been trained: see its ``quality.json``).

These weights know only nphmkit's synthetic heads (analytic shapes, not real people); real photos
need real checkpoints (:func:`nphmkit.nphm.load_mononphm`, see docs/contracts.md "Weights").
Everywhere a weight folder is accepted (``NPHM.load``, ``--weights``), a shipped name works too::

    from nphmkit.pretrained import load_small_nphm, weights_folder
    model = load_small_nphm()                       # the same as NPHM.load(weights_folder("small"))
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nphmkit.nphm.model import NPHM

ASSETS = Path(__file__).resolve().parent / "assets"
"""The package's data folder (shipped weights, demo images)."""
SMALL_NPHM = ASSETS / "small_nphm"
SMALL_PREDICTOR = ASSETS / "small_predictor"
SMALL_REGRESSOR = ASSETS / "small_regressor"
SHIPPED = {"small": SMALL_NPHM, "small_predictor": SMALL_PREDICTOR, "small_regressor": SMALL_REGRESSOR}
"""Shipped weight folders by name."""


def weights_folder(weights: str | os.PathLike) -> Path:
    """The folder of ``weights``: a shipped name (:data:`SHIPPED`, e.g. ``"small"``) or a path.

    Raises ``FileNotFoundError`` naming both readings when it is neither.
    """
    if isinstance(weights, str) and weights in SHIPPED:
        folder = SHIPPED[weights]
        if not (folder / "weights.safetensors").is_file():
            script = {"small_predictor": "train_small_predictor.py", "small_regressor": "train_small_regressor.py"}.get(
                weights, "train_small_nphm.py")
            raise FileNotFoundError(
                f"weights: the shipped {weights!r} weights are missing from {folder}; "
                f"recreate them with: python examples/{script}"
            )
        return folder
    folder = Path(weights).expanduser()
    if not folder.is_dir():
        names = ", ".join(repr(n) for n in SHIPPED)
        raise FileNotFoundError(f"weights: {str(weights)!r} is neither a weight folder nor a shipped name ({names})")
    return folder


def weights_sha256(weights: str | os.PathLike) -> str:
    """sha256 of a weight folder's ``config.json`` and ``weights.safetensors`` (names and bytes): what a run's
    provenance records and what a regressor checks of the predictor it reads. Notes beside them
    (``quality.json``) do not count."""
    folder = weights_folder(weights)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.name in ("config.json", "weights.safetensors")):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_small_nphm(map_location: str = "cpu") -> "NPHM":
    """The shipped small NPHM (synthetic family only), in eval mode with frozen weights."""
    from nphmkit.nphm.model import NPHM

    return NPHM.load(weights_folder("small"), map_location).eval().requires_grad_(False)


def load_small_predictor(map_location: str = "cpu"):
    """The shipped small dense predictor (image -> normals, canonical points, mask; synthetic family only),
    in eval mode with frozen weights. Its ``quality.json`` holds the held-out figures."""
    from nphmkit.heads.dense import DensePredictor

    return DensePredictor.load(weights_folder("small_predictor"), map_location).eval().requires_grad_(False)


def load_small_regressor(map_location: str = "cpu"):
    """The shipped small Pix2NPHM regressor with the shipped predictor as its frozen backbone (synthetic family
    only), in eval mode with frozen weights; the predictor's sha256 is checked against the regressor's record."""
    from nphmkit.heads.regressor import Pix2NPHMRegressor

    return Pix2NPHMRegressor.load(weights_folder("small_regressor"), map_location).eval().requires_grad_(False)


def has_weights(name: str) -> bool:
    """Whether the shipped weights ``name`` are present (a shipped name whose folder holds weights)."""
    return name in SHIPPED and (SHIPPED[name] / "weights.safetensors").is_file()


def load_weights(weights: str | os.PathLike, map_location: str = "cpu"):
    """Any nphmkit weight folder (or shipped name) as the module its ``config.json`` says: an NPHM, a dense
    predictor or a regressor; in eval mode with frozen weights."""
    import json

    folder = weights_folder(weights)
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"weights: {folder} has no config.json (not an nphmkit weight folder)")
    kind = json.loads(config.read_text()).get("kind")
    if kind == "NPHM":
        from nphmkit.nphm.model import NPHM as cls
    elif kind == "DensePredictor":
        from nphmkit.heads.dense import DensePredictor as cls
    elif kind == "Pix2NPHMRegressor":
        from nphmkit.heads.regressor import Pix2NPHMRegressor as cls
    else:
        raise ValueError(f"weights: {folder} holds weights of unknown kind {kind!r}")
    return cls.load(folder, map_location).eval().requires_grad_(False)
