"""Mesh files: binary PLY and OBJ with no extra dependency, GLB through the ``mesh`` extra (trimesh).

Writes are atomic. ``save_mesh`` picks the format from the suffix; ``units="mm"`` writes
millimetres (NPHM units x 250).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import write_bytes
from nphmkit._optional import require
from nphmkit.mesh.mesh import Mesh


def save_mesh(
    path: str | os.PathLike,
    mesh: Mesh,
    units: str | None = None,
    vertex_colors: np.ndarray | torch.Tensor | None = None,
) -> Path:
    """Write ``mesh`` to ``path`` (``.ply`` binary, ``.obj`` or ``.glb``), atomically.

    Args:
        units: ``"nphm"`` or ``"mm"``; default: the mesh's own units.
        vertex_colors: optional ``(V, 3)`` uint8 RGB (PLY and GLB only).
    """
    path = Path(path)
    if mesh.n_faces == 0:
        raise ValueError(f"mesh: has no faces ({mesh.n_vertices} vertices); nothing written to {path}")
    if units is not None:
        mesh = mesh.to_units(units)
    verts = mesh.vertices.detach().cpu().numpy().astype(np.float32)
    faces = mesh.faces.detach().cpu().numpy().astype(np.int64)
    colors = None
    if vertex_colors is not None:
        colors = np.asarray(torch.as_tensor(vertex_colors).cpu(), dtype=np.uint8)
        if colors.shape != (len(verts), 3):
            raise ValueError(f"vertex_colors: expected shape ({len(verts)}, 3), got {colors.shape}")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        data = _ply_bytes(verts, faces, colors, comment=f"units {mesh.units}")
    elif suffix == ".obj":
        data = _obj_bytes(verts, faces, comment=f"units {mesh.units}")
    elif suffix == ".glb":
        trimesh = require("trimesh", "GLB export")
        tm = trimesh.Trimesh(verts, faces, vertex_colors=colors, process=False)
        data = tm.export(file_type="glb")
    else:
        raise ValueError(f"path: expected a .ply, .obj or .glb file name, got {path.name!r}")
    write_bytes(path, data)
    return path


def _ply_bytes(verts: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, comment: str) -> bytes:
    header = ["ply", "format binary_little_endian 1.0", f"comment {comment}", f"element vertex {len(verts)}"]
    header += [f"property float {c}" for c in "xyz"]
    if colors is not None:
        header += [f"property uchar {c}" for c in ("red", "green", "blue")]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    vdtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        vdtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vrec = np.empty(len(verts), dtype=vdtype)
    vrec["x"], vrec["y"], vrec["z"] = verts.T
    if colors is not None:
        vrec["red"], vrec["green"], vrec["blue"] = colors.T
    frec = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"] = 3
    frec["i"] = faces
    return ("\n".join(header) + "\n").encode("ascii") + vrec.tobytes() + frec.tobytes()


def _obj_bytes(verts: np.ndarray, faces: np.ndarray, comment: str) -> bytes:
    buf = io.StringIO()
    buf.write(f"# {comment}\n")
    np.savetxt(buf, verts, fmt="v %.7g %.7g %.7g")
    np.savetxt(buf, faces + 1, fmt="f %d %d %d")
    return buf.getvalue().encode("ascii")


def load_mesh(path: str | os.PathLike) -> Mesh:
    """Read a mesh written by :func:`save_mesh` (binary little-endian PLY or OBJ, triangles only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no mesh file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        verts, faces, units = _read_ply(path.read_bytes(), path)
    elif suffix == ".obj":
        verts, faces, units = _read_obj(path.read_text(), path)
    else:
        raise ValueError(f"path: expected a .ply or .obj file, got {path.name!r}")
    return Mesh(torch.from_numpy(verts), torch.from_numpy(faces), units=units)


def _read_ply(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"path: {path} is not a PLY file")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"path: {path}: only binary little-endian PLY is read")
    units = "nphm"
    n_v = n_f = 0
    vprops: list[tuple[str, str]] = []
    current = None
    types = {"float": "<f4", "double": "<f8", "uchar": "u1", "int": "<i4", "uint": "<u4"}
    for line in header:
        parts = line.split()
        if parts[:2] == ["comment", "units"]:
            units = parts[2]
        elif parts[:1] == ["element"]:
            current = parts[1]
            if current == "vertex":
                n_v = int(parts[2])
            elif current == "face":
                n_f = int(parts[2])
        elif parts[:1] == ["property"] and current == "vertex":
            vprops.append((parts[2], types[parts[1]]))
    body = data[end + len(b"end_header\n") :]
    vrec = np.frombuffer(body, dtype=vprops, count=n_v)
    verts = np.stack([vrec["x"], vrec["y"], vrec["z"]], axis=1).astype(np.float32)
    frec = np.frombuffer(body, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=n_f, offset=vrec.nbytes)
    if n_f and not np.all(frec["n"] == 3):
        raise ValueError(f"path: {path}: only triangle faces are read")
    return verts, frec["i"].astype(np.int64), units


def _read_obj(text: str, path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    verts, faces, units = [], [], "nphm"
    for line in text.splitlines():
        if line.startswith("# units"):
            units = line.split()[2]
        elif line.startswith("v "):
            verts.append([float(v) for v in line.split()[1:4]])
        elif line.startswith("f "):
            idx = [int(tok.split("/")[0]) - 1 for tok in line.split()[1:]]
            if len(idx) != 3:
                raise ValueError(f"path: {path}: only triangle faces are read")
            faces.append(idx)
    return np.asarray(verts, np.float32).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3), units
