"""Latent codes (and head pose) on disk.

nphmkit's format is one ``.npz`` with ``z_id (B, id_dim)``, ``z_ex (B, lat_dim_ex)`` and, when
known, ``rotation (B, 3, 3)``, ``translation (B, 3)``, ``scale (B,)`` (the similarity from NPHM
space to world, docs/contracts.md). :func:`load_codes` also reads the official MonoNPHM tracking folders
(``z_geo.npy (1, 1, 2176)``, ``z_exp.npy (frames, 100)``, optional ``rot.npy``, ``trans.npy``,
``scale.npy``), broadcasting the single identity over the frames. Pose files of the official
tracker are read as they are; their frame conventions are the tracker's.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import write_bytes


@dataclass(frozen=True)
class Codes:
    """A batch of codes. Shapes: ``z_id (B, id_dim)``, ``z_ex (B, lat_dim_ex)``; pose optional."""

    z_id: torch.Tensor
    z_ex: torch.Tensor
    rotation: torch.Tensor | None = None
    translation: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b = self.z_id.shape[0]
        if self.z_id.dim() != 2 or self.z_ex.dim() != 2 or self.z_ex.shape[0] != b:
            raise ValueError(
                f"codes: expected z_id (B, D) and z_ex (B, E) with one B, got {tuple(self.z_id.shape)} "
                f"and {tuple(self.z_ex.shape)}"
            )
        for name, value, shape in (
            ("rotation", self.rotation, (b, 3, 3)),
            ("translation", self.translation, (b, 3)),
            ("scale", self.scale, (b,)),
        ):
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"codes.{name}: expected shape {shape}, got {tuple(value.shape)}")
        for name in ("z_id", "z_ex", "rotation", "translation", "scale"):
            value = getattr(self, name)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ValueError(f"codes.{name}: holds NaN or Inf values")

    def __len__(self) -> int:
        return self.z_id.shape[0]


def save_codes(
    path: str | os.PathLike,
    z_id: torch.Tensor,
    z_ex: torch.Tensor,
    rotation: torch.Tensor | None = None,
    translation: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> Path:
    """Write codes (and pose) to ``path`` (.npz, atomically). Returns the path."""
    codes = Codes(z_id, z_ex, rotation, translation, scale)
    arrays = {
        k: getattr(codes, k).detach().cpu().numpy().astype(np.float32)
        for k in ("z_id", "z_ex", "rotation", "translation", "scale")
        if getattr(codes, k) is not None
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path: expected a file name ending in .npz, got {path.name!r}")
    write_bytes(path, buf.getvalue())
    return path


def save_official_codes(directory: str | os.PathLike, z_id: torch.Tensor, z_ex: torch.Tensor) -> Path:
    """Write ``z_geo.npy (1, 1, id_dim)`` and ``z_exp.npy (frames, lat_dim_ex)`` as the official tracker does.

    ``z_id`` must hold one identity (``(1, id_dim)``, or equal rows for every frame).
    """
    if z_id.dim() != 2 or not torch.allclose(z_id, z_id[:1].expand_as(z_id)):
        raise ValueError(f"z_id: the official layout holds one identity; got {tuple(z_id.shape)} with different rows")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("z_geo.npy", z_id[:1, None]), ("z_exp.npy", z_ex)):
        buf = io.BytesIO()
        np.save(buf, arr.detach().cpu().numpy().astype(np.float32))
        write_bytes(folder / name, buf.getvalue())
    return folder


def load_codes(path: str | os.PathLike) -> Codes:
    """Read codes from an nphmkit ``.npz`` or an official tracking folder (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        return _load_official(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no codes file or folder at {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("z_id", "z_ex") if k not in data]
        if missing:
            raise ValueError(f"path: {path} lacks {missing}; expected z_id and z_ex (found {sorted(data.files)})")
        get = lambda k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) if k in data else None  # noqa: E731
        return Codes(get("z_id"), get("z_ex"), get("rotation"), get("translation"), get("scale"))


def _load_official(folder: Path) -> Codes:
    geo, exp = folder / "z_geo.npy", folder / "z_exp.npy"
    if not geo.is_file() or not exp.is_file():
        raise FileNotFoundError(f"path: {folder} is not a tracking folder: expected z_geo.npy and z_exp.npy")
    load = lambda p: torch.from_numpy(np.load(p, allow_pickle=False).astype(np.float32))  # noqa: E731
    z_id = load(geo).reshape(1, -1)
    z_ex = load(exp)
    z_ex = z_ex.reshape(-1, z_ex.shape[-1])
    frames = z_ex.shape[0]
    z_id = z_id.expand(frames, -1).clone()
    pose = {}
    for key, name, shape in (("rotation", "rot.npy", (3, 3)), ("translation", "trans.npy", (3,)), ("scale", "scale.npy", ())):
        if (folder / name).is_file():
            value = load(folder / name).reshape(-1, *shape)
            if value.shape[0] == 1:
                value = value.expand(frames, *shape).clone()
            pose[key] = value if value.shape[0] == frames else None
    return Codes(z_id, z_ex, **pose)
