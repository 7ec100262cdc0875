"""Pictures of evaluation results (the ``plot`` extra: matplotlib): error CDFs, per-item bars, error heat maps.

Every function writes one PNG atomically and returns its path. Distances are in mm.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nphmkit._optional import require


def _pyplot():
    mpl = require("matplotlib", "evaluation plots")
    mpl.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    from nphmkit._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def error_cdf(errors: Mapping[str, Sequence[float] | np.ndarray], path: str | os.PathLike, max_mm: float = 10.0,
              title: str = "cumulative error") -> Path:
    """Cumulative error curves (NoW style): for each named set of distances (mm), the fraction of them
    below each error on the x axis, ``0..max_mm``. The legend gives each set's median."""
    if not errors:
        raise ValueError("errors: expected at least one named set of distances")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    grid = np.linspace(0, max_mm, 400)
    for name, values in errors.items():
        d = np.sort(np.asarray(values, np.float64).ravel())
        if d.size == 0:
            raise ValueError(f"errors[{name!r}]: expected distances, got none")
        ax.plot(grid, np.searchsorted(d, grid, side="right") / d.size, label=f"{name} (median {np.median(d):.2f} mm)")
    ax.set_xlabel("error (mm)")
    ax.set_ylabel("fraction of points")
    ax.set_xlim(0, max_mm)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return _save(fig, path)


def item_bars(values: Mapping[str, float], path: str | os.PathLike, label: str = "error (mm)",
              title: str = "per item") -> Path:
    """A bar per item (``name -> value``), in the given order, with the mean as a dashed line."""
    if not values:
        raise ValueError("values: expected at least one item")
    plt = _pyplot()
    names, v = list(values), np.array(list(values.values()), np.float64)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.4))
    ax.bar(range(len(v)), v, color="#4c72b0")
    ax.axhline(v.mean(), color="k", ls="--", lw=1, label=f"mean {v.mean():.3g}")
    ax.set_xticks(range(len(v)), names, rotation=60 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                  fontsize=7)
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def error_heatmap(vertices, faces, vertex_errors, path: str | os.PathLike, max_mm: float = 5.0,
                  views: Sequence[float] = (0.0, 60.0), title: str = "error (mm)") -> Path:
    """The mesh ``vertices (V, 3)``, ``faces (F, 3)`` coloured by ``vertex_errors (V,)`` (mm; clipped at
    ``max_mm``), seen from the front (+z, y up) turned by each of ``views`` (degrees about y),
    orthographic, faces drawn back to front with a little Lambert shading. NaN errors are grey."""
    plt = _pyplot()
    from matplotlib.collections import PolyCollection

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    e = np.asarray(vertex_errors, np.float64).ravel()
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"vertices, faces: expected (V, 3) and (F>0, 3), got {v.shape} and {f.shape}")
    if e.shape != (len(v),):
        raise ValueError(f"vertex_errors: expected ({len(v)},) one per vertex, got {e.shape}")
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(views), figsize=(3.2 * len(views) + 0.8, 3.6), squeeze=False)
    centre = (v.max(0) + v.min(0)) / 2
    half = (v.max(0) - v.min(0)).max() / 2 * 1.05
    face_err = e[f].mean(1)
    for ax, angle in zip(axes[0], views):
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        p = (v - centre) @ rot.T
        tri = p[f]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
        front = normal[:, 2] > 0  # facing the viewer at +z
        order = np.argsort(tri[:, :, 2].mean(1))  # far to near
        order = order[front[order]]
        colour = cmap(np.clip(np.nan_to_num(face_err[order], nan=0.0) / max_mm, 0, 1))
        colour[np.isnan(face_err[order])] = (0.6, 0.6, 0.6, 1.0)
        colour[:, :3] *= (0.35 + 0.65 * normal[order, 2:3])
        ax.add_collection(PolyCollection(tri[order][:, :, :2], facecolors=colour, edgecolors=colour, linewidths=0.3))
        ax.set_xlim(-half, half)
        ax.set_ylim(-half, half)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{angle:g} deg", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max_mm))
    fig.colorbar(sm, ax=axes[0].tolist(), fraction=0.04, label=title)
    return _save(fig, path)
