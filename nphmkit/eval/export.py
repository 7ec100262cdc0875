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


def write_svfr_item(root: str | os.PathLike, name: str, posed: Mesh, neutral: Mesh, landmarks) -> tuple[Path, Path, Path]:
    """Write one image's prediction in nphmkit's SVFR layout: ``root/<name>/posed.ply`` (the posed mesh in the
    camera frame), ``neutral.ply`` (the neutral mesh, head space) and ``landmarks.npy`` (``(7, 3)`` NoW order,
    posed, camera frame), all in millimetres. Pixel3DMM's single-view benchmark compares posed and neutral
    meshes; its code is not public, so this layout is nphmkit's own (what ``nphmkit eval`` reads)."""
    from nphmkit._io import write_bytes
    from nphmkit.mesh import save_mesh

    lm = np.asarray(landmarks.detach().cpu() if isinstance(landmarks, torch.Tensor) else landmarks, np.float64)
    if lm.shape != (7, 3) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks: expected 7 finite 3D points (7, 3) in NoW order, got shape {lm.shape}")
    for what, mesh in (("posed", posed), ("neutral", neutral)):
        if mesh.faces.shape[0] == 0 or not bool(torch.isfinite(mesh.vertices).all()):
            raise ValueError(f"{what}: expected faces and finite vertices for {name!r}")
    folder = Path(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, (lm * MM_PER_UNIT[posed.units]).astype(np.float32))
    paths = folder / "posed.ply", folder / "neutral.ply", folder / "landmarks.npy"
    save_mesh(paths[0], posed, units="mm")
    save_mesh(paths[1], neutral, units="mm")
    write_bytes(paths[2], buf.getvalue())
    return paths


def _posed(mesh: Mesh, codes) -> Mesh:
    """``mesh`` (head space) moved into the camera frame by ``codes.npz``'s pose ``x = s R x + t``."""
    R, t, s = (torch.as_tensor(np.asarray(codes[k]), dtype=torch.float32) for k in ("rotation", "translation", "scale"))
    verts = float(s) * mesh.vertices @ R.T + t
    return Mesh(verts, mesh.faces, mesh.units)


def export_batch(batch: str | os.PathLike, dest: str | os.PathLike, layout: str = "now",
                 image_list: str | os.PathLike | None = None) -> list[Path]:
    """Export the finished items of an ``nphmkit reconstruct`` output folder to a benchmark layout.

    Args:
        batch: the reconstruct output folder (item folders with ``done``, and ``summary.json``).
        dest: the layout's root folder.
        layout: ``"now"`` (:func:`write_now_item`: the posed mesh in head space + 7 landmarks, mm; items matched to
            the entries of ``image_list`` whose path ends the item's input path) or ``"svfr"`` (:func:`write_svfr_item`).
        image_list: the NoW image list (``imagepathsvalidation.txt`` / ``imagepathstest.txt``), for ``"now"``.

    Returns:
        the folders or files written (one per item). Items without ``done`` are skipped; a NoW entry with no
        item is an error naming it (nothing is written then).
    """
    import json

    from nphmkit.mesh import load_mesh

    if layout not in ("now", "svfr"):
        raise ValueError(f"layout: expected 'now' or 'svfr', got {layout!r}")
    batch = Path(batch)
    summary = batch / "summary.json"
    if not summary.is_file():
        raise FileNotFoundError(f"batch: {batch} has no summary.json (not an nphmkit reconstruct output folder)")
    items = [x for x in json.loads(summary.read_text()).get("items", []) if (batch / x["name"] / "done").is_file()]
    if not items:
        raise ValueError(f"batch: {batch} has no finished items")
    pairs: list[tuple[str, dict]] = []
    if layout == "now":
        if image_list is None:
            raise ValueError("image_list: the NoW layout needs the image list the predictions are for")
        entries = read_image_list(image_list)
        by_input = {Path(x["input"]).as_posix(): x for x in items}
        missing = []
        for entry in entries:
            match = [x for p, x in by_input.items() if p.endswith("/" + entry.lstrip("/")) or p == entry]
            if match:
                pairs.append((entry, match[0]))
            else:
                missing.append(entry)
        if missing:
            raise ValueError(f"image_list: no reconstruction for {len(missing)} of {len(entries)} images, e.g. {missing[0]!r}")
    else:
        pairs = [(x["name"], x) for x in items]
    written = []
    for key, item in pairs:
        folder = batch / item["name"]
        marks = json.loads((folder / "landmarks.json").read_text())
        if "head" not in marks:
            raise ValueError(f"{folder}/landmarks.json: no landmarks ({marks.get('error', 'missing')})")
        posed = load_mesh(folder / "posed.ply")
        if layout == "now":
            written.append(write_now_item(dest, key, posed, np.asarray(marks["head"]))[0])
        else:
            codes = np.load(folder / "codes.npz")
            neutral = load_mesh(folder / "neutral.ply")
            written.append(write_svfr_item(dest, key, _posed(posed, codes), neutral, np.asarray(marks["camera"]))[0].parent)
    return written
