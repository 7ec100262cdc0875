"""Benchmark submission layouts: the NoW challenge.

The NoW evaluation reads, for each line ``<subject>/<experiment>/<image>.jpg`` of its image list, a
predicted mesh ``<root>/<subject>/<experiment>/<image>.ply`` (or ``.obj``) and its 7 landmarks
``<root>/<subject>/<experiment>/<image>.npy`` (a ``(7, 3)`` array, NoW order, in the mesh's units).
:func:`write_now_item` writes one such pair, in millimetres (for the metrical protocol, tell the
official script ``--predicted_mesh_unit mm``); :func:`now_paths` says where; :func:`read_image_list`
reads an image list. Both files are written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from nphmkit.mesh import Mesh

MM_PER_UNIT = {"nphm": 250.0, "mm": 1.0}


def now_paths(root: str | os.PathLike, image: str) -> tuple[Path, Path]:
    """``(mesh, landmarks)`` paths for an image-list entry ``.../<subject>/<experiment>/<image>.<ext>``."""
    parts = PurePosixPath(str(image).replace("\\", "/")).parts
    if len(parts) < 3 or not PurePosixPath(parts[-1]).suffix:
        raise ValueError(f"image: expected '<subject>/<experiment>/<image file>' as in NoW's image lists, got {image!r}")
    folder = Path(root, parts[-3], parts[-2])
    stem = PurePosixPath(parts[-1]).stem
    return folder / f"{stem}.ply", folder / f"{stem}.npy"


def read_image_list(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a NoW image list (``imagepathsvalidation.txt``, ``imagepathstest.txt``)."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    return [line for line in lines if line]


def write_now_item(root: str | os.PathLike, image: str, mesh: Mesh, landmarks) -> tuple[Path, Path]:
    """Write the prediction for one NoW image: ``mesh`` and its ``landmarks (7, 3)`` (NoW order, in the
    mesh's units) as millimetre PLY + ``.npy`` at :func:`now_paths`. Returns the two paths."""
    from nphmkit._io import write_bytes
    from nphmkit.mesh import save_mesh

    lm = np.asarray(landmarks.detach().cpu() if isinstance(landmarks, torch.Tensor) else landmarks, np.float64)
    if lm.shape != (7, 3) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks: expected 7 finite 3D points (7, 3) in NoW order, got shape {lm.shape}")
    if mesh.faces.shape[0] == 0 or not bool(torch.isfinite(mesh.vertices).all()):
        raise ValueError(f"mesh: expected faces and finite vertices for {image!r}")
    scale = MM_PER_UNIT[mesh.units]
    mesh_path, lm_path = now_paths(root, image)
    mesh_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, (lm * scale).astype(np.float32))
    save_mesh(mesh_path, mesh, units="mm")
    write_bytes(lm_path, buf.getvalue())
    return mesh_path, lm_path
